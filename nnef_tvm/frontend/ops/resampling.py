"""Resampling ops (NNEF §4.3.4): nearest/area downsample, nearest/multilinear upsample.

Integer factors on the spatial dims only (``factor`` has rank-2 entries).

* ``nearest_downsample`` -> ``strided_slice`` (every f-th element from 0);
* ``area_downsample`` -> average pool with window = stride = factor;
* ``nearest_upsample`` -> reshape / broadcast_to / reshape (each value repeated f times),
  purely injective so it fuses with its neighbours;
* ``multilinear_upsample`` (per dim ``out[i] = (1-u)*in[j] + u*in[j+1]``, ``t = j + u``):
  'aligned' -> ``resize`` 'align_corners'; 'symmetric' + 'replicate' -> 'half_pixel';
  'asymmetric' + 'replicate' -> 'asymmetric'. With ``border = 'constant'`` the
  out-of-range tap reads 0, which no resize mode does: that case is the depthwise
  transposed convolution with the fixed triangle weights of the spec's helper fragments
  (``w[k] = max(0, 1 - |k - c| / f)``), generalised here to any integer factor.
  1-D inputs get a unit dim to use ``resize2d``; 3-D uses ``resize3d``.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from ..registry import converter
from .window import window_reduce

_RESIZE_MODE = {"aligned": "align_corners", "symmetric": "half_pixel", "asymmetric": "asymmetric"}
_DECONV = {1: relax.op.nn.conv1d_transpose, 2: relax.op.nn.conv2d_transpose,
           3: relax.op.nn.conv3d_transpose}


def _factor(ctx, op, shape):
    factor = [int(f) for f in op.attribs["factor"]]
    if len(factor) != len(shape) - 2:
        raise ctx.error(op, f"factor must have one entry per spatial dim ({len(shape) - 2}), got {factor}")
    if any(f < 1 for f in factor):
        raise ctx.error(op, f"factor entries must be positive, got {factor}")
    return factor


@converter("nearest_downsample")
def nearest_downsample(ctx, op):
    x = ctx.input(op, "input")
    shape = ctx.shape(x)
    factor = _factor(ctx, op, shape)
    axes = [k + 2 for k, f in enumerate(factor) if f != 1]
    if not axes:
        return x
    return ctx.emit(relax.op.strided_slice(x, axes, [0] * len(axes), [shape[a] for a in axes],
                                           [factor[a - 2] for a in axes]))


@converter("area_downsample")
def area_downsample(ctx, op):
    x = ctx.input(op, "input")
    factor = _factor(ctx, op, ctx.shape(x))
    window = [1, 1] + factor
    return window_reduce(ctx, op, x, "avg", window, "constant", [(0, 0)] * len(window), window, [])


@converter("nearest_upsample")
def nearest_upsample(ctx, op):
    x = ctx.input(op, "input")
    shape = list(ctx.shape(x))
    factor = _factor(ctx, op, shape)
    if all(f == 1 for f in factor):
        return x
    inter, full, out = shape[:2], shape[:2], shape[:2]
    for n, f in zip(shape[2:], factor):
        inter += [n, 1]
        full += [n, f]
        out.append(n * f)
    y = ctx.emit(relax.op.reshape(x, inter))
    y = ctx.emit(relax.op.broadcast_to(y, full))
    return ctx.emit(relax.op.reshape(y, out))


def triangle_weights(f: int, method: str):
    """1-D fixed deconv weights and padding ``(w, p, q)`` for linear upsampling by ``f``.

    Deconv output ``i`` receives ``in[j] * w[i + p - j*f]``; linear interpolation gives
    ``in[j]`` the weight ``max(0, 1 - |t(i) - j|)`` with ``t(i) = i/f`` (asymmetric) or
    ``(i + 0.5)/f - 0.5`` (symmetric), i.e. ``w[k] = max(0, 1 - |k - c|/f)`` with
    ``c = p`` or ``c = p + (f-1)/2``. ``p`` is chosen so the first non-zero weight is at 0,
    ``q`` so that the output extent is ``x*f``.
    """
    if method == "asymmetric":
        p = f - 1
        c = float(p)
    else:
        p = -(-(f - 1) // 2)
        c = p + (f - 1) / 2.0
    k = np.arange(0, 3 * f + 1, dtype=np.float64)
    w = np.maximum(0.0, 1.0 - np.abs(k - c) / f)
    size = int(np.max(np.nonzero(w)[0])) + 1
    w = w[:size]
    q = size - f - p
    return w, p, q


@converter("multilinear_upsample")
def multilinear_upsample(ctx, op):
    x = ctx.input(op, "input")
    shape = list(ctx.shape(x))
    factor = _factor(ctx, op, shape)
    method = op.attribs.get("method", "symmetric")
    border = op.attribs.get("border", "replicate")
    nsp = len(factor)
    if method not in _RESIZE_MODE:
        raise ctx.error(op, f"method '{method}' is not one of 'symmetric', 'asymmetric', 'aligned'")
    if border not in ("replicate", "constant"):
        raise ctx.error(op, f"border '{border}' is not supported; expected 'replicate' or 'constant'")
    if nsp not in (1, 2, 3):
        raise ctx.error(op, f"only 1-D, 2-D and 3-D spatial inputs are supported (rank {len(shape)})")
    if all(f == 1 for f in factor):
        return x
    if method == "aligned" or border == "replicate":
        return _resize(ctx, x, shape, factor, _RESIZE_MODE[method])
    return _fixed_deconv(ctx, x, shape, factor, method)


def _resize(ctx, x, shape, factor, mode):
    """Relax resize; 1-D gets a unit dim. Dims of extent 1 with factor 1 are widened to 2
    first (and cut back after): 'align_corners' divides by ``out - 1`` there."""
    final = shape[:2] + [n * f for n, f in zip(shape[2:], factor)]
    if len(factor) == 1:
        x = ctx.emit(relax.op.reshape(x, shape + [1]))
        shape, factor = shape + [1], factor + [1]
    wide = [k + 2 for k, (n, f) in enumerate(zip(shape[2:], factor)) if n == 1 and f == 1]
    if wide:
        x = ctx.emit(relax.op.broadcast_to(x, [2 if k in wide else n for k, n in enumerate(shape)]))
    out = [2 if k + 2 in wide else n * f for k, (n, f) in enumerate(zip(shape[2:], factor))]
    resize = relax.op.image.resize2d if len(out) == 2 else relax.op.image.resize3d
    y = ctx.emit(resize(x, tuple(out), layout="NCHW" if len(out) == 2 else "NCDHW", method="linear",
                        coordinate_transformation_mode=mode))
    if wide:
        y = ctx.emit(relax.op.strided_slice(y, wide, [0] * len(wide), [1] * len(wide)))
    if len(final) != len(shape):
        y = ctx.emit(relax.op.reshape(y, final))
    return y


def _fixed_deconv(ctx, x, shape, factor, method):
    """Depthwise transposed conv with the outer product of the per-dim triangle weights."""
    weights, pads = [], []
    for f in factor:
        w, p, q = triangle_weights(f, method)
        weights.append(w)
        pads.append((p, q))
    kernel = weights[0]
    for w in weights[1:]:
        kernel = np.multiply.outer(kernel, w)
    c = shape[1]
    dtype = ctx.value_dtype(x)
    filt = np.broadcast_to(kernel, (c, 1) + kernel.shape).astype(dtype)
    padding = [p for p, _ in pads] + [q for _, q in pads]
    return ctx.emit(_DECONV[len(factor)](x, relax.const(np.ascontiguousarray(filt)), strides=factor,
                                         padding=padding, groups=c))
