"""Fake quantization of constant tensors (variables, transposed variables) is folded in
numpy at conversion time: it must equal the §4.9.5 formulas exactly (round = floor(x+0.5))."""
import numpy as np

from frontend.support_frontend import graph_of, run_graph

TEXT = """version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [2, 3]);
    w = variable(shape = [3, 2], label = 'w');
    t = transpose(w, axes = [1, 0]);
    y = add(x, t);
}
"""


def test_constant_fake_quant_is_exact():
    w = np.array([[0.26, -1.13], [2.5, 0.74], [-0.05, 7.9]], "float32")
    g = graph_of(TEXT, {"w": w})
    g.tensors["w"].quantization = {"op-name": "zero_point_linear_quantize",
                                   "zero_point": np.array([[1], [0], [-2]], "int32"),
                                   "scale": np.array([[0.5], [0.25], [1.0]], "float32"),
                                   "bits": 4, "signed": True, "symmetric": False}
    g.tensors["t"].quantization = {"op-name": "min_max_linear_quantize",
                                   "min": np.array(-1.0, "float32"), "max": np.array(3.0, "float32"),
                                   "bits": 3, "signed": False, "symmetric": False}
    x = np.zeros((2, 3), "float32")
    (y,) = run_graph(g, {"x": x}, fake_quantize=True)
    s = np.array([[0.5], [0.25], [1.0]])
    z = np.array([[1], [0], [-2]])
    wq = (np.clip(np.floor(w / s + 0.5) + z, -8, 7) - z) * s
    t = wq.T
    r = 7
    tq = np.floor((np.clip(t, -1, 3) + 1) / 4 * r + 0.5) / r * 4 - 1
    np.testing.assert_allclose(y, tq, rtol=1e-6, atol=1e-6)
