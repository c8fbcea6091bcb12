"""Native converters of compound ops vs the same graph expanded through the compound
fragment bodies (expanded by the Khronos parser, a test oracle), so the primitives'
converters compute the spec's own definition of each compound.

zero_point_linear_quantize is left out: Khronos expands its body wrongly (SPEC-NOTES E1).
Inputs avoid rounding ties (the quantizers' round). Tolerance rtol 1e-4 / atol 1e-5.
"""
import numpy as np

from frontend.support_frontend import graph_of, rand, run_graph

COMPOUNDS = ["sqr", "sqrt", "rsqr", "rsqrt", "log2", "min", "max", "clamp", "relu", "sigmoid",
             "softmax", "softplus", "elu", "selu", "gelu", "silu", "prelu", "leaky_relu",
             "linear", "l1_normalization", "l2_normalization", "batch_normalization",
             "mean_reduce", "moments", "min_max_linear_quantize", "linear_quantize",
             "logarithmic_quantize", "add_n", "copy_n"]

TEXT = """version 1.0;
graph G( x, p, c, m, w, b ) -> ( o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14,
                                 o15, o16, o17, o18, o19, o20, o21, o22, o23, o24, o25, o26,
                                 o27, o28, o29, o30, o31 )
{
    x = external(shape = [2, 3, 4]);
    p = external(shape = [2, 3, 4]);
    c = external(shape = [1, 3]);
    m = external(shape = [2, 4]);
    w = external(shape = [5, 4]);
    b = external(shape = [1, 5]);
    o1 = sqr(x);
    o2 = sqrt(p);
    o3 = rsqr(p);
    o4 = rsqrt(p);
    o5 = log2(p);
    o6 = min(x, c);
    o7 = max(x, c);
    o8 = clamp(x, c, 0.5);
    o9 = relu(x);
    o10 = sigmoid(x);
    o11 = softmax(x, axes = [1, 2]);
    o12 = softplus(x);
    o13 = elu(x, alpha = 0.7);
    o14 = selu(x);
    o15 = gelu(x);
    o16 = silu(x);
    o17 = prelu(x, c);
    o18 = leaky_relu(x, alpha = 0.1);
    o19 = linear(m, w, b);
    o20 = l1_normalization(x, axes = [1], bias = 0.1, epsilon = 0.01);
    o21 = l2_normalization(x, axes = [1, 2], epsilon = 0.01);
    o22 = batch_normalization(x, c, p, c, c, epsilon = 0.001);
    o23 = mean_reduce(x, axes = [0, 2]);
    o24, o25 = moments(x, axes = [2]);
    o26 = min_max_linear_quantize(x, -1.0, c, bits = 5, signed = true, symmetric = true);
    o27 = linear_quantize(x, c, 1.5, bits = 4);
    o28 = logarithmic_quantize(x, 2.5, bits = 3);
    o29 = add_n([x, p, x]);
    [o30, o31] = copy_n(x, times = 2);
}
"""


def test_native_compounds_match_their_fragment_bodies():
    ins = {"x": rand((2, 3, 4), 1, -1.9, 1.9), "p": rand((2, 3, 4), 2, 0.3, 2.0),
           "c": np.array([[0.2, -0.4, 0.9]], "float32"), "m": rand((2, 4), 3),
           "w": rand((5, 4), 4), "b": rand((1, 5), 5)}
    native_graph = graph_of(TEXT)
    lowered_graph = graph_of(TEXT, lowered=COMPOUNDS)
    lowered_names = {op.name for op in lowered_graph.operations}
    assert not lowered_names & set(COMPOUNDS), "the oracle did not expand the compounds"
    native = run_graph(native_graph, ins)
    lowered = run_graph(lowered_graph, ins)
    for k, (a, b) in enumerate(zip(native, lowered), 1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"o{k}")
