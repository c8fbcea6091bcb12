"""CLI test fixtures: a small NNEF model on disk and a stand-in reader.

Until the project's reader ships its stdlib, ``khronos_reader`` replaces
``nnef_tvm.reader.loader.load`` with the Khronos parser adapter from
tests/support (a test oracle) and fills the variables with known weights, so
the compile/run commands are exercised end to end on a real NNEF document.
"""
import os
import tempfile

import numpy as np
import pytest

MODEL_TEXT = """version 1.0;

graph tiny( input ) -> ( output, pooled )
{
    input = external(shape = [1, 2, 4, 4]);
    w = variable(shape = [3, 2, 1, 1], label = 'w');
    c = conv(input, w, 0.0);
    r = relu(c);
    output = mul(r, 2.0);
    pooled = mean_reduce(r, axes = [2, 3]);
}
"""

WEIGHTS = np.random.default_rng(11).standard_normal((3, 2, 1, 1)).astype("float32")


def tiny_reference(x):
    """numpy from the spec: 1x1 convolution, relu, scale, spatial mean."""
    c = np.einsum("oc,nchw->nohw", WEIGHTS[:, :, 0, 0].astype(np.float64), x)
    r = np.maximum(c, 0)
    return {"output": r * 2.0, "pooled": r.mean(axis=(2, 3), keepdims=True)}


def reader_ready() -> bool:
    """True once nnef_tvm.load can read a plain document (the reader has landed)."""
    import nnef_tvm
    try:
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "graph.nnef")
            with open(p, "w") as f:
                f.write("version 1.0;\ngraph g( x ) -> ( y )\n"
                        "{\n x = external(shape = [1]);\n y = relu(x);\n}\n")
            nnef_tvm.load(p)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def tiny():
    """The tiny model: NNEF text, its weights and its numpy reference."""
    from types import SimpleNamespace
    return SimpleNamespace(text=MODEL_TEXT, weights=WEIGHTS, reference=tiny_reference)


@pytest.fixture
def real_reader():
    """Skip unless the project's own reader can load documents yet."""
    if not reader_ready():
        pytest.skip("the NNEF reader (stdlib.nnef) has not landed yet")


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "tiny.nnef"
    p.write_text(MODEL_TEXT)
    return p


@pytest.fixture
def khronos_reader(monkeypatch):
    from support.khronos import khronos_graph
    from nnef_tvm.reader import loader
    from nnef_tvm.reader.graph import Model

    def load(path, **kwargs):
        with open(path) as f:
            graph = khronos_graph(f.read())
        graph.tensors["w"].data = WEIGHTS.copy()
        return Model(graph, source=str(path))
    monkeypatch.setattr(loader, "load", load)
    return load
