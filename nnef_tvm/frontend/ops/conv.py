"""Filter-based sliding-window ops (NNEF §4.3.1, §4.9.2): conv, deconv, separable_conv/deconv.

Mapping onto Relax (so that TVM can fuse bias and activations into the convolution):

* ``conv`` -> ``relax.op.nn.conv{1,2,3}d`` (filter OIHW = NNEF layout); ``groups = 0`` is
  depthwise (``G = C_in``). Constant borders use the op's own (asymmetric) padding; other
  borders (replicate, reflect, reflect-even) pad the input explicitly first; negative
  padding crops. The bias is a separate ``add`` of the ``[1, C]`` bias broadcast
  left-aligned (``[1, C, 1, 1]``), which TVM fuses.
* ``deconv`` -> ``relax.op.nn.conv{1,2,3}d_transpose`` (filter ``[C_in, C_out/G, k...]`` =
  Relax IOHW). NNEF padding lives in the output space exactly like transposed-conv padding;
  ``output_shape`` becomes the end padding / ``output_padding`` needed to hit the requested
  extent (zeros are appended where Relax would refuse ``output_padding >= stride``).
  ``groups = 0``: ``G = output_shape[1]`` if given, else ``C_in`` (Khronos convention).
  Non-constant borders extend the *input* with border values by as many cells as the
  output window can reach, shifting the padding accordingly.
* ``separable_conv`` / ``separable_deconv`` are converted directly from their compound
  bodies (depthwise then pointwise; pointwise then depthwise for the reverse op).
"""
from __future__ import annotations

from tvm import relax

from ..padding import (crop, dilated_extent, forward_window, pad_with_border, relax_padding,
                       reverse_window)
from ..registry import converter

_CONV = {1: relax.op.nn.conv1d, 2: relax.op.nn.conv2d, 3: relax.op.nn.conv3d}
_DECONV = {1: relax.op.nn.conv1d_transpose, 2: relax.op.nn.conv2d_transpose,
           3: relax.op.nn.conv3d_transpose}
_FILTER_BORDERS = ("constant", "replicate", "reflect", "reflect-even")


def _check_common(ctx, op, xs, ws, border):
    nsp = len(xs) - 2
    if nsp not in _CONV:
        raise ctx.error(op, f"only 1-D, 2-D and 3-D spatial inputs are supported (input rank {len(xs)})")
    if len(ws) != len(xs):
        raise ctx.error(op, f"filter rank {len(ws)} must equal input rank {len(xs)}")
    if border not in _FILTER_BORDERS:
        raise ctx.error(op, f"border '{border}' is not supported; expected one of "
                            + ", ".join(repr(b) for b in _FILTER_BORDERS))
    return nsp


def add_bias(ctx, op, out, param="bias"):
    """``out + bias`` with NNEF left-aligned broadcasting; literal 0.0 adds nothing."""
    b = op.inputs.get(param, 0.0)
    if isinstance(b, (int, float)) and not isinstance(b, bool) and float(b) == 0.0:
        return out
    bias = ctx.input(op, param, "scalar")
    out, bias = ctx.broadcast_operands(out, bias)
    return ctx.emit(relax.op.add(out, bias))


def conv_core(ctx, op, x, w, *, border, padding, stride, dilation, groups):
    """Correlation without bias; returns the Relax value."""
    xs, ws = ctx.shape(x), ctx.shape(w)
    nsp = _check_common(ctx, op, xs, ws, border)
    if groups == 0:
        groups = xs[1]
    if groups < 0 or xs[1] % groups or ws[0] % groups or ws[1] * groups != xs[1]:
        raise ctx.error(op, f"groups = {groups} does not fit input channels {xs[1]} and filter {list(ws)}")
    win = forward_window(xs[2:], ws[2:], padding, stride, dilation)
    pads = [(0, 0), (0, 0)] + win.padding
    if border == "constant":
        x, pads = crop(ctx, x, pads)
    else:
        x = pad_with_border(ctx, x, pads, border)
        pads = [(0, 0)] * len(xs)
    return ctx.emit(_CONV[nsp](x, w, strides=win.stride, padding=relax_padding(pads[2:]),
                               dilation=win.dilation, groups=groups))


def deconv_core(ctx, op, x, w, *, border, padding, stride, dilation, output_shape, groups):
    """Transposed correlation without bias; returns the Relax value."""
    xs, ws = ctx.shape(x), ctx.shape(w)
    nsp = _check_common(ctx, op, xs, ws, border)
    if output_shape and len(output_shape) != len(xs):
        raise ctx.error(op, f"output_shape must have {len(xs)} entries (full rank), got {list(output_shape)}")
    if groups == 0:
        groups = int(output_shape[1]) if output_shape else xs[1]
    if groups <= 0 or xs[1] % groups or ws[0] != xs[1]:
        raise ctx.error(op, f"groups = {groups} does not fit input channels {xs[1]} and filter {list(ws)}")
    win = reverse_window(xs[2:], ws[2:], padding, stride, dilation,
                         list(output_shape[2:]) if output_shape else None)
    # extend the input with border values as far as the output windows reach
    in_pads, begin = [], []
    for n, f, (p, _), s, d, X in zip(xs[2:], ws[2:], win.padding, win.stride, win.dilation, win.big):
        if border == "constant":
            lo = hi = 0
        else:
            lo = max(-(-((f - 1) * d - p) // s), 0)
            hi = max((X - 1 + p) // s - (n - 1), 0)
        in_pads.append((lo, hi))
        begin.append(p + lo * s)
    if any(lo or hi for lo, hi in in_pads):
        x = pad_with_border(ctx, x, [(0, 0), (0, 0)] + in_pads, border)
    relax_pads, out_pad, fix = [], [], []
    for (lo, hi), n, f, pb, s, d, X in zip(in_pads, xs[2:], ws[2:], begin, win.stride, win.dilation, win.big):
        front = max(-pb, 0)                 # output cells before the first reachable one
        pb = max(pb, 0)
        natural = (n + lo + hi - 1) * s + dilated_extent(f, d) - pb
        pe = natural - (X - front)
        if pe >= 0:
            relax_pads.append((pb, pe))
            out_pad.append(0)
            fix.append((front, 0))
        elif -pe < s:
            relax_pads.append((pb, 0))
            out_pad.append(-pe)
            fix.append((front, 0))
        else:
            relax_pads.append((pb, 0))
            out_pad.append(0)
            fix.append((front, -pe))
    out = ctx.emit(_DECONV[nsp](x, w, strides=win.stride, padding=relax_padding(relax_pads),
                                output_padding=out_pad, dilation=win.dilation, groups=groups))
    if any(a or b for a, b in fix):
        out = pad_with_border(ctx, out, [(0, 0), (0, 0)] + fix, "constant")
    return out


def _attrs(op, *names):
    return {n: op.attribs[n] for n in names}


@converter("conv")
def conv(ctx, op):
    """NNEF conv: correlation (+ bias) with border/padding/stride/dilation/groups."""
    out = conv_core(ctx, op, ctx.input(op, "input"), ctx.input(op, "filter"),
                    **_attrs(op, "border", "padding", "stride", "dilation", "groups"))
    return add_bias(ctx, op, out)


@converter("deconv")
def deconv(ctx, op):
    """NNEF deconv: transposed correlation (+ bias); output_shape fixes the extent."""
    out = deconv_core(ctx, op, ctx.input(op, "input"), ctx.input(op, "filter"),
                      **_attrs(op, "border", "padding", "stride", "dilation", "output_shape", "groups"))
    return add_bias(ctx, op, out)


@converter("separable_conv")
def separable_conv(ctx, op):
    """Depthwise ``conv(plane_filter, groups = 0)`` then pointwise ``conv(point_filter, bias, groups)``."""
    x = ctx.input(op, "input")
    mid = conv_core(ctx, op, x, ctx.input(op, "plane_filter"), groups=0,
                    **_attrs(op, "border", "padding", "stride", "dilation"))
    out = conv_core(ctx, op, mid, ctx.input(op, "point_filter"), border="constant", padding=[],
                    stride=[], dilation=[], groups=op.attribs["groups"])
    return add_bias(ctx, op, out)


@converter("separable_deconv")
def separable_deconv(ctx, op):
    """Pointwise ``deconv(point_filter, groups)`` then depthwise ``deconv(plane_filter, bias, groups = 0)``."""
    x = ctx.input(op, "input")
    mid = deconv_core(ctx, op, x, ctx.input(op, "point_filter"), border="constant", padding=[],
                      stride=[], dilation=[], output_shape=[], groups=op.attribs["groups"])
    out = deconv_core(ctx, op, mid, ctx.input(op, "plane_filter"), groups=0,
                      **_attrs(op, "border", "padding", "stride", "dilation", "output_shape"))
    return add_bias(ctx, op, out)
