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
