"""Fixtures for the nnef-bench tests: the README's tiny model, written once per session."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_tiny") / "tiny"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_tiny_model.py"),
                    str(out)], check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope="session")
def tiny_compiled(tiny_model):
    """{'x86': CompiledModel} of the tiny model, compiled once for the in-process tests."""
    import nnef_tvm
    return {"x86": nnef_tvm.compile(tiny_model, target="x86")}
