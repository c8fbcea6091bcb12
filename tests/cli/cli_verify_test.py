"""nnef-compile --verify: compared with an independent NNEF runtime when one is installed.

The comparison runtimes are the optional peers of nnef-bench; stand-ins registered
here exercise the plumbing whatever is installed on the machine.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnef_tvm.bench import peers
from nnef_tvm.cli.compile import verify
from nnef_tvm.errors import NNEFError

ROOT = Path(__file__).resolve().parents[2]


class _StandIn(peers.Peer):
    """A 'runtime' that answers with fixed outputs (what a real peer would compute)."""

    def __init__(self, name, outputs):
        self.name = name
        self._outputs = outputs

    def missing(self):
        return None

    def load(self, job, threads):
        order = job["output_order"]
        return lambda values: [self._outputs(values)[n] for n in order]


class _Absent(peers.Peer):
    def __init__(self, name):
        self.name = name

    def missing(self):
        return "not installed (stand-in)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import nnef_tvm
    out = tmp_path_factory.mktemp("verify")
    model = out / "tiny"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), str(model)],
                   check=True, capture_output=True)
    compiled = nnef_tvm.compile(str(model), target="x86")
    lib = str(out / "tiny.so")
    compiled.export(lib)
    return model, compiled, lib


def _only(monkeypatch, *replacements):
    for p in replacements:
        monkeypatch.setitem(peers.PEERS, p.name, p)


def test_independent_runtime_is_preferred(monkeypatch, tiny):
    model, compiled, lib = tiny
    _only(monkeypatch, _Absent("nnef-interpreter"),
          _StandIn("tract", lambda values: compiled.run({"input": values[0]})))
    line = verify(compiled, lib, model_path=str(model))
    assert "match tract, an independent NNEF runtime" in line


def test_disagreeing_runtime_fails_with_its_name(monkeypatch, tiny):
    model, compiled, lib = tiny
    _only(monkeypatch, _StandIn("nnef-interpreter", lambda values: {"output": np.zeros((1, 10),
                                                                                       "float32")}))
    with pytest.raises(NNEFError, match="differs from nnef-interpreter"):
        verify(compiled, lib, model_path=str(model))


def test_without_independent_runtime_the_line_says_so(monkeypatch, tiny):
    model, compiled, lib = tiny
    _only(monkeypatch, _Absent("nnef-interpreter"), _Absent("tract"))
    line = verify(compiled, lib, model_path=str(model))
    assert "unfused generic-CPU TVM build" in line
    assert "no independent reference: nnef-interpreter: not installed (stand-in)" in line


def test_a_failing_runtime_falls_through_to_the_next(monkeypatch, tiny):
    model, compiled, lib = tiny

    class _Broken(_StandIn):
        def load(self, job, threads):
            raise RuntimeError("cannot read this model")

    _only(monkeypatch, _Broken("nnef-interpreter", None),
          _StandIn("tract", lambda values: compiled.run({"input": values[0]})))
    assert "match tract" in verify(compiled, lib, model_path=str(model))
