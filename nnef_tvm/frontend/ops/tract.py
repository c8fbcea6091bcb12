"""Converters of the opt-in ``tract`` extension set (Sonos tract's ``tract_core_*`` ops).

Enabled with ``extensions=('tract',)``; the reader declares these operations
(reader/ext_tract.nnef) and infers their shapes (reader/tract_shapes.py). The
semantics follow tract's core NNEF registry: ``erf`` is the Gauss error
function (torch-to-nnef builds the exact GELU on it); ``gather`` takes whole
slices along ``axis`` (output shape input[:axis] + indices + input[axis+1:]);
``cast`` converts to the tract datum type ``to``; the reductions keep the
reduced axes with extent 1, like NNEF's; ``*_reduce_last`` picks the *last*
index among ties. Operations named ``tract_nnef_tvm_*`` are the reader's own helpers
(inserted by reader/tract_document.py and reader/tract_scan.py, never written by tract).
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from ..context import norm_axes
from ..registry import converter

R = relax.op

_MACHINE = {"f16": "float16", "f32": "float32", "f64": "float64", "i8": "int8", "i16": "int16",
            "i32": "int32", "i64": "int64", "u8": "uint8", "u16": "uint16", "u32": "uint32",
            "u64": "uint64", "bool": "bool"}


def _axes(ctx, op, x):
    return sorted(set(norm_axes(op.attribs["axes"], ctx.rank(x))))


@converter("tract_core_erf", extension="tract")
def erf(ctx, op):
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt."""
    return R.erf(ctx.input(op, "x", "scalar"))


@converter("tract_core_gather", extension="tract")
def gather(ctx, op):
    """output[..., i..., ...] = input[..., indices[i...], ...] along ``axis`` (negative indices wrap)."""
    x = ctx.input(op, "input")
    idx = ctx.input(op, "indices", "integer")
    axis = norm_axes([op.attribs["axis"]], ctx.rank(x))[0]
    extent = ctx.shape(x)[axis]
    idx = ctx.emit(R.where(R.less(idx, relax.const(0, ctx.value_dtype(idx))),
                           R.add(idx, relax.const(extent, ctx.value_dtype(idx))), idx))
    return R.take(x, idx, axis=axis)


@converter("tract_core_cast", extension="tract")
def cast(ctx, op):
    """Convert ``input`` to datum type ``to`` (float->int truncates toward zero, as in Rust ``as``)."""
    x = ctx.input(op, "input")
    to = op.attribs["to"]
    if to not in _MACHINE:
        raise ctx.error(op, f"tract_core_cast: unsupported datum type {to!r} "
                            f"(expected one of {', '.join(_MACHINE)})")
    target = ctx.result_dtype(op) if to != "bool" else "bool"
    if to.startswith("f"):
        target = ctx.dtype("scalar")
    elif to != "bool":
        target = ctx.dtype("integer")
    if target == "bool":
        return R.not_equal(x, relax.const(0, ctx.value_dtype(x)))
    return R.astype(x, target)


@converter("tract_core_product_reduce", extension="tract")
def product_reduce(ctx, op):
    """Product over ``axes`` (kept with extent 1)."""
    x = ctx.input(op, "input", "scalar")
    axes = _axes(ctx, op, x)
    return R.prod(x, axis=axes, keepdims=True) if axes else x


def _arg_last(ctx, op, fn):
    x = ctx.input(op, "input", "scalar")
    axes = _axes(ctx, op, x)
    out_dtype = ctx.result_dtype(op)
    if not axes:
        return R.zeros(ctx.shape(x), out_dtype)
    if len(axes) != 1:
        raise ctx.error(op, f"{op.name}: only one reduced axis is supported, got {axes}")
    axis = axes[0]
    n = ctx.shape(x)[axis]
    # the first hit in the reversed axis is the last hit in the original order
    first = ctx.emit(fn(ctx.emit(R.flip(x, axis)), axis=axis, keepdims=True))
    last = R.subtract(relax.const(n - 1, ctx.value_dtype(first)), first)
    return R.astype(last, out_dtype)


@converter("tract_core_argmax_reduce_last", extension="tract")
def argmax_reduce_last(ctx, op):
    """Index of the maximum along the one axis in ``axes``, the last one among ties."""
    return _arg_last(ctx, op, R.argmax)


@converter("tract_core_argmin_reduce_last", extension="tract")
def argmin_reduce_last(ctx, op):
    """Index of the minimum along the one axis in ``axes``, the last one among ties."""
    return _arg_last(ctx, op, R.argmin)


@converter("tract_core_hard_swish", extension="tract")
def hard_swish(ctx, op):
    """hard_swish(x) = x * clamp(x + 3, 0, 6) / 6."""
    x = ctx.input(op, "x", "scalar")
    dt = ctx.value_dtype(x)
    r6 = R.clip(R.add(x, relax.const(3.0, dt)), 0.0, 6.0)
    return R.multiply(x, R.divide(r6, relax.const(6.0, dt)))


@converter("tract_core_broadcast", extension="tract")
def broadcast(ctx, op):
    """numpy-style broadcast of ``input`` to the shape inferred by the reader."""
    return R.broadcast_to(ctx.input(op, "input"), ctx.result_shape(op))


def _unary(relax_fn):
    def convert(ctx, op):
        return relax_fn(ctx.input(op, "x", "scalar"))
    convert.__doc__ = f"Elementwise {relax_fn.__name__} (same meaning in tract and Relax)."
    return convert


for _name in ("tan", "acos", "asin", "atan", "cosh", "sinh", "acosh", "asinh", "atanh"):
    converter(f"tract_core_{_name}", extension="tract")(_unary(getattr(R, _name)))


@converter("tract_nnef_tvm_channel_bias", extension="tract")
def channel_bias(ctx, op):
    """A flat ``[C]`` conv/deconv bias (tract accepts it) reshaped to NNEF's ``[1, C]``.

    Inserted by the reader (reader/extensions.py), never written in a document."""
    return R.reshape(ctx.input(op, "input", "scalar"), ctx.result_shape(op))


@converter("tract_core_round_even", extension="tract")
def round_even(ctx, op):
    """Round to the nearest integer, ties to the even one (IEEE roundTiesToEven, as tract)."""
    x = ctx.input(op, "x", "scalar")
    dt = ctx.value_dtype(x)
    half, one, two = (relax.const(v, dt) for v in (0.5, 1.0, 2.0))
    up = ctx.emit(R.floor(R.add(x, half)))                  # ties rounded up
    tie = R.equal(R.subtract(up, x), half)
    odd = R.not_equal(R.subtract(up, R.multiply(two, R.floor(R.divide(up, two)))), relax.const(0.0, dt))
    return R.where(R.logical_and(tie, odd), R.subtract(up, one), up)


@converter("tract_core_range", extension="tract")
def range_(ctx, op):
    """[start, start + step, ...) stopping before ``end``: a constant (the reader needs literals)."""
    start, step = op.inputs["start"], op.inputs["step"]
    n = ctx.result_shape(op)[0]
    nnef_type = ctx.graph.tensors[str(op.outputs["output"])].dtype
    return ctx.const(start + step * np.arange(n), nnef_type)


@converter("tract_core_one_hot", extension="tract")
def one_hot(ctx, op):
    """``value_on`` where the index equals the position along the new ``axis``, else ``value_off``."""
    idx = ctx.input(op, "input", "integer")
    axis = op.attribs["axis"]
    rank = ctx.rank(idx) + 1
    dt = ctx.result_dtype(op)
    on = ctx.const(op.attribs["value_on"], dt, (1,) * rank)
    off = ctx.const(op.attribs["value_off"], dt, (1,) * rank)
    axis = axis + rank if axis < 0 else axis
    # positions 0..dim-1 along the new axis, compared with the index broadcast over it
    pos_shape = [1] * rank
    pos_shape[axis] = op.attribs["dim"]
    pos = ctx.const(np.arange(op.attribs["dim"]).reshape(pos_shape), ctx.value_dtype(idx))
    return R.where(R.equal(R.expand_dims(idx, axis), pos), on, off)


# Up to this extent along the sorted axis, topk ranks by pairwise comparisons (plain compute
# kernels, O(n^2) temporaries); longer axes use Relax's argsort (an extern call).
TOPK_PAIRWISE_MAX = 1024


@converter("tract_core_topk", extension="tract")
def topk(ctx, op):
    """The ``k`` largest (``largest``) or smallest values along ``axis``, sorted, and their
    indices; among equal values the lower index comes first."""
    x = ctx.input(op, "input", "scalar")
    rank_x = ctx.rank(x)
    axis = op.attribs["axis"] % rank_x
    k = int(op.inputs["k"])
    n = ctx.shape(x)[axis]
    it = ctx.result_dtype(op, "indices")
    largest = bool(op.attribs["largest"])
    if n > TOPK_PAIRWISE_MAX:
        order = ctx.emit(R.argsort(x, axis=axis, descending=largest, dtype=it))
        idx = ctx.emit(R.strided_slice(order, axes=[axis], begin=[0], end=[k]) if k < n else order)
        return [R.gather_elements(x, idx, axis=axis), idx]

    def at(arr, first):     # a 2-D constant placed on axes (axis, axis + 1) of rank_x + 1 dims
        shape = [1] * (rank_x + 1)
        shape[first], shape[first + 1] = arr.shape
        return ctx.const(arr.reshape(shape), it if arr.dtype.kind == "i" else "logical")

    xi = ctx.emit(R.expand_dims(x, axis + 1))        # element i along axis
    xj = ctx.emit(R.expand_dims(x, axis))            # element j along axis + 1
    ahead = R.greater(xj, xi) if largest else R.less(xj, xi)
    j_lower = at(np.arange(n)[None, :] < np.arange(n)[:, None], axis)    # [i, j]: j < i
    before = R.logical_or(ahead, R.logical_and(R.equal(xj, xi), j_lower))
    rank = ctx.emit(R.sum(R.astype(before, it), axis=axis + 1))         # [.., n(i), ..]
    slot = at(np.arange(k)[None, :].astype("int64"), axis)               # [1, k(r)]
    hit = ctx.emit(R.equal(R.expand_dims(rank, axis + 1), R.astype(slot, it)))  # [.., n, k, ..]
    pos = at(np.arange(n)[:, None].astype("int64"), axis)                # [n(i), 1]
    idx = ctx.emit(R.sum(R.where(hit, R.astype(pos, it), relax.const(0, it)), axis=axis))
    return [R.gather_elements(x, idx, axis=axis), idx]


@converter("tract_core_einsum", extension="tract")
def einsum(ctx, op):
    """Einstein summation of the ``inputs`` by the explicit expression ``expr``."""
    xs = ctx.inputs_list(op, "inputs", "scalar")
    return R.einsum(relax.Tuple(xs), op.attribs["expr"].replace(" ", ""))


@converter("tract_nnef_tvm_deconv_filter", extension="tract")
def deconv_filter(ctx, op):
    """tract's deconv filter [C_out, C_in/G, k...] as NNEF's [C_in, C_out/G, k...].

    Per group g: tract[g*C_out/G + o, i] = NNEF[g*C_in/G + i, o]. Inserted by the reader."""
    w = ctx.input(op, "input", "scalar")
    shape = ctx.shape(w)
    g = op.attribs["groups"]
    split = R.reshape(w, (g, shape[0] // g) + tuple(shape[1:]))
    swapped = R.permute_dims(split, [0, 2, 1] + list(range(3, len(shape) + 1)))
    return R.reshape(swapped, ctx.result_shape(op))


@converter("tract_core_shape_of", extension="tract")
def shape_of(ctx, op):
    """The (static) shape of ``input`` as a 1-D integer tensor."""
    return ctx.const(list(ctx.shape(op.inputs["input"])), ctx.result_dtype(op))


@converter("tract_core_trilu", extension="tract")
def trilu(ctx, op):
    """Keep the lower (``upper`` false: col - row <= k) or upper (col - row >= k) triangle of
    the last two axes, zeros elsewhere."""
    x = ctx.input(op, "input", "scalar")
    k = int(op.attribs.get("k", 0))
    return R.triu(x, k) if op.attribs["upper"] else R.tril(x, k)


@converter("tract_core_log_softmax", extension="tract")
def log_softmax(ctx, op):
    """log(softmax(x)) over ``axes``, as x - max - log(sum(exp(x - max)))."""
    x = ctx.input(op, "x", "scalar")
    axes = _axes(ctx, op, x)
    m = ctx.emit(R.max(x, axis=axes, keepdims=True))
    shifted = ctx.emit(R.subtract(x, m))
    return R.subtract(shifted, R.log(R.sum(R.exp(shifted), axis=axes, keepdims=True)))


@converter("tract_transformers_sdpa", extension="tract")
def sdpa(ctx, op):
    """softmax(q k^T * scale + mask) v over the last axis; ``scale`` 0 (absent) means
    1/sqrt(D); ``is_causal`` masks key positions after the query position (top-left aligned,
    as torch's is_causal). ``mask`` is additive; a logical mask keeps the true positions."""
    q, k, v = (ctx.input(op, n, "scalar") for n in ("q", "k", "v"))
    dt = ctx.value_dtype(q)
    qs, ks = ctx.shape(q), ctx.shape(k)
    rank = len(ks)
    scale = op.attribs.get("scale") or 1.0 / float(np.sqrt(qs[-1]))
    kt = R.permute_dims(k, list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = ctx.emit(R.multiply(R.matmul(q, kt), relax.const(scale, dt)))
    mask = op.inputs.get("mask")
    if mask is not None and not (isinstance(mask, (int, float)) and mask == 0):
        m = ctx.operand(mask)
        if ctx.value_dtype(m) == "bool":
            m = R.where(m, relax.const(0.0, dt), relax.const(float("-inf"), dt))
        scores = ctx.emit(R.add(scores, m))
    if op.attribs.get("is_causal"):
        length, keys = qs[-2], ks[-2]
        keep = np.tril(np.ones((length, keys), dtype=bool))
        scores = ctx.emit(R.where(ctx.const(keep, "logical"), scores, relax.const(float("-inf"), dt)))
    return R.matmul(ctx.emit(R.nn.softmax(scores, axis=-1)), v)


_RESIZE_METHOD = {"linear": "linear", "nearest": "nearest_neighbor", "cubic": "cubic"}
_RESIZE_COORDS = {"half_pixel": "half_pixel", "pytorch_half_pixel": "pytorch_half_pixel",
                  "align_corners": "align_corners", "asymmetric": "asymmetric"}
_RESIZE_ROUNDING = {"floor": "floor", "ceil": "ceil", "round_prefer_floor": "round_prefer_floor",
                    "round_prefer_ceil": "round_prefer_ceil"}


@converter("tract_core_resize", extension="tract")
def resize(ctx, op):
    """Resize of the two trailing axes of an NCHW tensor (``interpolator`` linear / nearest /
    cubic, ONNX-style ``coord_transformer`` and ``nearest_mode``), as Relax resize2d."""
    x = ctx.input(op, "input", "scalar")
    shape, out = ctx.shape(x), ctx.result_shape(op)
    a = op.attribs
    problems = []
    if len(shape) != 4 or tuple(shape[:2]) != tuple(out[:2]):
        problems.append(f"only the last two axes of a rank-4 tensor can be resized ({shape} -> {out})")
    for key, table in (("interpolator", _RESIZE_METHOD), ("coord_transformer", _RESIZE_COORDS),
                       ("nearest_mode", _RESIZE_ROUNDING)):
        if a.get(key) not in table:
            problems.append(f"{key} {a.get(key)!r} is not one of {', '.join(table)}")
    if problems:
        raise ctx.error(op, "tract_core_resize: " + "; ".join(problems))
    return R.image.resize2d(x, size=tuple(out[2:]), layout="NCHW",
                            method=_RESIZE_METHOD[a["interpolator"]],
                            coordinate_transformation_mode=_RESIZE_COORDS[a["coord_transformer"]],
                            rounding_method=_RESIZE_ROUNDING[a["nearest_mode"]])
