"""from_nnef(fake_quantize=True): tensors with graph.quant info go through their
fake-quantization op where they are defined; default is real arithmetic."""
import numpy as np
import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.frontend import from_nnef

from frontend.support_frontend import graph_of, run_graph

TEXT = """version 1.0;
graph G( x ) -> ( y, z )
{
    x = external(shape = [1, 3, 2]);
    w = variable(shape = [1, 3], label = 'w');
    a = mul(x, w);
    y = relu(a);
    z = exp(a);
}
"""


def _graph():
    w = np.array([[0.3, -1.1, 2.05]], "float32")
    g = graph_of(TEXT, {"w": w})
    g.tensors["x"].quantization = {"op-name": "zero_point_linear_quantize",
                                   "zero_point": np.array(2, "int32"),
                                   "scale": np.array([[0.5, 0.25, 0.125]], "float32"),
                                   "bits": 8, "signed": True, "symmetric": False}
    g.tensors["a"].quantization = {"op-name": "min_max_linear_quantize",
                                   "min": np.array(-1.0, "float32"), "max": np.array(1.0, "float32"),
                                   "bits": 4, "signed": False, "symmetric": False}
    g.tensors["z"].quantization = {"op-name": "logarithmic_quantize",
                                   "max": np.array(8.0, "float32"), "bits": 3}
    return g, w


def test_fake_quantization_follows_graph_quant():
    g, w = _graph()
    x = np.array([[[0.3, -70.2], [1.13, 0.9], [0.06, 20.0]]], "float32")
    y, z = run_graph(g, {"x": x}, fake_quantize=True)
    # x: per-channel zero-point quantization, scale LEFT-aligned over axis 1, [-128, 127]
    s = np.array([0.5, 0.25, 0.125]).reshape(1, 3, 1)
    xq = (np.clip(np.floor(x / s + 0.5) + 2, -128, 127) - 2) * s
    a = xq * w.reshape(1, 3, 1)
    r = 15
    aq = np.floor((np.clip(a, -1, 1) + 1) / 2 * r + 0.5) / r * 2 - 1
    np.testing.assert_allclose(y, np.maximum(aq, 0), rtol=1e-5, atol=1e-6)
    e = np.exp(aq)
    m = np.ceil(np.log2(8.0))
    zq = np.sign(e) * 2.0 ** np.floor(np.clip(np.log2(np.abs(e)), m - 7, m) + 0.5)
    np.testing.assert_allclose(z, zq, rtol=1e-5)
    # default: real arithmetic, quantization ignored
    y0, _ = run_graph(_graph()[0], {"x": x})
    np.testing.assert_allclose(y0, np.maximum(x * w.reshape(1, 3, 1), 0), rtol=1e-6)


def test_unknown_quantization_op_is_reported():
    g, _ = _graph()
    g.tensors["a"].quantization = {"op-name": "my_quantizer", "bits": 8}
    with pytest.raises(NNEFError, match="my_quantizer"):
        from_nnef(g, fake_quantize=True)


def test_quantization_arguments_must_broadcast_left_aligned():
    g, _ = _graph()
    g.tensors["x"].quantization["scale"] = np.array([0.5, 0.25, 0.125], "float32")  # aligns with N
    with pytest.raises(NNEFError, match="does not broadcast"):
        from_nnef(g, fake_quantize=True)
