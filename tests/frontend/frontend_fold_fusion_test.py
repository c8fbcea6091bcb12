"""Fusion structure: which NNEF ops end up in which fused kernel, and batch-norm folding.

Structure is read from the compiler's own phases (legalize + FuseOps, no code
generation) through the fusion report; numbers are checked against numpy.
"""
import numpy as np
import pytest

from nnef_tvm.frontend import from_nnef
from nnef_tvm.frontend.fold import fold_batch_norm
from nnef_tvm.targets import get_target
from nnef_tvm.targets.fusion_report import fusion_report, origins_from_graph
from nnef_tvm.targets.pipeline import build_phases, run_phases

from frontend.support_frontend import graph_of, run_graph

RNG = np.random.default_rng(7)

CONV_BN = """version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [1, 3, 6, 6]);
    w = variable(shape = [4, 3, 3, 3], label = 'w');
    b = variable(shape = [1, 4], label = 'b');
    mean = variable(shape = [1, 4], label = 'mean');
    var = variable(shape = [1, 4], label = 'var');
    off = variable(shape = [1, 4], label = 'off');
    sc = variable(shape = [1, 4], label = 'sc');
    c = conv(x, w, b, padding = [(0, 0), (0, 0)]);
    n = batch_normalization(c, mean, var, off, sc, epsilon = 0.001);
    y = relu(n);
}
"""

LINEAR_ACT = """version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [2, 5]);
    w = variable(shape = [3, 5], label = 'w');
    b = variable(shape = [1, 3], label = 'b');
    l = linear(x, w, b);
    y = sigmoid(l);
}
"""


def _conv_bn_vars():
    return {"w": RNG.normal(size=(4, 3, 3, 3)).astype("float32"),
            "b": RNG.normal(size=(1, 4)).astype("float32"),
            "mean": RNG.normal(size=(1, 4)).astype("float32"),
            "var": RNG.uniform(0.5, 2.0, size=(1, 4)).astype("float32"),
            "off": RNG.normal(size=(1, 4)).astype("float32"),
            "sc": RNG.normal(size=(1, 4)).astype("float32")}


def _np_conv_valid(x, w, b):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for i in range(h - kh + 1):
        for j in range(wd - kw + 1):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i:i + kh, j:j + kw], w)
    return out + b.reshape(1, o, 1, 1)


def _kernels(graph, **kw):
    """Fusion report of the x86 pipeline up to FuseOps: [{op names}] per kernel."""
    mod = from_nnef(graph, **kw)
    snaps = {}
    phases = [p for p in build_phases(get_target("x86")) if p.name in ("legalize", "fuse")]
    run_phases(mod, get_target("x86"), phases, on_phase=lambda n, m: snaps.__setitem__(n, m))
    kernels = fusion_report(snaps["legalize"], snaps["fuse"], origins_from_graph(graph))
    return [sorted({o["op"] for o in k.ops}) for k in kernels], kernels


def test_fold_rewrites_conv_bn_into_one_conv():
    v = _conv_bn_vars()
    g = graph_of(CONV_BN, v)
    folded, names = fold_batch_norm(g)
    assert names == ["n"]
    assert [op.name for op in folded.operations if op.name not in ("variable", "external")] \
        == ["conv", "relu"]
    assert [op.name for op in g.operations].count("batch_normalization") == 1   # input untouched
    s = v["sc"] / np.sqrt(v["var"] + 0.001)
    conv = next(op for op in folded.operations if op.name == "conv")
    np.testing.assert_allclose(folded.tensors[str(conv.inputs["filter"])].data,
                               v["w"] * s.reshape(4, 1, 1, 1), rtol=1e-6)


def test_folded_conv_bn_matches_numpy_and_unfolded():
    v = _conv_bn_vars()
    x = RNG.normal(size=(1, 3, 6, 6)).astype("float32")
    c = _np_conv_valid(x.astype(np.float64), v["w"].astype(np.float64), v["b"])
    r = lambda a: a.reshape(1, 4, 1, 1)  # noqa: E731
    ref = np.maximum(r(v["off"]) + r(v["sc"]) * (c - r(v["mean"])) / np.sqrt(r(v["var"]) + 0.001), 0)
    (folded,) = run_graph(graph_of(CONV_BN, v), {"x": x})
    (plain,) = run_graph(graph_of(CONV_BN, v), {"x": x}, fold_batch_norm=False)
    np.testing.assert_allclose(folded, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(plain, ref, rtol=1e-4, atol=1e-4)


def test_conv_bn_relu_fused_kernels_before_and_after_folding():
    v = _conv_bn_vars()
    before, _ = _kernels(graph_of(CONV_BN, v), fold_batch_norm=False)
    after, kernels = _kernels(graph_of(CONV_BN, v))
    # folded: one kernel for the whole chain, no separate normalization work
    # (TVM already fuses the unfolded elementwise batch norm into the conv kernel)
    assert before == [["batch_normalization", "conv", "relu"]], before
    assert len(after) == 1, after
    # the folded conv computes 'n' directly: the conv result 'c' no longer exists
    names = kernels[0].tensors
    assert not any(t == "c" or t.startswith("c_") for t in names), names
    assert any(t == "n" or t.startswith("n_") for t in names), names
    if hasattr(kernels[0], "primfuncs"):      # conv2d + bias add + relu, nothing else
        assert list(kernels[0].primfuncs) == ["conv2d", "add", "relu"], kernels[0].primfuncs
    text = from_nnef(graph_of(CONV_BN, v)).script()
    assert "R.sqrt" not in text and "R.divide" not in text, text
    assert "R.sqrt" in from_nnef(graph_of(CONV_BN, v), fold_batch_norm=False).script()


def test_conv_bias_relu_is_one_kernel():
    text = CONV_BN.replace("    n = batch_normalization(c, mean, var, off, sc, epsilon = 0.001);\n", "") \
        .replace("relu(n)", "relu(c)")
    v = _conv_bn_vars()
    kernels, _ = _kernels(graph_of(text, v))
    assert kernels == [["conv", "relu"]], kernels


def test_linear_activation_is_one_kernel():
    g = graph_of(LINEAR_ACT, {"w": RNG.normal(size=(3, 5)).astype("float32"),
                              "b": RNG.normal(size=(1, 3)).astype("float32")})
    kernels, _ = _kernels(g)
    assert kernels == [["linear", "sigmoid"]], kernels


def test_fold_skips_shared_or_nonconstant_inputs():
    v = _conv_bn_vars()
    shared = CONV_BN.replace("    y = relu(n);", "    y = add(relu(n), c);")
    assert fold_batch_norm(graph_of(shared, v))[1] == []          # conv output read twice
    ext = CONV_BN.replace("x ) -> ( y )", "x, mean ) -> ( y )").replace(
        "mean = variable(shape = [1, 4], label = 'mean');", "mean = external(shape = [1, 4]);")
    vv = {k: a for k, a in v.items() if k != "mean"}
    assert fold_batch_norm(graph_of(ext, vv))[1] == []            # mean is an input
