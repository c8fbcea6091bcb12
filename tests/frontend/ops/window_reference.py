"""Plain-numpy reference implementations of NNEF sliding-window ops, written from the spec formulas.

This is the *independent* oracle for the frontend converters of conv/deconv, box/debox,
pools, argmax_pool/sample/desample, resampling, local normalizations and RoI ops.
It is deliberately naive (explicit index arithmetic, loops over window cells) and shares no
code with ``nnef_tvm``. Every function works on any rank.

Conventions (SPEC-NOTES §7.3/7.4):
* filter ops (conv/deconv): ``padding``/``stride``/``dilation`` have one entry per *spatial* dim;
* window ops (box, pools, ...): one entry per *dimension* (full rank);
* ``padding = []`` means automatic padding: ``t = max((x-1)*s + fd - X, 0)``, ``p = t//2``,
  ``q = t - p`` where ``x = ceil(X/s)`` (down-scaling) or ``X = x*s`` / ``output_shape`` (reverse);
* border value for index ``i`` outside ``[0, z)``: constant -> 0, replicate -> edge,
  reflect -> mirror without the edge, reflect-even -> mirror with the edge, ignore -> excluded.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


# ----------------------------------------------------------------------------- helpers
def _defaults(values, n, default=1):
    return list(values) if values else [default] * n


def dilated(f, d):
    """Extent of a dilated window: ``fd = (f - 1) * d + 1``."""
    return (f - 1) * d + 1


def auto_padding(big, f, s, d):
    """Automatic padding ``(p, q)`` for one dim whose up-scaled extent is ``big``."""
    small = -(-big // s)
    t = max((small - 1) * s + dilated(f, d) - big, 0)
    return t // 2, t - t // 2


def down_extent(big, f, p, q, s, d):
    return (p + big + q - dilated(f, d)) // s + 1


def up_extent(small, f, p, q, s, d):
    return (small - 1) * s + dilated(f, d) - (p + q)


def border_index(i, z, border):
    """Source index for position ``i`` of a dim of extent ``z``; None = zero / excluded."""
    if 0 <= i < z:
        return i
    if border in ("constant", "ignore"):
        return None
    if border == "replicate":
        return 0 if i < 0 else z - 1
    if border == "reflect":
        if z == 1:
            return 0
        period = 2 * (z - 1)
        i = i % period
        return i if i < z else period - i
    if border == "reflect-even":
        period = 2 * z
        i = i % period
        return i if i < z else period - 1 - i
    raise ValueError(border)


def pad_nd(x, pads, border, value=0.0):
    """Pad (or crop, for negative entries) every dim of ``x`` by ``pads[k] = (p, q)``.

    Returns ``(padded, valid)`` where ``valid`` marks cells that hold real input values
    (False for cells filled by 'constant'/'ignore' padding).
    """
    x = np.asarray(x)
    out = x
    valid = np.ones(x.shape, dtype=bool)
    for axis, (p, q) in enumerate(pads):
        z = out.shape[axis]
        idx = [border_index(i, z, border) for i in range(-p, z + q)]
        src = np.array([0 if k is None else k for k in idx], dtype=np.int64)
        keep = np.array([k is not None for k in idx], dtype=bool)
        out = np.take(out, src, axis=axis)
        valid = np.take(valid, src, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = len(idx)
        keep = keep.reshape(shape)
        out = np.where(keep, out, np.asarray(value, dtype=out.dtype))
        valid = valid & keep
    return out, valid


def _window_slices(padded_shape, out_shape, offsets, stride):
    return tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offsets, out_shape, stride))


# ----------------------------------------------------------------------------- conv / deconv
def conv(x, w, bias=0.0, border="constant", padding=(), stride=(), dilation=(), groups=1):
    """NNEF conv: ``out[b, z, i] = sum_{c, j} in~[b, c, i*s + j*d - p] * w[z, c, j] + bias[z]``."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = x.ndim - 2
    stride = _defaults(stride, nsp)
    dilation = _defaults(dilation, nsp)
    ksize = w.shape[2:]
    if groups == 0:
        groups = x.shape[1]
    if not padding:
        padding = [auto_padding(X, f, s, d) for X, f, s, d in zip(x.shape[2:], ksize, stride, dilation)]
    out_sp = [down_extent(X, f, p, q, s, d)
              for X, f, (p, q), s, d in zip(x.shape[2:], ksize, padding, stride, dilation)]
    padded, _ = pad_nd(x, [(0, 0), (0, 0)] + list(padding), border)
    cout = w.shape[0]
    cin_g = x.shape[1] // groups
    cout_g = cout // groups
    out = np.zeros((x.shape[0], cout) + tuple(out_sp))
    for j in itertools.product(*[range(f) for f in ksize]):
        offs = [jj * d for jj, d in zip(j, dilation)]
        patch = padded[(slice(None), slice(None)) + _window_slices(padded.shape[2:], out_sp, offs, stride)]
        for g in range(groups):
            pin = patch[:, g * cin_g:(g + 1) * cin_g]
            wg = w[g * cout_g:(g + 1) * cout_g, :, *j]      # [cout_g, cin_g]
            out[:, g * cout_g:(g + 1) * cout_g] += np.einsum("bc...,oc->bo...", pin, wg)
    return out + _bias(bias, out.ndim)


def _bias(bias, rank):
    b = np.asarray(bias, dtype=np.float64)
    if b.ndim == 0:
        return b
    return b.reshape(b.shape + (1,) * (rank - b.ndim))


def deconv(x, w, bias=0.0, border="constant", padding=(), stride=(), dilation=(), output_shape=(),
           groups=1):
    """NNEF deconv: ``out[b, z, i] = sum_{c, j: (i + p - j*d) % s == 0} in~[b, c, (i+p-j*d)/s] * w[c, z', j]``.

    Filter ``[C_in, C_out/G, k...]``; ``groups = 0``: ``G = output_shape[1]`` if given, else ``C_in``.
    Out-of-range input positions take their value from ``border``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nsp = x.ndim - 2
    stride = _defaults(stride, nsp)
    dilation = _defaults(dilation, nsp)
    ksize = w.shape[2:]
    if groups == 0:
        groups = output_shape[1] if output_shape else x.shape[1]
    cout = w.shape[1] * groups
    if output_shape:
        out_sp = list(output_shape[2:])
    elif padding:
        out_sp = [up_extent(n, f, p, q, s, d)
                  for n, f, (p, q), s, d in zip(x.shape[2:], ksize, padding, stride, dilation)]
    else:
        out_sp = [n * s for n, s in zip(x.shape[2:], stride)]
    if not padding:
        padding = [auto_padding(X, f, s, d) for X, f, s, d in zip(out_sp, ksize, stride, dilation)]
    cin_g = x.shape[1] // groups
    cout_g = cout // groups
    out = np.zeros((x.shape[0], cout) + tuple(out_sp))
    for i in itertools.product(*[range(n) for n in out_sp]):
        for j in itertools.product(*[range(f) for f in ksize]):
            src = []
            for ii, jj, (p, _), s, d, z in zip(i, j, padding, stride, dilation, x.shape[2:]):
                num = ii + p - jj * d
                if num % s:
                    src = None
                    break
                src.append(border_index(num // s, z, border))
            if src is None or any(k is None for k in src):
                continue
            vals = x[(slice(None), slice(None)) + tuple(src)]            # [B, C_in]
            for g in range(groups):
                wg = w[g * cin_g:(g + 1) * cin_g, :, *j]             # [cin_g, cout_g]
                out[(slice(None), slice(g * cout_g, (g + 1) * cout_g)) + i] += \
                    vals[:, g * cin_g:(g + 1) * cin_g] @ wg
    return out + _bias(bias, out.ndim)


# ----------------------------------------------------------------------------- window ops
def _window_params(shape, size, padding, stride, dilation):
    rank = len(shape)
    stride = _defaults(stride, rank)
    dilation = _defaults(dilation, rank)
    if not padding:
        padding = [auto_padding(X, f, s, d) for X, f, s, d in zip(shape, size, stride, dilation)]
    out = [down_extent(X, f, p, q, s, d) for X, f, (p, q), s, d in zip(shape, size, padding, stride, dilation)]
    return list(padding), stride, dilation, out


def _windows(x, size, border, padding, stride, dilation):
    """Yield ``(cell_values, cell_valid)`` for every window cell, in row-major window order."""
    x = np.asarray(x, dtype=np.float64)
    padding, stride, dilation, out = _window_params(x.shape, size, padding, stride, dilation)
    padded, valid = pad_nd(x, padding, border)
    if border != "ignore":
        valid = np.ones_like(valid)
    for j in itertools.product(*[range(f) for f in size]):
        sl = _window_slices(padded.shape, out, [jj * d for jj, d in zip(j, dilation)], stride)
        yield padded[sl], valid[sl]


def box(x, size, border="constant", padding=(), stride=(), dilation=(), normalize=False):
    """Window sum over all dims; normalize: / volume(size), or / count of real cells for 'ignore'."""
    total = None
    count = None
    for v, ok in _windows(x, size, border, padding, stride, dilation):
        v = np.where(ok, v, 0.0)
        total = v if total is None else total + v
        count = ok.astype(np.float64) if count is None else count + ok
    if normalize:
        if border == "ignore":
            total = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        else:
            total = total / float(np.prod(size))
    return total


def max_pool(x, size, border="constant", padding=(), stride=(), dilation=()):
    best = None
    for v, ok in _windows(x, size, border, padding, stride, dilation):
        v = np.where(ok, v, -np.inf)
        best = v if best is None else np.maximum(best, v)
    return best


def argmax_pool(x, size, border="constant", padding=(), stride=(), dilation=()):
    """Row-major index (within the window) of the first maximum."""
    best = None
    index = None
    for k, (v, ok) in enumerate(_windows(x, size, border, padding, stride, dilation)):
        v = np.where(ok, v, -np.inf)
        if best is None:
            best, index = v, np.zeros(v.shape, dtype=np.int64)
        else:
            better = v > best
            best = np.where(better, v, best)
            index = np.where(better, k, index)
    return index


def avg_pool(x, size, border="constant", padding=(), stride=(), dilation=()):
    return box(x, size, border, padding, stride, dilation, normalize=True)


def rms_pool(x, size, border="constant", padding=(), stride=(), dilation=()):
    return np.sqrt(avg_pool(np.square(np.asarray(x, dtype=np.float64)), size, border, padding, stride, dilation))


def _decode(k, size):
    """Row-major window index -> per-dim offsets."""
    out = []
    for f in reversed(size):
        out.append(k % f)
        k //= f
    return list(reversed(out))


def sample(x, index, size, border="constant", padding=(), stride=(), dilation=()):
    """``out[i] = in~[i*s + decode(index[i])*d - p]`` (index has the output shape)."""
    x = np.asarray(x, dtype=np.float64)
    padding, stride, dilation, out_shape = _window_params(x.shape, size, padding, stride, dilation)
    out = np.zeros(out_shape)
    for i in itertools.product(*[range(n) for n in out_shape]):
        j = _decode(int(index[i]), size)
        src = [border_index(ii * s + jj * d - p, z, border)
               for ii, jj, s, d, (p, _), z in zip(i, j, stride, dilation, padding, x.shape)]
        out[i] = 0.0 if any(k is None for k in src) else x[tuple(src)]
    return out


def _reverse_shape(shape, size, padding, stride, dilation, output_shape):
    rank = len(shape)
    stride = _defaults(stride, rank)
    dilation = _defaults(dilation, rank)
    if output_shape:
        big = list(output_shape)
    elif padding:
        big = [up_extent(n, f, p, q, s, d) for n, f, (p, q), s, d in zip(shape, size, padding, stride, dilation)]
    else:
        big = [n * s for n, s in zip(shape, stride)]
    if not padding:
        padding = [auto_padding(X, f, s, d) for X, f, s, d in zip(big, size, stride, dilation)]
    return big, list(padding), stride, dilation


def desample(x, index, size, border="constant", padding=(), stride=(), dilation=(), output_shape=()):
    """Scatter-add ``in[i]`` to ``out[i*s + decode(index[i])*d - p]`` (positions outside are dropped)."""
    x = np.asarray(x, dtype=np.float64)
    big, padding, stride, dilation = _reverse_shape(x.shape, size, padding, stride, dilation, output_shape)
    out = np.zeros(big)
    for i in itertools.product(*[range(n) for n in x.shape]):
        j = _decode(int(index[i]), size)
        dst = [ii * s + jj * d - p for ii, jj, s, d, (p, _) in zip(i, j, stride, dilation, padding)]
        if all(0 <= k < z for k, z in zip(dst, big)):
            out[tuple(dst)] += x[i]
    return out


def debox(x, size, border="constant", padding=(), stride=(), dilation=(), output_shape=(), normalize=False):
    """Transposed box: every input cell is added to each up-scaled cell of its window.

    normalize: 'constant' divides by volume(size); 'ignore' by the number of windows that
    cover the up-scaled cell (0 covers -> 0).
    """
    x = np.asarray(x, dtype=np.float64)
    big, padding, stride, dilation = _reverse_shape(x.shape, size, padding, stride, dilation, output_shape)
    out = np.zeros(big)
    count = np.zeros(big)
    for i in itertools.product(*[range(n) for n in x.shape]):
        for j in itertools.product(*[range(f) for f in size]):
            dst = [ii * s + jj * d - p for ii, jj, s, d, (p, _) in zip(i, j, stride, dilation, padding)]
            if all(0 <= k < z for k, z in zip(dst, big)):
                out[tuple(dst)] += x[i]
                count[tuple(dst)] += 1
    if normalize:
        if border == "ignore":
            out = np.where(count > 0, out / np.maximum(count, 1), 0.0)
        else:
            out = out / float(np.prod(size))
    return out


# ----------------------------------------------------------------------------- resampling
def nearest_downsample(x, factor):
    x = np.asarray(x, dtype=np.float64)
    return x[(slice(None), slice(None)) + tuple(slice(None, None, f) for f in factor)]


def area_downsample(x, factor):
    x = np.asarray(x, dtype=np.float64)
    return box(x, [1, 1] + list(factor), stride=[1, 1] + list(factor), padding=[(0, 0)] * x.ndim,
               normalize=True)


def nearest_upsample(x, factor):
    out = np.asarray(x, dtype=np.float64)
    for axis, f in enumerate(factor, start=2):
        out = np.repeat(out, f, axis=axis)
    return out


def linear_coordinates(n_in, n_out, method, start=0.0, extent=None):
    """Source coordinate ``t`` of every output index for one dim.

    ``extent`` is the length of the sampled interval in input pixels (``n_in`` for a whole
    dim); for ``multilinear_upsample`` ``n_out = n_in * f``.
    """
    r = float(n_in if extent is None else extent)
    i = np.arange(n_out, dtype=np.float64)
    if method == "symmetric":
        return start + (i + 0.5) * r / n_out - 0.5
    if method == "asymmetric":
        return start + i * r / n_out
    if method == "aligned":
        return start + (i * (r - 1) / (n_out - 1) if n_out > 1 else 0.0 * i)
    raise ValueError(method)


def _interp_axis(x, axis, t, border):
    """Linear interpolation along ``axis`` at coordinates ``t`` (replicate clamps, constant reads 0)."""
    z = x.shape[axis]
    j = np.floor(t).astype(np.int64)
    u = t - j

    def tap(k):
        inside = (k >= 0) & (k < z)
        vals = np.take(x, np.clip(k, 0, z - 1), axis=axis)
        if border == "constant":
            shape = [1] * x.ndim
            shape[axis] = len(k)
            vals = np.where(inside.reshape(shape), vals, 0.0)
        return vals

    shape = [1] * x.ndim
    shape[axis] = len(t)
    u = u.reshape(shape)
    return (1 - u) * tap(j) + u * tap(j + 1)


def multilinear_upsample(x, factor, method="symmetric", border="replicate"):
    out = np.asarray(x, dtype=np.float64)
    for axis, f in enumerate(factor, start=2):
        n = out.shape[axis]
        out = _interp_axis(out, axis, linear_coordinates(n, n * f, method), border)
    return out


# ----------------------------------------------------------------------------- local normalizations
def local_response_normalization(x, size, alpha=1.0, beta=0.5, bias=1.0):
    x = np.asarray(x, dtype=np.float64)
    sigma = bias + alpha * box(np.square(x), size, normalize=True)
    return x / sigma ** beta


def local_mean_normalization(x, size):
    x = np.asarray(x, dtype=np.float64)
    return x - box(x, size, normalize=True)


def local_variance_normalization(x, size, bias=0.0, epsilon=0.0):
    x = np.asarray(x, dtype=np.float64)
    sigma = np.sqrt(box(np.square(x), size, normalize=True))
    return x / np.maximum(sigma + bias, epsilon)


def local_contrast_normalization(x, size, bias=0.0, epsilon=0.0):
    return local_variance_normalization(local_mean_normalization(x, size), size, bias, epsilon)


# ----------------------------------------------------------------------------- RoI ops
def nnef_round(v):
    return math.floor(v + 0.5)


def _roi_pool(x, rois, batch_index, output_size, reduce):
    """RoI pooling as read in SPEC-NOTES §7.14 (exclusive RoI ends, clipped cells, empty -> 0)."""
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64)
    bidx = np.asarray(batch_index).reshape(-1)
    nsp = len(output_size)
    out = np.zeros((rois.shape[0], x.shape[1]) + tuple(output_size))
    for n in range(rois.shape[0]):
        lo = [nnef_round(v) for v in rois[n, :nsp]]
        hi = [nnef_round(v) for v in rois[n, nsp:]]
        extent = [h - l for l, h in zip(lo, hi)]
        cell = [max(-(-r // p), 1) for r, p in zip(extent, output_size)]
        step = [max(r // p, 0) for r, p in zip(extent, output_size)]
        img = x[int(bidx[n])]
        for i in itertools.product(*[range(p) for p in output_size]):
            sl = []
            empty = False
            for k in range(nsp):
                a = lo[k] + i[k] * step[k]
                b = a + cell[k]
                a, b = max(a, 0), min(b, x.shape[2 + k])
                empty |= a >= b
                sl.append(slice(a, b))
            if empty:
                continue
            region = img[(slice(None),) + tuple(sl)].reshape(x.shape[1], -1)
            out[(n, slice(None)) + i] = reduce(region, axis=1)
    return out


def avg_roi_pool(x, rois, batch_index, output_size):
    return _roi_pool(x, rois, batch_index, output_size, np.mean)


def max_roi_pool(x, rois, batch_index, output_size):
    return _roi_pool(x, rois, batch_index, output_size, np.max)


def roi_resample(x, rois, batch_index, output_size, method="symmetric"):
    """Crop ``[y0, y1) x [x0, x1)`` (float) and resample it multilinearly to ``output_size``.

    The RoI interval plays the role the whole dim plays in ``multilinear_upsample`` (so the
    full-image RoI with ``output_size = factor * shape`` reproduces it); taps clamp to the
    input (replicate).
    """
    x = np.asarray(x, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64)
    bidx = np.asarray(batch_index).reshape(-1)
    nsp = len(output_size)
    outs = []
    for n in range(rois.shape[0]):
        img = x[int(bidx[n])][None]
        for k in range(nsp):
            lo, hi = rois[n, k], rois[n, nsp + k]
            t = linear_coordinates(None, output_size[k], method, start=lo, extent=hi - lo)
            img = _interp_axis(img, 2 + k, t, "replicate")
        outs.append(img[0])
    return np.stack(outs)


def _roi_align(x, rois, batch_index, output_size, sampling_rate, method, pool):
    size = [o * s for o, s in zip(output_size, sampling_rate)]
    r = roi_resample(x, rois, batch_index, size, method)
    win = [1, 1] + list(sampling_rate)
    return pool(r, win, stride=win)


def avg_roi_align(x, rois, batch_index, output_size, sampling_rate, resize_method="symmetric"):
    return _roi_align(x, rois, batch_index, output_size, sampling_rate, resize_method, avg_pool)


def max_roi_align(x, rois, batch_index, output_size, sampling_rate, resize_method="symmetric"):
    return _roi_align(x, rois, batch_index, output_size, sampling_rate, resize_method, max_pool)
