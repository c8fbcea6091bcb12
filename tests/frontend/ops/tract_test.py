"""Converters of the opt-in 'tract' extension set vs numpy references written from tract's semantics.

One torch-to-nnef-style document (read by our reader with ``extensions=('tract',)``)
exercises every converter; references: exact GELU via ``math.erf``, ``np.take``
with wrapped negative indices, truncating casts, ``np.prod`` and last-occurrence
argmax/argmin computed on the reversed axis.
"""
import math

import numpy as np
import pytest

import nnef_tvm
from frontend.support_frontend import run_graph
from nnef_tvm.errors import NNEFError
from nnef_tvm.frontend import from_nnef

DOC = """version 1.0;

extension tract_registry tract_core;

fragment tract_core_properties(
) -> (properties: (string, tensor<scalar>)[])
{
  properties = [("tract_nnef_ser_version", "0.21.6")];
}

fragment gelu_erf( x: tensor<scalar> ) -> ( y: tensor<scalar> )
{
  y = 0.5 * x * (1.0 + tract_core_erf(x / sqrt(2.0)));
}

graph net( input_0, idx ) -> ( out_gelu, out_g, out_c, out_p, out_amax, out_amin, out_g0 )
{
  input_0 = tract_core_external(shape = [3, 6], datum_type = 'f32');
  idx = tract_core_external(shape = [4], datum_type = 'i64');
  out_gelu = gelu_erf(input_0);
  out_g = tract_core_gather(input_0, indices = idx, axis = 1);
  out_c = tract_core_cast(input_0, to = 'i32');
  out_p = tract_core_product_reduce(input_0, axes = [1]);
  out_amax = tract_core_argmax_reduce_last(input_0, axes = [1]);
  out_amin = tract_core_argmin_reduce_last(input_0, axes = [-2]);
  out_g0 = tract_core_gather(input_0, indices = idx, axis = 0);
}
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("tract") / "graph.nnef"
    p.write_text(DOC)
    return nnef_tvm.load(p, extensions=("tract",))


def _last_arg(fn, x, axis):
    rev = fn(np.flip(x, axis), axis=axis, keepdims=True)
    return x.shape[axis] - 1 - rev


def test_tract_ops_match_numpy(model):
    rng = np.random.default_rng(3)
    # ties on purpose (rounded values) so that "last occurrence" matters
    x = np.round(rng.uniform(-2.5, 2.5, size=(3, 6)) * 2) / 2
    x = x.astype("float32")
    x[0, :] = [1.0, 2.0, 2.0, -1.0, -1.0, 0.5]
    idx = np.array([0, 2, -1, 1], dtype="int32")
    out = run_graph(model.graph, {"input_0": x, "idx": idx}, extensions=("tract",))
    erf = np.vectorize(math.erf)
    gelu = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    np.testing.assert_allclose(out[0], gelu, rtol=1e-5, atol=1e-6)
    wrapped = np.where(idx < 0, idx + 6, idx)
    np.testing.assert_array_equal(out[1], np.take(x, wrapped, axis=1))
    np.testing.assert_array_equal(out[2], np.trunc(x).astype("int32"))
    np.testing.assert_allclose(out[3], np.prod(x, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(out[4], _last_arg(np.argmax, x, 1))
    assert out[4][0, 0] == 2                 # the later of the two maxima
    np.testing.assert_array_equal(out[5], _last_arg(np.argmin, x, 0))
    np.testing.assert_array_equal(out[6], np.take(x, np.where(idx < 0, idx + 3, idx), axis=0))


def test_converters_are_opt_in(model):
    with pytest.raises(NNEFError, match="tract_core_"):
        from_nnef(model.graph)


def test_compile_with_extensions(tmp_path):
    p = tmp_path / "graph.nnef"
    p.write_text(DOC.replace("out_g0 = tract_core_gather(input_0, indices = idx, axis = 0);",
                             "out_g0 = tract_core_erf(input_0);"))
    compiled = nnef_tvm.compile(str(p), "x86", extensions=("tract",))
    x = np.linspace(-2, 2, 18, dtype="float32").reshape(3, 6)
    idx = np.array([1, 1, 0, 3], dtype="int32")
    outs = compiled.run({"input_0": x, "idx": idx}) if hasattr(compiled, "run") else None
    assert outs is not None
    last = outs[-1] if isinstance(outs, (list, tuple)) else list(outs.values())[-1]
    np.testing.assert_allclose(np.asarray(last), np.vectorize(math.erf)(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(NNEFError, match="--extensions tract"):
        nnef_tvm.compile(str(p), "x86")


UNARY_DOC = """version 1.0;
extension tract_core;
graph g( x, small, big ) -> ( hs, b, t, ac, as_, at, ch, sh, ach, ash, ath )
{
  x = tract_core_external(shape = [2, 3], datum_type = 'f32');
  small = tract_core_external(shape = [3], datum_type = 'f32');
  big = tract_core_external(shape = [3], datum_type = 'f32');
  hs = tract_core_hard_swish(x);
  b = tract_core_broadcast(small, shape = [4, 3]);
  t = tract_core_tan(small);
  ac = tract_core_acos(small);
  as_ = tract_core_asin(small);
  at = tract_core_atan(x);
  ch = tract_core_cosh(x);
  sh = tract_core_sinh(x);
  ach = tract_core_acosh(big);
  ash = tract_core_asinh(x);
  ath = tract_core_atanh(small);
}
"""


def test_tract_unary_and_broadcast_match_numpy(tmp_path):
    p = tmp_path / "graph.nnef"
    p.write_text(UNARY_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    x = np.array([[-4.0, -1.5, 0.0], [1.0, 2.5, 4.0]], dtype="float32")
    small = np.array([-0.7, 0.1, 0.6], dtype="float32")
    big = np.array([1.0, 2.0, 7.5], dtype="float32")
    out = run_graph(m.graph, {"x": x, "small": small, "big": big}, extensions=("tract",))
    refs = [x * np.clip(x + 3, 0, 6) / 6, np.broadcast_to(small, (4, 3)), np.tan(small),
            np.arccos(small), np.arcsin(small), np.arctan(x), np.cosh(x), np.sinh(x),
            np.arccosh(big), np.arcsinh(x), np.arctanh(small)]
    for got, ref in zip(out, refs):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert len(out) == len(refs)


NEW_OPS_DOC = """version 1.0;
extension tract_registry tract_core;
graph g( x, ids, m ) -> ( re, rg, oh, tv, ti, es, c, pad, sm )
{
  x = tract_core_external(shape = [2, 6], datum_type = 'f32');
  ids = tract_core_external(shape = [3], datum_type = 'i64');
  m = tract_core_external(shape = [2, 3, 4], datum_type = 'f32');
  re = tract_core_round_even(x);
  r = tract_core_range(1, 13, step = 2);
  r1 = unsqueeze(r, axes = [0]);
  rg = add(x, r1);
  oh = tract_core_one_hot(ids, axis = 0, dim = 4, value_off = -1.0, value_on = 2.5);
  tv, ti = tract_core_topk(x, k = 3, axis = 1, largest = false);
  es = tract_core_einsum([m, x], expr = 'bij,bk->bjk', acc = 'f32', output = '');
  lo = unsqueeze(-1, axes = [0, 1]);
  c = max(x, lo);
  pad = pad(x, padding = [[0, 0], [2, 1]], border = 'reflect');
  sm = softmax(x, 1);
}
"""


def test_tract_new_ops_match_numpy(tmp_path):
    """round_even (ties to even), range (literal integers promoted where added to floats),
    one_hot (custom on/off values), topk (smallest, sorted), einsum, positional array
    attribute, array-of-arrays padding, integer literal clamp bound."""
    p = tmp_path / "graph.nnef"
    p.write_text(NEW_OPS_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 0.49], [3.5, -2.5, 1.2, 7.0, -0.2, 4.5]], "float32")
    ids = np.array([3, 0, 1], "int32")
    mm = np.random.default_rng(1).standard_normal((2, 3, 4)).astype("float32")
    out = dict(zip(m.graph.outputs, run_graph(m.graph, {"x": x, "ids": ids, "m": mm},
                                              extensions=("tract",))))
    np.testing.assert_array_equal(out["re"], np.round(x))        # numpy rounds half to even
    assert out["re"][0, 0] == 0.0 and out["re"][0, 2] == 2.0 and out["re"][1, 1] == -2.0
    np.testing.assert_allclose(out["rg"], x + np.arange(1, 13, 2, dtype="float32"))
    ref_oh = np.where(np.arange(4)[:, None] == ids[None, :], 2.5, -1.0)
    np.testing.assert_array_equal(out["oh"], ref_oh)
    order = np.argsort(x, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(out["tv"], np.take_along_axis(x, order, 1))
    np.testing.assert_array_equal(np.take_along_axis(x, out["ti"].astype("int64"), 1), out["tv"])
    np.testing.assert_allclose(out["es"], np.einsum("bij,bk->bjk", mm, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["c"], np.maximum(x, -1.0))
    np.testing.assert_array_equal(out["pad"], np.pad(x, [(0, 0), (2, 1)], mode="reflect"))
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(out["sm"], e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


SCAN_DOC = """version 1.0;
extension tract_registry tract_core;

fragment step( acc: tensor<scalar>, xt: tensor<scalar>, w: tensor<scalar> ) -> ( acc_next: tensor<scalar> )
{
  acc_next = tanh(acc * w + xt);
}

fragment run( input: tensor<scalar>, init: tensor<scalar>, w: tensor<scalar>, pace: integer )
  -> ( seq: tensor<scalar>, fin: tensor<scalar> )
{
  (seq, fin) = tract_core_scan(body = "step",
      scan = [("xt", input, 1, pace)], full = [("w", w)],
      state = [("acc", init, "acc_next")],
      output = [("acc_next", "full", 1, pace), ("acc_next", "last", 1, pace)], skip = 0);
}

graph g( x, h0 ) -> ( fwd, fwd_last, bwd, bwd_last )
{
  x = tract_core_external(shape = [2, 5, 3], datum_type = 'f32');
  h0 = tract_core_external(shape = [2, 1, 3], datum_type = 'f32');
  w = variable<scalar>(label = 'w', shape = [1, 1, 3]);
  fwd, fwd_last = run(x, h0, w, pace = 1);
  bwd, bwd_last = run(x, h0, w, pace = -1);
}
"""


def _scan_ref(x, h0, w, backward):
    steps = range(x.shape[1] - 1, -1, -1) if backward else range(x.shape[1])
    h, seq = h0, np.zeros_like(x)
    for t in steps:
        h = np.tanh(h * w + x[:, t:t + 1])
        seq[:, t:t + 1] = h
    return seq, h


def test_tract_scan_unrolled_matches_numpy(tmp_path):
    """tract_core_scan: scanned input sliced per step (forward and, with a negative chunk,
    backward), full input, state carried, 'full' output in position order and 'last' output."""
    p = tmp_path / "graph.nnef"
    p.write_text(SCAN_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    assert not any("scan" in op.name for op in m.graph.operations)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    h0 = rng.standard_normal((2, 1, 3)).astype("float32")
    w = rng.standard_normal((1, 1, 3)).astype("float32")
    var = next(op for op in m.graph.operations if op.name == "variable")
    m.graph.tensors[str(var.outputs["output"])].data = w
    out = run_graph(m.graph, {"x": x, "h0": h0}, extensions=("tract",))
    for got, ref in zip(out, _scan_ref(x, h0, w, False) + _scan_ref(x, h0, w, True)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_tract_scan_step_count_must_be_unique(tmp_path):
    doc = SCAN_DOC.replace("bwd, bwd_last = run(x, h0, w, pace = -1);",
                           "y = slice(x, axes = [1], begin = [0], end = [4]);\n"
                           "  bwd, bwd_last = run(y, h0, w, pace = -1);")
    p = tmp_path / "graph.nnef"
    p.write_text(doc)
    with pytest.raises(NNEFError, match="tract_core_scan: .*different step counts"):
        nnef_tvm.load(p, extensions=("tract",))


QUIRKS_DOC = """version 1.0;
extension tract_registry tract_core;

fragment silu( x: tensor<scalar> ) -> ( y: tensor<scalar> )
{
  y = 2.0 * x;
}

graph g( x, v ) -> ( s, lin, lk, cb )
{
  x = tract_core_external(shape = [2, 3, 4], datum_type = 'f32');
  v = tract_core_external(shape = [1, 2, 5], datum_type = 'f32');
  xc = tract_core_cast(x, to = 'f32');
  xc = tract_core_cast(x, to = 'f32');
  s = silu(xc);
  w = variable<scalar>(label = 'w', shape = [1, 5, 4]);
  b = variable<scalar>(label = 'b', shape = [1, 1, 5]);
  lin = linear(x, w, b);
  lk = leaky_relu(x, 0.25);
  k = variable<scalar>(label = 'k', shape = [3, 2, 3]);
  kb = variable<scalar>(label = 'kb', shape = [3]);
  cb = conv(v, k, kb, padding = [(1, 1)], border = 'constant');
}
"""


def test_tract_document_quirks_match_numpy(tmp_path):
    """A document fragment shadowing a standard op runs the document's body; a repeated
    identical statement is accepted; batched (rank-3) linear; positional scalar attribute;
    flat [C] conv bias."""
    p = tmp_path / "graph.nnef"
    p.write_text(QUIRKS_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    rng = np.random.default_rng(9)
    data = {"w": rng.standard_normal((1, 5, 4)), "b": rng.standard_normal((1, 1, 5)),
            "k": rng.standard_normal((3, 2, 3)), "kb": rng.standard_normal(3)}
    for op in m.graph.operations:
        if op.name == "variable":
            m.graph.tensors[str(op.outputs["output"])].data = data[op.attribs["label"]].astype("float32")
    x = rng.standard_normal((2, 3, 4)).astype("float32")
    v = rng.standard_normal((1, 2, 5)).astype("float32")
    s, lin, lk, cb = run_graph(m.graph, {"x": x, "v": v}, extensions=("tract",))
    np.testing.assert_allclose(s, 2 * x, rtol=1e-6)
    np.testing.assert_allclose(lin, x @ data["w"].transpose(0, 2, 1) + data["b"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lk, np.where(x < 0, 0.25 * x, x), rtol=1e-6)
    vp = np.pad(v[0], [(0, 0), (1, 1)])
    ref = np.array([[(data["k"][o] * vp[:, i:i + 3]).sum() + data["kb"][o] for i in range(5)]
                    for o in range(3)])[None]
    np.testing.assert_allclose(cb, ref, rtol=1e-5, atol=1e-5)


SHAPES_DOC = """version 1.0;
extension tract_registry tract_core;
graph g( x, f ) -> ( sh, lo, up, pr, df )
{
  x = tract_core_external(shape = [2, 4, 5], datum_type = 'f32');
  f = tract_core_external(shape = [6, 2, 3, 3], datum_type = 'f32');
  s = tract_core_shape_of(x);
  sh = tract_core_cast(s, to = 'f32');
  lo = tract_core_trilu(x, upper = false, k = 1);
  up = tract_core_trilu(x, upper = true, k = -1);
  slope = unsqueeze([0.5, -2.0, 0.25, 1.0], axes = [0, 2]);
  pr = prelu(x, slope);
  df = tract_nnef_tvm_deconv_filter(f, groups = 2);
}
"""


def test_tract_shape_of_trilu_literal_array_deconv_filter(tmp_path):
    """shape_of as data; trilu both ways with offsets (numpy tril/triu on the last two axes);
    a literal array in a tensor position (PReLU slopes); the deconv filter re-layout from
    tract's [C_out, C_in/G, k..] to NNEF's [C_in, C_out/G, k..] checked element by element."""
    p = tmp_path / "graph.nnef"
    p.write_text(SHAPES_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 5)).astype("float32")
    f = rng.standard_normal((6, 2, 3, 3)).astype("float32")
    sh, lo, up, pr, df = run_graph(m.graph, {"x": x, "f": f}, extensions=("tract",))
    np.testing.assert_array_equal(sh, [2, 4, 5])
    np.testing.assert_array_equal(lo, np.tril(x, 1))
    np.testing.assert_array_equal(up, np.triu(x, -1))
    slope = np.array([0.5, -2.0, 0.25, 1.0], "float32")[None, :, None]
    np.testing.assert_allclose(pr, np.where(x < 0, slope * x, x), rtol=1e-6)
    groups, cout_g, cin_g = 2, 3, 2
    assert df.shape == (groups * cin_g, cout_g, 3, 3)
    for g in range(groups):
        for o in range(cout_g):
            for i in range(cin_g):
                np.testing.assert_array_equal(df[g * cin_g + i, o], f[g * cout_g + o, i])


def test_tract_attribute_variable_inlined_from_dat(tmp_path):
    """``epsilon = var`` with ``var`` a one-element variable: its .dat value becomes the
    literal (a different value than the usual 1e-5 so that a wrong read shows)."""
    from nnef_tvm.reader import tensorfile
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "graph.nnef").write_text("""version 1.0;
extension tract_registry tract_core;
graph g( x ) -> ( y )
{
  x = tract_core_external(shape = [1, 2, 3], datum_type = 'f32');
  eps = variable<scalar>(label = 'eps', shape = []);
  mean = variable<scalar>(label = 'mean', shape = [1, 2, 1]);
  y = batch_normalization(x, mean, mean, 0.0, 1.0, epsilon = eps);
}
""")
    writer = tensorfile.tensor_bytes
    mean = np.array([0.5, 1.5], "float32").reshape(1, 2, 1)
    (folder / "eps.dat").write_bytes(writer(np.array(0.75, "float32")))
    (folder / "mean.dat").write_bytes(writer(mean))
    m = nnef_tvm.load(folder, extensions=("tract",))
    bn = next(op for op in m.graph.operations if op.name == "batch_normalization")
    assert bn.attribs["epsilon"] == 0.75
    x = np.arange(6, dtype="float32").reshape(1, 2, 3)
    (y,) = run_graph(m.graph, {"x": x}, extensions=("tract",))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(mean + 0.75), rtol=1e-5)


TOPK_DOC = """version 1.0;
extension tract_core;
graph g( x ) -> ( v, i )
{
  x = tract_core_external(shape = [3, 7], datum_type = 'f32');
  v, i = tract_core_topk(x, k = 4, axis = -1, largest = true);
}
"""


@pytest.mark.parametrize("pairwise", [True, False])
def test_tract_topk_largest_both_paths(tmp_path, monkeypatch, pairwise):
    """topk by pairwise ranks (short axes; ties: lower index first, as a stable sort) and by
    argsort (long axes, forced here; checked on distinct values)."""
    from nnef_tvm.frontend.ops import tract as tract_ops
    if not pairwise:
        monkeypatch.setattr(tract_ops, "TOPK_PAIRWISE_MAX", 0)
    p = tmp_path / "graph.nnef"
    p.write_text(TOPK_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    rng = np.random.default_rng(4)
    x = rng.permutation(21).reshape(3, 7).astype("float32")
    if pairwise:
        x = np.round(x / 4)                  # ties
    v, i = run_graph(m.graph, {"x": x}, extensions=("tract",))
    order = np.argsort(-x, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(v, np.take_along_axis(x, order, 1))


@pytest.mark.parametrize("edit, message, line", [
    (("skip = 0", "skip = 1"), "tract_core_scan: only skip = 0 is supported", 15),
    (('("acc_next", "last", 1, pace)', '("xt", "last", 1, pace)'),
     "output 'xt' is not a state of body 'step'", 12),
    (('body = "step"', 'body = "nope"'), "body fragment 'nope' is not defined", 12),
])
def test_tract_scan_limits_are_located_errors(tmp_path, edit, message, line):
    p = tmp_path / "graph.nnef"
    p.write_text(SCAN_DOC.replace(*edit))
    with pytest.raises(NNEFError, match=message) as info:
        nnef_tvm.load(p, extensions=("tract",))
    assert f"graph.nnef:{line}:" in str(info.value)


def test_tract_range_needs_literals(tmp_path):
    p = tmp_path / "graph.nnef"
    p.write_text("""version 1.0;
extension tract_core;
graph g( n ) -> ( r )
{
  n = tract_core_external(shape = [], datum_type = 'i64');
  r = tract_core_range(0, n, step = 1);
}
""")
    with pytest.raises(NNEFError, match="'end' must be a literal number") as info:
        nnef_tvm.load(p, extensions=("tract",))
    assert "graph.nnef:6:" in str(info.value)


def test_tract_properties_with_braces_in_strings(tmp_path):
    """torch-to-nnef's identity properties quote arbitrary text (export command, host)."""
    doc = DOC.replace('properties = [("tract_nnef_ser_version", "0.21.6")];',
                      """properties = [("export_cmd", "run f({x: 1}) }"), ("user", 'r}o{ot')];""")
    assert "}" in doc[doc.index("export_cmd"):doc.index("gelu_erf")]
    p = tmp_path / "graph.nnef"
    p.write_text(doc)
    m = nnef_tvm.load(p, extensions=("tract",))
    assert "out_gelu" in m.graph.outputs


def test_tract_symbolic_dimensions_rejected_clearly(tmp_path):
    """torch-to-nnef's dynamic_axes give ``extension tract_symbol S;``: refused at that line."""
    p = tmp_path / "graph.nnef"
    p.write_text("""version 1.0;
extension tract_registry tract_core;
extension tract_symbol S;
graph g( x ) -> ( y )
{
  x = tract_core_external(shape = [1, S], datum_type = 'f32');
  y = relu(x);
}
""")
    with pytest.raises(NNEFError, match="symbolic dimension 'S'.*static shapes") as info:
        nnef_tvm.load(p, extensions=("tract",))
    assert "graph.nnef:3:11" in str(info.value)


SDPA_DOC = """version 1.0;
extension tract_registry tract_transformers;
extension tract_registry tract_core;
graph g( q, k, v, mask ) -> ( plain, masked, causal, ls )
{
  q = tract_core_external(shape = [2, 3, 4], datum_type = 'f32');
  k = tract_core_external(shape = [2, 5, 4], datum_type = 'f32');
  v = tract_core_external(shape = [2, 5, 6], datum_type = 'f32');
  mask = tract_core_external(shape = [1, 3, 5], datum_type = 'f32');
  plain = tract_transformers_sdpa(q, k, v, datum_type = 'f32', acc_datum_type = 'f32', is_causal = false);
  masked = tract_transformers_sdpa(q, k, v, mask, scale = 0.7, datum_type = 'f32');
  causal = tract_transformers_sdpa(q, k, v, is_causal = true);
  ls = tract_core_log_softmax(v, [1, 2]);
}
"""


def test_tract_sdpa_and_log_softmax_match_numpy(tmp_path):
    """sdpa: default scale 1/sqrt(D), additive mask with explicit scale, causal (top-left
    aligned, L=3 < S=5); log_softmax over two axes."""
    p = tmp_path / "graph.nnef"
    p.write_text(SDPA_DOC)
    m = nnef_tvm.load(p, extensions=("tract",))
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal(s).astype("float32") for s in ((2, 3, 4), (2, 5, 4), (2, 5, 6)))
    mask = np.where(rng.random((1, 3, 5)) < 0.3, -1e9, rng.standard_normal((1, 3, 5))).astype("float32")
    out = run_graph(m.graph, {"q": q, "k": k, "v": v, "mask": mask}, extensions=("tract",))

    def attend(scores):
        e = np.exp(scores - scores.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)) @ v
    s = q @ k.transpose(0, 2, 1)
    causal = np.where(np.tril(np.ones((3, 5), bool)), s / 2.0, -np.inf)
    lv = v - v.max((1, 2), keepdims=True)
    refs = [attend(s / 2.0), attend(s * 0.7 + mask), attend(causal),
            lv - np.log(np.exp(lv).sum((1, 2), keepdims=True))]
    for got, ref in zip(out, refs):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_tract_cast_result_type_known_while_checking(tmp_path):
    """A cast to 'i64' feeds an integer-only parameter (gather indices) and a cast of an
    integer literal to 'f32' feeds a scalar-only one (pow), as torch-to-nnef writes them."""
    p = tmp_path / "graph.nnef"
    p.write_text("""version 1.0;
extension tract_registry tract_core;
graph g( x, pos ) -> ( picked, scaled )
{
  x = tract_core_external(shape = [5, 2], datum_type = 'f32');
  pos = tract_core_external(shape = [3], datum_type = 'f32');
  idx = tract_core_cast(pos, to = 'i64');
  picked = tract_core_gather(x, indices = idx, axis = 0);
  four = tract_core_cast(4, to = 'f32');
  scaled = pow(x, four);
}
""")
    m = nnef_tvm.load(p, extensions=("tract",))
    assert m.graph.tensors["idx"].dtype == "integer" and m.graph.tensors["four"].dtype == "scalar"
    x = np.arange(10, dtype="float32").reshape(5, 2) / 4
    pos = np.array([4.7, 0.2, 2.9], "float32")
    picked, scaled = run_graph(m.graph, {"x": x, "pos": pos}, extensions=("tract",))
    np.testing.assert_array_equal(picked, x[[4, 0, 2]])
    np.testing.assert_allclose(scaled, x ** 4, rtol=1e-6)
