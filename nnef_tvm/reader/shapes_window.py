"""Shapes of sliding-window, pooling, resampling and RoI operations (spec §4.3, §4.6, §4.9).

Two families differ in the rank of their window parameters (SPEC-NOTES §7.3):

* filter-based (``conv``, ``deconv``, ``separable_conv``, ``separable_deconv``):
  the window is the filter's spatial shape; ``padding``/``stride``/``dilation``
  have one entry per *spatial* axis (rank - 2) or are ``[]``;
* window-based (``box``, ``debox``, ``argmax_pool``, ``sample``, ``desample``
  and the pools): ``size`` and the others have one entry per axis, batch and
  channel included.

Per axis, with ``fd = (f - 1) * d + 1``:
``down(X) = floor((p + X + q - fd) / s) + 1`` (requires ``p + X + q >= fd``),
``up(x) = (x - 1) * s + fd - (p + q)``; with automatic padding (``padding = []``)
``down(X) = ceil(X / s)`` and ``up(x) = x * s`` (O11: also when ``fd < s``).
Reverse ops accept a full-rank ``output_shape`` that must down-scale exactly to
the input shape; it then is the output shape.

``groups = 0`` means depthwise: ``G = C_in`` for ``conv``; for ``deconv``
``G = output_shape[1]`` when given, else ``C_in``. conv filters are
``[C_out, C_in / G, k...]``, deconv filters ``[C_in, C_out / G, k...]``.
Biases must broadcast (left-aligned) to the output, i.e. ``[1, C_out]`` or a
singleton.

``sample``'s ``index`` has the *output* shape (spec; the Khronos shape function
wrongly demands the input shape, SPEC-NOTES O3); ``desample``'s has the input
shape. Resampling factors cover the spatial axes only; down-sampling factors
must divide the extents. RoI ops give ``[N, C] + output_size`` for ``rois
[N, 2 * spatial rank]`` and ``batch_index`` ``[N]`` or ``[N, 1]``.
"""
from __future__ import annotations

from .shapes_common import (ShapeMismatch, broadcast_to, fmt, int_list, int_value, need_rank,
                            pair_list, string_value)

CONV_BORDERS = ("constant", "replicate", "reflect", "reflect-even")
POOL_BORDERS = CONV_BORDERS + ("ignore",)
RESAMPLE_METHODS = ("symmetric", "asymmetric", "aligned")

_FULL_RANK = "one per input axis, batch and channel included"
_SPATIAL = "one per spatial axis"


# ---------------------------------------------------------------------------
# per-axis extent arithmetic

def _down(xs, sizes, padding, stride, dilation, first_axis):
    out = []
    for i, (extent, f) in enumerate(zip(xs, sizes)):
        s, d = stride[i], dilation[i]
        if not padding:
            out.append(-(-extent // s))
            continue
        p, q = padding[i]
        fd = (f - 1) * d + 1
        total = p + extent + q
        if total < fd:
            raise ShapeMismatch(
                f"window of extent {fd} (size {f}, dilation {d}) does not fit axis {first_axis + i}: "
                f"padded extent is {p} + {extent} + {q} = {total}")
        out.append((total - fd) // s + 1)
    return tuple(out)


def _up(xs, sizes, padding, stride, dilation, first_axis):
    out = []
    for i, (extent, f) in enumerate(zip(xs, sizes)):
        s, d = stride[i], dilation[i]
        if not padding:
            out.append(extent * s)
            continue
        p, q = padding[i]
        fd = (f - 1) * d + 1
        up = (extent - 1) * s + fd - p - q
        if up < 1:
            raise ShapeMismatch(
                f"up-scaled extent of axis {first_axis + i} is ({extent} - 1) * {s} + {fd} - ({p} + {q}) "
                f"= {up}, not positive")
        out.append(up)
    return tuple(out)


def _params(op, n, note):
    """padding / stride / dilation of ``n`` entries each (``[]`` allowed)."""
    padding = pair_list(op, "padding", length=n, length_note=note)
    stride = int_list(op, "stride", [], length=n, allow_empty=True, minimum=1, length_note=note)
    dilation = int_list(op, "dilation", [], length=n, allow_empty=True, minimum=1, length_note=note)
    return padding, stride or [1] * n, dilation or [1] * n


def _output_shape(op, rank):
    return int_list(op, "output_shape", [], length=rank, allow_empty=True, minimum=1,
                    length_note=_FULL_RANK)


def _check_reverse(output_shape, x, sizes, padding, stride, dilation, first_axis):
    """``output_shape`` must down-scale (per window axis) exactly to the input extents."""
    spatial_out = output_shape[first_axis:]
    try:
        back = _down(spatial_out, sizes, padding, stride, dilation, first_axis)
    except ShapeMismatch as e:
        raise ShapeMismatch(f"'output_shape' {fmt(output_shape)} is inconsistent: {e}") from None
    if back != tuple(x[first_axis:]):
        raise ShapeMismatch(
            f"'output_shape' {fmt(output_shape)} is inconsistent with input {fmt(x)}: "
            f"down-scaling it gives {fmt(tuple(x[:first_axis]) + back)}")


# ---------------------------------------------------------------------------
# filter-based family

def _groups(op, default=1):
    groups = int_value(op, "groups", default)
    if groups < 0:
        raise ShapeMismatch(f"'groups' must be non-negative, found {groups}")
    return groups


def _filter_rank(x, w, filter_name):
    need_rank(x, 2, "input")
    if len(w) != len(x):
        raise ShapeMismatch(f"{filter_name} {fmt(w)} has rank {len(w)} but input {fmt(x)} has rank {len(x)}")


def _conv(x, w, groups, padding, stride, dilation, filter_name="filter"):
    _filter_rank(x, w, filter_name)
    cin = x[1]
    g = cin if groups == 0 else groups
    if groups == 0 and w[1] != 1:
        raise ShapeMismatch(f"depthwise (groups = 0) needs {filter_name} [C_out, 1, ...] but "
                            f"{filter_name} {fmt(w)} has {w[1]} input channels per group (input {fmt(x)})")
    if w[1] * g != cin:
        raise ShapeMismatch(f"input has {cin} channels but {filter_name} expects {w[1]} x groups {g}"
                            f" (input {fmt(x)}, {filter_name} {fmt(w)})")
    if w[0] % g:
        raise ShapeMismatch(f"groups {g} does not divide the {w[0]} output channels of "
                            f"{filter_name} {fmt(w)}")
    return (x[0], w[0]) + _down(x[2:], w[2:], padding, stride, dilation, 2)


def _deconv(x, w, groups, padding, stride, dilation, output_shape, filter_name="filter"):
    _filter_rank(x, w, filter_name)
    cin = x[1]
    if w[0] != cin:
        raise ShapeMismatch(f"input has {cin} channels but {filter_name} {fmt(w)} expects {w[0]} "
                            f"(a deconv filter is [C_in, C_out / groups, ...])")
    g = (output_shape[1] if output_shape else cin) if groups == 0 else groups
    if w[0] % g:
        raise ShapeMismatch(f"groups {g} does not divide the {w[0]} input channels of "
                            f"{filter_name} {fmt(w)}")
    cout = w[1] * g
    if not output_shape:
        return (x[0], cout) + _up(x[2:], w[2:], padding, stride, dilation, 2)
    if output_shape[0] != x[0]:
        raise ShapeMismatch(f"'output_shape' {fmt(output_shape)} has batch {output_shape[0]} "
                            f"but input {fmt(x)} has batch {x[0]}")
    if output_shape[1] != cout:
        raise ShapeMismatch(f"'output_shape' {fmt(output_shape)} has {output_shape[1]} channels but "
                            f"{filter_name} {fmt(w)} gives {w[1]} x groups {g} = {cout}")
    _check_reverse(output_shape, x, w[2:], padding, stride, dilation, 2)
    return tuple(output_shape)


def _conv_params(op, x):
    need_rank(x, 2, "input")
    string_value(op, "border", CONV_BORDERS, "constant")
    return _params(op, len(x) - 2, _SPATIAL)


def _bias(op, shape_of, out):
    broadcast_to(shape_of(op.inputs.get("bias", 0.0)), out, "bias", "output")


def conv_shape(op, shape_of):
    x, w = shape_of(op.inputs["input"]), shape_of(op.inputs["filter"])
    padding, stride, dilation = _conv_params(op, x)
    out = _conv(x, w, _groups(op), padding, stride, dilation)
    _bias(op, shape_of, out)
    return [out]


def deconv_shape(op, shape_of):
    x, w = shape_of(op.inputs["input"]), shape_of(op.inputs["filter"])
    padding, stride, dilation = _conv_params(op, x)
    out = _deconv(x, w, _groups(op), padding, stride, dilation, _output_shape(op, len(x)))
    _bias(op, shape_of, out)
    return [out]


def _pointwise(point, filter_name="point_filter"):
    if any(e != 1 for e in point[2:]):
        raise ShapeMismatch(f"{filter_name} {fmt(point)} must have extent 1 in every spatial axis")


def separable_conv_shape(op, shape_of):
    """depthwise ``conv(plane_filter, groups = 0)`` then 1x1 ``conv(point_filter, groups)``."""
    x = shape_of(op.inputs["input"])
    plane, point = shape_of(op.inputs["plane_filter"]), shape_of(op.inputs["point_filter"])
    padding, stride, dilation = _conv_params(op, x)
    filtered = _conv(x, plane, 0, padding, stride, dilation, "plane_filter")
    _filter_rank(filtered, point, "point_filter")
    _pointwise(point)
    n = len(x) - 2
    out = _conv(filtered, point, _groups(op), [], [1] * n, [1] * n, "point_filter")
    _bias(op, shape_of, out)
    return [out]


def separable_deconv_shape(op, shape_of):
    """1x1 ``deconv(point_filter, groups)`` then depthwise ``deconv(plane_filter, groups = 0)``."""
    x = shape_of(op.inputs["input"])
    plane, point = shape_of(op.inputs["plane_filter"]), shape_of(op.inputs["point_filter"])
    padding, stride, dilation = _conv_params(op, x)
    output_shape = _output_shape(op, len(x))
    _filter_rank(x, point, "point_filter")
    _pointwise(point)
    n = len(x) - 2
    filtered = _deconv(x, point, _groups(op), [], [1] * n, [1] * n, [], "point_filter")
    out = _deconv(filtered, plane, 0, padding, stride, dilation, output_shape, "plane_filter")
    _bias(op, shape_of, out)
    return [out]


# ---------------------------------------------------------------------------
# window-based family

def _window(op, x, borders=POOL_BORDERS, reverse=False):
    string_value(op, "border", borders, "constant")
    n = len(x)
    size = int_list(op, "size", length=n, minimum=1, length_note=_FULL_RANK)
    padding, stride, dilation = _params(op, n, _FULL_RANK)
    if not reverse:
        return _down(x, size, padding, stride, dilation, 0)
    output_shape = _output_shape(op, n)
    if output_shape:
        _check_reverse(output_shape, x, size, padding, stride, dilation, 0)
        return tuple(output_shape)
    return _up(x, size, padding, stride, dilation, 0)


def pool_shape(op, shape_of):
    """box, argmax_pool, max_pool, avg_pool, rms_pool: ``down`` on every axis."""
    return [_window(op, shape_of(op.inputs["input"]))]


def pool_with_index_shape(op, shape_of):
    out = _window(op, shape_of(op.inputs["input"]))
    return [out, out]


def debox_shape(op, shape_of):
    return [_window(op, shape_of(op.inputs["input"]), reverse=True)]


def sample_shape(op, shape_of):
    out = _window(op, shape_of(op.inputs["input"]))
    index = shape_of(op.inputs["index"])
    if index != out:
        raise ShapeMismatch(f"index shape {fmt(index)} must equal the output shape {fmt(out)}")
    return [out]


def desample_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    index = shape_of(op.inputs["index"])
    if index != x:
        raise ShapeMismatch(f"index shape {fmt(index)} must equal the input shape {fmt(x)}")
    return [_window(op, x, borders=("constant",), reverse=True)]


# ---------------------------------------------------------------------------
# resampling

def _factor(op, x):
    need_rank(x, 2, "input")
    return int_list(op, "factor", length=len(x) - 2, minimum=1, length_note=_SPATIAL)


def downsample_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    factor = _factor(op, x)
    for i, (extent, f) in enumerate(zip(x[2:], factor)):
        if extent % f:
            raise ShapeMismatch(f"factor {f} does not divide extent {extent} of axis {i + 2} "
                                f"of input {fmt(x)}")
    return [tuple(x[:2]) + tuple(e // f for e, f in zip(x[2:], factor))]


def upsample_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    factor = _factor(op, x)
    return [tuple(x[:2]) + tuple(e * f for e, f in zip(x[2:], factor))]


def multilinear_upsample_shape(op, shape_of):
    string_value(op, "method", RESAMPLE_METHODS, "symmetric")
    string_value(op, "border", CONV_BORDERS, "replicate")
    return upsample_shape(op, shape_of)


# ---------------------------------------------------------------------------
# region of interest

def _roi(op, shape_of, *, rate=False, method=None):
    x = shape_of(op.inputs["input"])
    rois = shape_of(op.inputs["rois"])
    batch_index = shape_of(op.inputs["batch_index"])
    need_rank(x, 3, "input")
    spatial = len(x) - 2
    need_rank(rois, 2, "rois", 2)
    if rois[1] != 2 * spatial:
        raise ShapeMismatch(f"rois {fmt(rois)} must be [N, {2 * spatial}] (start and end per spatial "
                            f"axis of input {fmt(x)})")
    if batch_index not in ((rois[0],), (rois[0], 1)):
        raise ShapeMismatch(f"batch_index {fmt(batch_index)} must be [{rois[0]}] or [{rois[0]},1] "
                            f"to match rois {fmt(rois)}")
    size = int_list(op, "output_size", length=spatial, minimum=1, length_note=_SPATIAL)
    if rate:
        int_list(op, "sampling_rate", length=spatial, minimum=1, length_note=_SPATIAL)
    if method:
        string_value(op, method, RESAMPLE_METHODS, "symmetric")
    return [(rois[0], x[1]) + tuple(size)]


def roi_pool_shape(op, shape_of):
    return _roi(op, shape_of)


def roi_resample_shape(op, shape_of):
    return _roi(op, shape_of, method="method")


def roi_align_shape(op, shape_of):
    return _roi(op, shape_of, rate=True, method="resize_method")


SHAPES = {
    "conv": conv_shape,
    "deconv": deconv_shape,
    "separable_conv": separable_conv_shape,
    "separable_deconv": separable_deconv_shape,
    "box": pool_shape,
    "argmax_pool": pool_shape,
    "max_pool": pool_shape,
    "avg_pool": pool_shape,
    "rms_pool": pool_shape,
    "max_pool_with_index": pool_with_index_shape,
    "debox": debox_shape,
    "sample": sample_shape,
    "desample": desample_shape,
    "nearest_downsample": downsample_shape,
    "area_downsample": downsample_shape,
    "nearest_upsample": upsample_shape,
    "multilinear_upsample": multilinear_upsample_shape,
    "avg_roi_pool": roi_pool_shape,
    "max_roi_pool": roi_pool_shape,
    "roi_resample": roi_resample_shape,
    "avg_roi_align": roi_align_shape,
    "max_roi_align": roi_align_shape,
}
