"""Differential check of the core op families against the nnef_tools PyTorch interpreter.

A second, independent oracle next to the per-family numpy references. Only ops
where the interpreter follows the spec are used (SPEC-NOTES O14: not round ties,
gelu, selu, multi-axis softmax; its prelu rejects a [1, C] alpha), and inputs stay
away from rounding ties.
Tolerance: rtol 1e-4 / atol 1e-5 (float32, different kernels).
"""
import numpy as np
import pytest

from frontend.support_frontend import graph_of, rand, run_graph

TEXT = """version 1.0;
graph G( x, y, c, i ) -> ( o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15, o16 )
{
    x = external(shape = [2, 3, 4, 5]);
    y = external(shape = [2, 3, 4, 5]);
    c = external(shape = [1, 3]);
    i = external<integer>(shape = [2, 2]);
    o1 = leaky_relu(add(mul(x, c), 0.25), alpha = 0.2);
    o2 = clamp(select(gt(x, y), x, y), -0.5, c);
    o3 = reshape(x, shape = [4, -1], axis_start = 1, axis_count = 2);
    o4 = slice(x, axes = [1, 3], begin = [2, -1], end = [-4, 0], stride = [-1, -2]);
    o5 = pad(x, padding = [(0, 0), (0, 0), (2, 1), (1, 2)], border = 'reflect');
    o6 = pad(x, padding = [(0, 0), (0, 0), (1, 2), (0, 1)], border = 'replicate');
    o7 = tile(c, repeats = [2, 2]);
    o8 = gather(x, i, axis = 3);
    o9 = softmax(x, axes = [1]);
    o10 = l2_normalization(x, axes = [1], epsilon = 1e-6);
    o11 = batch_normalization(x, c, abs(c), c, c, epsilon = 0.01);
    o12 = mean_reduce(sqr(sub(x, y)), axes = [2, 3]);
    o13 = argmax_reduce(x, axes = [2]);
    o14 = matmul(x, y, transposeB = true);
    o15 = transpose(sigmoid(x), axes = [2, 0, 1]);
    o16 = elu(softplus(tanh(x)));
}
"""


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_core_ops_agree_with_nnef_tools_interpreter():
    nnef = pytest.importorskip("nnef")
    tools = pytest.importorskip("nnef_tools.interpreter.pytorch")
    x, y = rand((2, 3, 4, 5), 1), rand((2, 3, 4, 5), 2)
    c = np.array([[0.3, -0.7, 1.2]], "float32")
    i = np.array([[4, 0], [2, 2]], "int32")
    ours = run_graph(graph_of(TEXT), {"x": x, "y": y, "c": c, "i": i})

    g = nnef.parse_string(TEXT)
    nnef.infer_shapes(g)
    interp = tools.Interpreter(g, device="cpu")
    theirs = interp([x, y, c, i.astype(np.int64)])
    for k, got in enumerate(ours, 1):
        want = theirs[f"o{k}"]
        assert got.shape == tuple(want.shape), f"o{k}"
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"o{k}")
