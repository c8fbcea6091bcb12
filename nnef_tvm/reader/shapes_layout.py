"""Shapes of the shape-manipulating operations (spec §4.5, SPEC-NOTES §7.9).

* ``reshape(shape, axis_start, axis_count)``: only axes ``[start, start+count)``
  are replaced; in ``shape`` a 0 copies the input extent at ``axis_start + k``
  and one -1 is inferred from the volume.
* ``squeeze`` axes index the input and must have extent 1; ``unsqueeze`` axes
  index the *output* (inserted in ascending order).
* ``transpose(axes)`` permutes the first ``len(axes)`` axes; later axes stay
  (SPEC-NOTES O17).
* ``slice``: negative bounds count from the end, bounds clamp to ``[-1, n]``,
  extent ``ceil((end - begin) / stride)`` (O2); the deprecated ``end = 0`` means
  "to the end" on axes sliced with stride 1.
* ``pad``: one ``(p, q)`` pair per axis, negative entries crop; border
  ``'ignore'`` is meaningless for ``pad`` and rejected (O9).
* ``split`` ratios must sum to a divisor of the extent; ``concat``/``stack``
  need matching shapes; ``unstack`` yields ``extent`` tensors; ``tile`` repeats
  every axis; ``gather`` replaces ``axis`` by the index shape.
"""
from __future__ import annotations

from .shapes_common import (ShapeMismatch, axes_list, axis_value, fmt, int_list, int_value,
                            need_rank, pair_list, string_value, volume)

PAD_BORDERS = ("constant", "replicate", "reflect", "reflect-even")


def reshape_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    rank = len(x)
    shape = int_list(op, "shape")
    start = int_value(op, "axis_start", 0)
    count = int_value(op, "axis_count", -1)
    if not 0 <= start <= rank:
        raise ShapeMismatch(f"'axis_start' = {start} is out of range [0,{rank}] for input {fmt(x)}")
    if count < -1:
        raise ShapeMismatch(f"'axis_count' must be -1 or non-negative, found {count}")
    if count == -1:
        count = rank - start
    end = start + count
    if end > rank:
        raise ShapeMismatch(f"'axis_start' + 'axis_count' = {start} + {count} exceeds the rank "
                            f"{rank} of input {fmt(x)}")
    out = []
    inferred = None
    for k, s in enumerate(shape):
        if s == -1:
            if inferred is not None:
                raise ShapeMismatch(f"'shape' {fmt(shape)} has more than one -1")
            inferred = k
            out.append(1)
        elif s == 0:
            axis = start + k
            if axis >= rank:
                raise ShapeMismatch(f"'shape' entry 0 at index {k} copies input axis {axis}, "
                                    f"but input {fmt(x)} has rank {rank}")
            out.append(x[axis])
        elif s < -1:
            raise ShapeMismatch(f"'shape' entries must be positive, 0 or -1, found {s} in {fmt(shape)}")
        else:
            out.append(s)
    segment = x[start:end]
    have, known = volume(segment), volume(out)
    what = f"input {fmt(x)}" if (start, end) == (0, rank) else \
        f"input {fmt(x)} axes [{start},{end}) {fmt(segment)}"
    if inferred is not None:
        if have % known:
            raise ShapeMismatch(f"cannot infer the -1 in 'shape' {fmt(shape)}: volume {known} of "
                                f"the known extents does not divide volume {have} of {what}")
        out[inferred] = have // known
    elif known != have:
        raise ShapeMismatch(f"'shape' {fmt(shape)} has volume {known} but {what} has volume {have}")
    return [tuple(x[:start]) + tuple(out) + tuple(x[end:])]


def transpose_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    axes = int_list(op, "axes")
    if sorted(axes) != list(range(len(axes))):
        raise ShapeMismatch(f"'axes' {fmt(axes)} must be a permutation of 0..{len(axes) - 1}")
    if len(axes) > len(x):
        raise ShapeMismatch(f"'axes' {fmt(axes)} has {len(axes)} entries but input {fmt(x)} "
                            f"has rank {len(x)}")
    return [tuple(x[a] for a in axes) + tuple(x[len(axes):])]


def squeeze_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    axes = axes_list(op, "axes", len(x))
    for a in axes:
        if x[a] != 1:
            raise ShapeMismatch(f"cannot squeeze axis {a} of input {fmt(x)}: its extent is {x[a]}, not 1")
    return [tuple(e for i, e in enumerate(x) if i not in axes)]


def unsqueeze_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    axes = int_list(op, "axes")
    rank = len(x) + len(axes)
    axes = axes_list(op, "axes", rank, what="output")
    out = list(x)
    for a in sorted(axes):
        out.insert(a, 1)
    return [tuple(out)]


def _tensor_array(op, name, shape_of):
    shapes = shape_of(op.inputs[name])
    if not isinstance(shapes, list) or not shapes:
        raise ShapeMismatch(f"'{name}' must be a non-empty array of tensors")
    return shapes


def concat_shape(op, shape_of):
    shapes = _tensor_array(op, "values", shape_of)
    first = shapes[0]
    axis = axis_value(op, "axis", len(first))
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != len(first):
            raise ShapeMismatch(f"values[{i}] {fmt(s)} has rank {len(s)} but values[0] {fmt(first)} "
                                f"has rank {len(first)}")
        for k, (e, f) in enumerate(zip(s, first)):
            if k != axis and e != f:
                raise ShapeMismatch(f"values[{i}] {fmt(s)} and values[0] {fmt(first)} differ at "
                                    f"axis {k} ({e} vs {f}); only axis {axis} may differ")
        total += s[axis]
    return [tuple(first[:axis]) + (total,) + tuple(first[axis + 1:])]


def split_shape(op, shape_of):
    x = shape_of(op.inputs["value"])
    axis = axis_value(op, "axis", len(x))
    ratios = int_list(op, "ratios", minimum=1)
    if not ratios:
        raise ShapeMismatch("'ratios' must not be empty")
    total = sum(ratios)
    if x[axis] % total:
        raise ShapeMismatch(f"sum of 'ratios' {fmt(ratios)} = {total} does not divide extent "
                            f"{x[axis]} of axis {axis} of {fmt(x)}")
    unit = x[axis] // total
    return [[tuple(x[:axis]) + (r * unit,) + tuple(x[axis + 1:]) for r in ratios]]


def stack_shape(op, shape_of):
    shapes = _tensor_array(op, "values", shape_of)
    first = shapes[0]
    axis = axis_value(op, "axis", len(first), upper=len(first) + 1)
    for i, s in enumerate(shapes):
        if s != first:
            raise ShapeMismatch(f"all values must have the same shape: values[0] is {fmt(first)} "
                                f"but values[{i}] is {fmt(s)}")
    return [tuple(first[:axis]) + (len(shapes),) + tuple(first[axis:])]


def unstack_shape(op, shape_of):
    x = shape_of(op.inputs["value"])
    axis = axis_value(op, "axis", len(x))
    part = tuple(x[:axis]) + tuple(x[axis + 1:])
    return [[part] * x[axis]]


def slice_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    axes = axes_list(op, "axes", len(x))
    n = len(axes)
    begin = int_list(op, "begin", length=n, length_note="one per entry of 'axes'")
    end = int_list(op, "end", length=n, length_note="one per entry of 'axes'")
    stride = int_list(op, "stride", [], length=n, allow_empty=True,
                      length_note="one per entry of 'axes'") or [1] * n
    out = list(x)
    for axis, b, e, s in zip(axes, begin, end, stride):
        extent = x[axis]
        if s == 0:
            raise ShapeMismatch(f"'stride' must be non-zero (axis {axis})")
        if e == 0 and s == 1:
            e = extent  # deprecated (1.0.4) legacy meaning: to the end
        b0, e0 = b, e
        b = max(-1, min(extent, b + extent if b < 0 else b))
        e = max(-1, min(extent, e + extent if e < 0 else e))
        if s > 0 and not 0 <= b <= e:
            raise ShapeMismatch(f"range {b0}:{e0}:{s} of axis {axis} (extent {extent}) is invalid: "
                                f"after normalization begin {b} and end {e} need 0 <= begin <= end")
        if s < 0 and not e <= b < extent:
            raise ShapeMismatch(f"range {b0}:{e0}:{s} of axis {axis} (extent {extent}) is invalid: "
                                f"after normalization begin {b} and end {e} need end <= begin < {extent} "
                                f"for a negative stride")
        size = -((b - e) // s)  # ceil((e - b) / s)
        if size < 1:
            raise ShapeMismatch(f"range {b0}:{e0}:{s} of axis {axis} (extent {extent}) is empty")
        out[axis] = size
    return [tuple(out)]


def pad_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    padding = pair_list(op, "padding", length=len(x), allow_empty=False,
                        length_note="one (before, after) pair per input axis")
    if op.attribs.get("border") == "ignore":
        raise ShapeMismatch("border 'ignore' is meaningless for pad (there is no window to "
                            "exclude cells from); use 'constant', 'replicate', 'reflect' or 'reflect-even'")
    string_value(op, "border", PAD_BORDERS, "constant")
    out = []
    for axis, (extent, (p, q)) in enumerate(zip(x, padding)):
        if p + extent + q < 1 or max(-p, 0) + max(-q, 0) >= extent:
            raise ShapeMismatch(f"padding ({p},{q}) crops away all of axis {axis} (extent {extent})")
        out.append(p + extent + q)
    return [tuple(out)]


def tile_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    repeats = int_list(op, "repeats", length=len(x), minimum=1, length_note="one per input axis")
    return [tuple(e * r for e, r in zip(x, repeats))]


def gather_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    need_rank(x, 1, "input")
    axis = axis_value(op, "axis", len(x), default=0)
    indices = shape_of(op.inputs["indices"])
    return [tuple(x[:axis]) + tuple(indices) + tuple(x[axis + 1:])]


SHAPES = {
    "reshape": reshape_shape,
    "transpose": transpose_shape,
    "squeeze": squeeze_shape,
    "unsqueeze": unsqueeze_shape,
    "concat": concat_shape,
    "split": split_shape,
    "stack": stack_shape,
    "unstack": unstack_shape,
    "slice": slice_shape,
    "pad": pad_shape,
    "tile": tile_shape,
    "gather": gather_shape,
}
