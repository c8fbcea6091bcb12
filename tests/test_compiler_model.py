"""compile_model on NNEF graphs: I/O description, shapes override, source digest, numerics.

Graphs come from the Khronos parser adapter (tests/support, an oracle) with
weights filled in here; references are numpy written from the NNEF spec.
"""
import hashlib
import platform

import numpy as np
import pytest

from nnef_tvm.compiler import compile_model
from nnef_tvm.errors import NNEFError
from nnef_tvm.reader.graph import Model

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86 build")

TEXT = """version 1.0;

graph net( image ) -> ( scores, features )
{
    image = external(shape = [1, 3, 5, 5]);
    k = variable(shape = [4, 3, 3, 3], label = 'k');
    b = variable(shape = [1, 4], label = 'b');
    conv1 = conv(image, k, b, padding = [(1, 1), (1, 1)]);
    features = relu(conv1);
    scores = max_reduce(features, axes = [1]);
}
"""


def _graph():
    from support.khronos import khronos_graph
    g = khronos_graph(TEXT)
    rng = np.random.default_rng(5)
    g.tensors["k"].data = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    g.tensors["b"].data = rng.standard_normal((1, 4)).astype("float32")
    return g


def _reference(x, k, b):
    """conv (stride 1, 1-pixel zero padding) + bias, relu, max over channels."""
    n, _, h, w = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k.shape[0], h, w))
    for i in range(h):
        for j in range(w):
            patch = xp[:, :, i:i + 3, j:j + 3]
            out[:, :, i, j] = np.einsum("ncij,ocij->no", patch, k)
    out += b.reshape(1, -1, 1, 1)
    feat = np.maximum(out, 0)
    return feat.max(axis=1, keepdims=True), feat


def test_compile_model_io_and_numerics():
    g = _graph()
    cm = compile_model(Model(g), "x86")
    assert [s["name"] for s in cm.inputs] == ["image"]
    assert [(s["name"], s["shape"]) for s in cm.outputs] == [("scores", [1, 1, 5, 5]),
                                                             ("features", [1, 4, 5, 5])]
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype("float32")
    out = cm.run({"image": x})
    scores, feat = _reference(x, g.tensors["k"].data, g.tensors["b"].data)
    np.testing.assert_allclose(out["features"], feat, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-5)


def test_input_shape_override():
    g = _graph()
    cm = compile_model(Model(g), "x86", input_shapes={"image": [2, 3, 6, 6]})
    assert cm.inputs[0]["shape"] == [2, 3, 6, 6]
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype("float32")
    out = cm.run({"image": x})
    scores, feat = _reference(x, g.tensors["k"].data, g.tensors["b"].data)
    np.testing.assert_allclose(out["features"], feat, rtol=1e-4, atol=1e-5)


def test_compile_from_path_records_source_digest(tmp_path, monkeypatch):
    from nnef_tvm.reader import loader
    path = tmp_path / "net.nnef"
    path.write_text(TEXT)
    monkeypatch.setattr(loader, "load", lambda p, **kw: Model(_graph(), source=str(p)))
    cm = compile_model(str(path), "x86")
    assert cm.metadata["source"] == {"path": "net.nnef",
                                     "sha256": hashlib.sha256(TEXT.encode()).hexdigest()}


def test_run_checks_inputs():
    cm = compile_model(Model(_graph()), "x86")
    with pytest.raises(NNEFError, match="missing input 'image'"):
        cm.run({})
    with pytest.raises(NNEFError, match="expected shape"):
        cm.run({"image": np.zeros((1, 3, 4, 4), "float32")})
    with pytest.raises(NNEFError, match="unknown input"):
        cm.run({"image": np.zeros((1, 3, 5, 5), "float32"), "other": np.zeros(1)})
    with pytest.raises(NNEFError, match="expected float32"):
        cm.run({"image": np.zeros((1, 3, 5, 5), "complex64")})


def test_unknown_target_fails_before_reading_the_model(tmp_path):
    with pytest.raises(NNEFError, match="unknown target"):
        compile_model(str(tmp_path / "does-not-exist.nnef"), "nope")


def test_fusion_report_names_nnef_operations():
    cm = compile_model(Model(_graph()), "x86")
    ops = {op["op"] for k in cm.kernels for op in k.ops}
    assert {"conv", "relu", "max_reduce"} <= ops
