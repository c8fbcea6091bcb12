"""Region-of-interest ops (NNEF §4.6): avg/max_roi_pool, roi_resample, avg/max_roi_align.

Inputs: feature map ``[B, C, X1..XM]``, ``rois [N, 2M]`` with rows ``(lo_1..lo_M, hi_1..hi_M)``
in input pixels, ``batch_index`` ``[N]`` or ``[N, 1]``; output ``[N, C] + output_size``.
The spec leaves details open (SPEC-NOTES §7.14, O4/O5); the readings implemented here:

* roi_pool: RoI coordinates rounded with NNEF ``round`` (``floor(v + 0.5)``), extent
  ``r = hi - lo`` (end exclusive); cell ``i`` starts at ``lo + i*floor(r/p)`` and spans
  ``max(ceil(r/p), 1)`` cells, clipped to the input; averaged / maxed over its real cells;
  an empty cell gives 0.
* roi_resample: no rounding; the interval ``[lo, hi)`` plays the role the whole dim plays
  in ``multilinear_upsample`` — 'symmetric' ``t = lo + (i + 0.5)*r/o - 0.5``,
  'asymmetric' ``t = lo + i*r/o``, 'aligned' ``t = lo + i*(r - 1)/(o - 1)`` — with taps
  clamped to the input (replicate). The full-image RoI thus reproduces multilinear_upsample.
* roi_align = roi_resample to ``output_size * sampling_rate`` followed by an avg/max pool
  with window = stride = ``[1, 1] + sampling_rate`` (the stdlib body passes spatial-only
  arrays to full-rank pools, O4, so these compounds are converted natively).

The data-dependent windows are tensor-expression kernels; a roi_pool cell reduces over
the whole input (batch and spatial extents) with a mask — static loop bounds and affine
reads, as GPU schedules need; like TVM's own topi roi_pool it costs O(input) per cell.
"""
from __future__ import annotations

import itertools

from tvm import relax, te
import tvm.tirx as tir

from ..registry import converter
from .window import emit_te, window_reduce


def _nnef_round(v):
    return tir.floor(v + tir.const(0.5, v.dtype))


def roi_pool_te(x, bidx, output_size, mode, *coords):
    """``mode`` 'avg' or 'max'; see the module docstring for the cell rule.

    ``coords`` are the 2M RoI columns as separate ``[N]`` tensors (lo_1..lo_M, hi_1..hi_M):
    GPU reduction schedules need every buffer read at a single point per iteration.
    """
    m = len(output_size)
    extents = [int(v) for v in x.shape[2:]]
    n_rois, channels = int(bidx.shape[0]), int(x.shape[1])
    # The batch is a reduction axis too (masked by batch_index) so that every read of x is
    # affine in the loop variables: GPU schedule rules reject data-dependent read regions.
    batch = te.reduce_axis((0, int(x.shape[0])), name="batch")
    axes = [te.reduce_axis((0, e), name=f"y{k}") for k, e in enumerate(extents)]

    def bounds(n, i):
        out = []
        for k in range(m):
            lo = _nnef_round(coords[k][n]).astype("int32")
            hi = _nnef_round(coords[m + k][n]).astype("int32")
            r = hi - lo
            p = int(output_size[k])
            step = tir.max(tir.floordiv(r, p), 0)
            size = tir.max(tir.floordiv(r + p - 1, p), 1)
            a = lo + i[k] * step
            b = a + size
            out.append((tir.max(a, 0), tir.min(b, extents[k])))
        return out

    def masked(n, c, i, fill):
        bs = bounds(n, i)
        inside = tir.all(batch == bidx[n], *[tir.all(ax >= a, ax < b) for ax, (a, b) in zip(axes, bs)])
        return tir.if_then_else(inside, x[(batch, c) + tuple(axes)], fill), bs

    def count(bs):
        total = tir.const(1, "int32")
        for a, b in bs:
            total = total * tir.max(b - a, 0)
        return total

    shape = (n_rois, channels) + tuple(int(v) for v in output_size)
    if mode == "max":
        def f_max(n, c, *i):
            v, _ = masked(n, c, i, tir.min_value(x.dtype))
            return te.max(v, axis=[batch] + axes)
        raw = te.compute(shape, f_max, name="roi_max")

        def f_fix(n, c, *i):
            return tir.if_then_else(count(bounds(n, i)) > 0, raw[(n, c) + i], tir.const(0, x.dtype))
        return te.compute(shape, f_fix, name="max_roi_pool")

    def f_sum(n, c, *i):
        v, _ = masked(n, c, i, tir.const(0, x.dtype))
        return te.sum(v, axis=[batch] + axes)
    raw = te.compute(shape, f_sum, name="roi_sum")

    def f_avg(n, c, *i):
        cnt = count(bounds(n, i))
        return tir.if_then_else(cnt > 0, raw[(n, c) + i] / tir.max(cnt, 1).astype(x.dtype),
                                tir.const(0, x.dtype))
    return te.compute(shape, f_avg, name="avg_roi_pool")


def roi_resample_te(x, rois, bidx, output_size, method):
    """Multilinear resampling of every RoI to ``output_size`` (taps clamped to the input)."""
    m = len(output_size)
    extents = [int(v) for v in x.shape[2:]]
    dtype = x.dtype
    shape = (int(rois.shape[0]), int(x.shape[1])) + tuple(int(v) for v in output_size)

    def coord(n, k, i):
        lo = rois[n, k]
        r = rois[n, m + k] - lo
        o = int(output_size[k])
        fi = i.astype(dtype)
        if method == "symmetric":
            return lo + (fi + tir.const(0.5, dtype)) * r / tir.const(float(o), dtype) - tir.const(0.5, dtype)
        if method == "asymmetric":
            return lo + fi * r / tir.const(float(o), dtype)
        if o == 1:
            return lo
        return lo + fi * (r - tir.const(1.0, dtype)) / tir.const(float(o - 1), dtype)

    def compute(n, c, *i):
        taps = []
        for k in range(m):
            t = coord(n, k, i[k])
            j = tir.floor(t)
            u = t - j
            j = j.astype("int32")
            lo = tir.max(tir.min(j, extents[k] - 1), 0)
            hi = tir.max(tir.min(j + 1, extents[k] - 1), 0)
            taps.append(((lo, tir.const(1.0, dtype) - u), (hi, u)))
        b = bidx[n]
        total = tir.const(0.0, dtype)
        for combo in itertools.product(*taps):
            w = tir.const(1.0, dtype)
            for _, wk in combo:
                w = w * wk
            total = total + w * x[(b, c) + tuple(idx for idx, _ in combo)]
        return total

    return te.compute(shape, compute, name="roi_resample")


def _operands(ctx, op):
    x = ctx.input(op, "input")
    rois = ctx.input(op, "rois", "scalar")
    bidx = ctx.input(op, "batch_index", "integer")
    xs, rs, bs = ctx.shape(x), ctx.shape(rois), ctx.shape(bidx)
    size = [int(v) for v in op.attribs["output_size"]]
    m = len(xs) - 2
    if len(size) != m:
        raise ctx.error(op, f"output_size must have {m} entries (one per spatial dim), got {size}")
    if any(v < 1 for v in size):
        raise ctx.error(op, f"output_size entries must be positive, got {size}")
    if len(rs) != 2 or rs[1] != 2 * m:
        raise ctx.error(op, f"rois must have shape [N, {2 * m}], got {list(rs)}")
    if tuple(bs) not in ((rs[0],), (rs[0], 1)):
        raise ctx.error(op, f"batch_index must have shape [{rs[0]}] or [{rs[0]}, 1], got {list(bs)}")
    if len(bs) == 2:
        bidx = ctx.emit(relax.op.reshape(bidx, [rs[0]]))
    return x, rois, bidx, size


def _columns(ctx, rois):
    """The columns of ``rois [N, 2M]`` as separate ``[N]`` tensors."""
    n, width = ctx.shape(rois)
    return [ctx.emit(relax.op.reshape(relax.op.strided_slice(rois, [1], [k], [k + 1]), [n]))
            for k in range(width)]


@converter("avg_roi_pool")
def avg_roi_pool(ctx, op):
    x, rois, bidx, size = _operands(ctx, op)
    return emit_te(ctx, roi_pool_te, x, bidx, size, "avg", *_columns(ctx, rois))


@converter("max_roi_pool")
def max_roi_pool(ctx, op):
    x, rois, bidx, size = _operands(ctx, op)
    return emit_te(ctx, roi_pool_te, x, bidx, size, "max", *_columns(ctx, rois))


def _method(ctx, op, name):
    method = op.attribs.get(name, "symmetric")
    if method not in ("symmetric", "asymmetric", "aligned"):
        raise ctx.error(op, f"{name} '{method}' is not one of 'symmetric', 'asymmetric', 'aligned'")
    return method


@converter("roi_resample")
def roi_resample(ctx, op):
    x, rois, bidx, size = _operands(ctx, op)
    return emit_te(ctx, roi_resample_te, x, rois, bidx, size, _method(ctx, op, "method"))


def _roi_align(ctx, op, kind):
    x, rois, bidx, size = _operands(ctx, op)
    rate = [int(v) for v in op.attribs["sampling_rate"]]
    if len(rate) != len(size) or any(v < 1 for v in rate):
        raise ctx.error(op, f"sampling_rate must have {len(size)} positive entries, got {rate}")
    big = [o * s for o, s in zip(size, rate)]
    resized = emit_te(ctx, roi_resample_te, x, rois, bidx, big, _method(ctx, op, "resize_method"))
    window = [1, 1] + rate
    return window_reduce(ctx, op, resized, kind, window, "constant", [(0, 0)] * len(window), window, [])


@converter("avg_roi_align")
def avg_roi_align(ctx, op):
    return _roi_align(ctx, op, "avg")


@converter("max_roi_align")
def max_roi_align(ctx, op):
    return _roi_align(ctx, op, "max")
