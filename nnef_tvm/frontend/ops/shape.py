"""Shape manipulation (NNEF §4.5): reshape, squeeze, unsqueeze, transpose, split,
concat, stack, unstack, slice, pad, tile, gather, cast.

All of these are generic (``<?>``): the element type of the result is the one of
the input, so no dtype is forced on identifiers; literals cannot occur.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from ..context import norm_axes
from ..padding import border_indices
from ..registry import converter

R = relax.op


def _in(ctx, op, name="input"):
    return ctx.input(op, name, op.dtype)


def reshape_target(shape, new, axis_start=0, axis_count=-1):
    """Output shape of NNEF reshape: replace axes [start, start+count) by ``new``.

    In ``new``, 0 copies the input extent at ``axis_start + k``, one -1 is inferred.
    """
    rank = len(shape)
    start = axis_start + rank if axis_start < 0 else axis_start
    count = rank - start if axis_count == -1 else axis_count
    replaced = shape[start:start + count]
    out = [shape[start + k] if s == 0 else s for k, s in enumerate(new)]
    if -1 in out:
        known = int(np.prod([s for s in out if s != -1])) if len(out) > 1 else 1
        out[out.index(-1)] = int(np.prod(replaced)) // max(known, 1)
    return list(shape[:start]) + out + list(shape[start + count:])


@converter("reshape")
def reshape(ctx, op):
    """reshape(input, shape, axis_start = 0, axis_count = -1): row-major, no data movement."""
    x = _in(ctx, op)
    target = reshape_target(ctx.shape(x), [int(s) for s in op.attribs["shape"]],
                            int(op.attribs.get("axis_start", 0)),
                            int(op.attribs.get("axis_count", -1)))
    return R.reshape(x, target)


@converter("squeeze")
def squeeze(ctx, op):
    """squeeze(input, axes): drop the listed (unit) axes of the input."""
    x = _in(ctx, op)
    shape = ctx.shape(x)
    axes = set(norm_axes(op.attribs["axes"], len(shape)))
    if not axes:
        return x
    return R.reshape(x, [s for a, s in enumerate(shape) if a not in axes])


@converter("unsqueeze")
def unsqueeze(ctx, op):
    """unsqueeze(input, axes): insert unit axes; axes index the OUTPUT (ascending)."""
    x = _in(ctx, op)
    out = list(ctx.shape(x))
    axes = op.attribs["axes"]
    for a in sorted(norm_axes(axes, len(out) + len(axes))):
        out.insert(a, 1)
    return R.reshape(x, out)


@converter("transpose")
def transpose(ctx, op):
    """transpose(input, axes): permute the first len(axes) dims; the others stay."""
    x = _in(ctx, op)
    rank = ctx.rank(x)
    axes = [int(a) for a in op.attribs["axes"]]
    perm = axes + list(range(len(axes), rank))
    if perm == list(range(rank)):
        return x
    return R.permute_dims(x, perm)


def _split_sizes(ctx, op, extent, ratios):
    total = sum(ratios)
    if total <= 0 or extent % total != 0:
        raise ctx.error(op, f"sum of ratios {ratios} must divide the extent {extent}")
    unit = extent // total
    return [r * unit for r in ratios]


def split_parts(ctx, x, axis, sizes):
    """Split ``x`` along ``axis`` into chunks of ``sizes``; list of Relax values."""
    if len(sizes) == 1:
        return [x]
    indices = list(np.cumsum(sizes)[:-1].astype(int))
    parts = ctx.emit(R.split(x, [int(i) for i in indices], axis=axis))
    return [ctx.emit(relax.TupleGetItem(parts, i)) for i in range(len(sizes))]


@converter("split")
def split(ctx, op):
    """split(value, axis, ratios): chunk k gets ratios[k] * extent / sum(ratios)."""
    x = _in(ctx, op, "value")
    shape = ctx.shape(x)
    axis = norm_axes([op.attribs["axis"]], len(shape))[0]
    sizes = _split_sizes(ctx, op, shape[axis], [int(r) for r in op.attribs["ratios"]])
    return split_parts(ctx, x, axis, sizes)


@converter("concat")
def concat(ctx, op):
    """concat(values, axis): join along an existing axis."""
    values = ctx.inputs_list(op, "values", op.dtype)
    axis = norm_axes([op.attribs["axis"]], ctx.rank(values[0]))[0]
    if len(values) == 1:
        return values[0]
    return R.concat(values, axis=axis)


@converter("stack")
def stack(ctx, op):
    """stack(values, axis): join identical shapes along a new axis (0 <= axis <= rank)."""
    values = ctx.inputs_list(op, "values", op.dtype)
    shape = list(ctx.shape(values[0]))
    axis = int(op.attribs["axis"])
    if axis < 0:
        axis += len(shape) + 1
    expanded = [ctx.emit(R.reshape(v, shape[:axis] + [1] + shape[axis:])) for v in values]
    return expanded[0] if len(expanded) == 1 else R.concat(expanded, axis=axis)


@converter("unstack")
def unstack(ctx, op):
    """unstack(value, axis): the extent-many slices along axis, with that axis removed."""
    x = _in(ctx, op, "value")
    shape = list(ctx.shape(x))
    axis = norm_axes([op.attribs["axis"]], len(shape))[0]
    parts = split_parts(ctx, x, axis, [1] * shape[axis])
    rest = shape[:axis] + shape[axis + 1:]
    return [R.reshape(p, rest) for p in parts]


def normalize_slice(extent, begin, end, stride):
    """NNEF slice bounds of one axis -> (begin, end, stride) with 0 <= begin, no wrapping.

    Legacy ``end = 0`` with stride 1 means "to the end". Negative bounds get
    ``+extent``, then are clamped to ``[-1, extent]``; a negative stride walks
    ``begin, begin + stride, ...`` while ``> end`` (``end = -1``: through index 0).
    """
    if end == 0 and stride == 1:
        end = extent
    begin = max(-1, min(extent, begin + extent if begin < 0 else begin))
    end = max(-1, min(extent, end + extent if end < 0 else end))
    return begin, end, stride


@converter("slice")
def slice_(ctx, op):
    """slice(input, axes, begin, end, stride = []): strided crop; negative strides via flip."""
    x = _in(ctx, op)
    shape = ctx.shape(x)
    axes = norm_axes(op.attribs["axes"], len(shape))
    strides = [int(s) for s in op.attribs.get("stride") or []] or [1] * len(axes)
    pos_axes, pos_b, pos_e, pos_s = [], [], [], []
    for axis, b, e, s in zip(axes, op.attribs["begin"], op.attribs["end"], strides):
        n = shape[axis]
        if s == 0:
            raise ctx.error(op, f"stride of axis {axis} must be non-zero")
        b, e, s = normalize_slice(n, int(b), int(e), s)
        if s < 0:
            # element i of the flipped axis is element n - 1 - i of the original
            x = ctx.emit(R.flip(x, axis))
            b, e, s = n - 1 - b, n - 1 - e, -s
        b = max(b, 0)
        e = max(e, b)
        if (b, e, s) != (0, n, 1):
            pos_axes.append(axis)
            pos_b.append(b)
            pos_e.append(e)
            pos_s.append(s)
    if not pos_axes:
        return x
    return R.strided_slice(x, pos_axes, pos_b, pos_e, pos_s)


_PAD_BORDERS = ("constant", "replicate", "reflect", "reflect-even")


@converter("pad")
def pad(ctx, op):
    """pad(input, padding, border = 'constant', value = 0.0): (p, q) per axis; negatives crop.

    'constant' uses Relax pad; the other borders gather the source indices per
    axis (exact for 'reflect-even', which Relax has no pad mode for).
    """
    x = ctx.input(op, "input", "scalar")
    shape = ctx.shape(x)
    padding = [(int(p), int(q)) for p, q in op.attribs["padding"]]
    padding += [(0, 0)] * (len(shape) - len(padding))
    border = op.attribs.get("border", "constant")
    if border not in _PAD_BORDERS:
        raise ctx.error(op, f"border '{border}' is not valid for pad "
                            f"(expected one of {', '.join(_PAD_BORDERS)})")
    if border == "constant":
        # crop negative padding first, then pad the positive parts
        if any(p < 0 or q < 0 for p, q in padding):
            axes = list(range(len(shape)))
            x = ctx.emit(R.strided_slice(
                x, axes, [max(-p, 0) for p, _ in padding],
                [n - max(-q, 0) for n, (_, q) in zip(shape, padding)]))
        # Relax pad_width interleaves (before, after) per axis
        widths = [w for p, q in padding for w in (max(p, 0), max(q, 0))]
        if not any(widths):
            return x
        return R.nn.pad(x, widths, pad_mode="constant", pad_value=float(op.attribs.get("value", 0.0)))
    for axis, (p, q) in enumerate(padding):
        if p == 0 and q == 0:
            continue
        idx = border_indices(shape[axis], p, q, border).astype("int32")
        x = ctx.emit(R.take(x, relax.const(idx, "int32"), axis=axis))
    return x


@converter("tile")
def tile(ctx, op):
    """tile(input, repeats): whole-tensor repetition, like numpy.tile."""
    x = _in(ctx, op)
    repeats = [int(r) for r in op.attribs["repeats"]]
    if all(r == 1 for r in repeats):
        return x
    return R.tile(x, repeats)


@converter("gather")
def gather(ctx, op):
    """gather(input, indices, axis = 0): output shape in[:axis] + indices.shape + in[axis+1:]."""
    x = _in(ctx, op)
    idx = ctx.input(op, "indices", "integer")
    axis = norm_axes([op.attribs.get("axis", 0)], ctx.rank(x))[0]
    return R.take(x, idx, axis=axis)


@converter("cast")
def cast(ctx, op):
    """cast<T>(input): element conversion. Numbers -> logical is ``x != 0``; logical ->
    numbers gives 0/1; scalar -> integer truncates toward zero (like the Khronos tools)."""
    target = ctx.result_dtype(op)
    x = ctx.input(op, "input")
    src = ctx.value_dtype(x)
    if src == target:
        return x
    if target == "bool":
        return R.not_equal(x, relax.const(0, src))
    return R.astype(x, target)
