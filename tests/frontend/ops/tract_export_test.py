"""Real torch-to-nnef exports (tests/data/t2n, made by scripts/make_t2n_fixtures.py) compile
with ``extensions=('tract',)`` and match PyTorch.

The reference outputs in each ``io.npz`` were computed by PyTorch itself at export time
(independent of nnef-tvm). Tolerance: max |ours - torch| <= 1e-5 * max |torch| for every
fixture. No torch is needed here; the slow test re-exports with torch-to-nnef when it is
installed and checks the fresh export end to end.
"""
from pathlib import Path

import numpy as np
import pytest

import nnef_tvm
from nnef_tvm.errors import NNEFError

DATA = Path(__file__).resolve().parents[2] / "data" / "t2n"
FIXTURES = sorted(p.name for p in DATA.iterdir() if (p / "model.nnef.tgz").exists())
REL_TOL = 1e-5


def _check(folder: Path, model_path: Path):
    io = np.load(folder / "io.npz")
    compiled = nnef_tvm.compile(str(model_path), "x86", extensions=("tract",))
    inputs = {k: io[k] for k in io.files if k.startswith("input")}
    outs = compiled.run(inputs)
    outs = list(outs.values()) if isinstance(outs, dict) else list(outs) \
        if isinstance(outs, (list, tuple)) else [outs]
    refs = [io[k] for k in sorted(io.files) if k.startswith("output")]
    assert len(outs) == len(refs)
    for got, ref in zip(outs, refs):
        got = np.asarray(got)
        assert got.shape == ref.shape
        err = float(np.abs(got.astype("float64") - ref).max())
        assert err <= REL_TOL * float(np.abs(ref).max()), (folder.name, err)


def test_fixtures_are_present_and_small():
    assert {"conv_bn", "mobile_block", "gelu_mlp", "attention", "conv1d", "embedding", "gru",
            "lstm", "bigru", "deconv", "misc", "encoder", "causal_lm",
            "upsample"} <= set(FIXTURES)
    total = sum(f.stat().st_size for f in DATA.rglob("*") if f.is_file())
    assert total < 300_000


@pytest.mark.parametrize("name", FIXTURES)
def test_t2n_export_matches_pytorch(name):
    _check(DATA / name, DATA / name / "model.nnef.tgz")


@pytest.mark.parametrize("name", ["gru", "conv_bn"])
def test_t2n_export_rejected_without_extension(name):
    path = DATA / name / "model.nnef.tgz"
    with pytest.raises(NNEFError) as info:
        nnef_tvm.load(path)
    msg = str(info.value)
    assert "graph.nnef:3:" in msg          # the 'extension tract_registry tract_core;' line
    assert "'tract'" in msg and "--extensions tract" in msg and "extensions=('tract',)" in msg


def test_t2n_lstm_is_unrolled_into_standard_ops():
    """The scan is gone: one body invocation per step (6 steps, 4 gates -> 24 sigmoid/tanh...)."""
    m = nnef_tvm.load(DATA / "lstm" / "model.nnef.tgz", extensions=("tract",))
    names = [op.name for op in m.graph.operations]
    assert not any("scan" in n for n in names)
    assert names.count("sigmoid") == 3 * 6 and names.count("tanh") == 2 * 6


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_t2n_reexport_end_to_end(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torch_to_nnef")
    import importlib.util
    script = Path(__file__).resolve().parents[3] / "scripts" / "make_t2n_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_t2n_fixtures", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.export(name, tmp_path)
    _check(tmp_path / name, path)
