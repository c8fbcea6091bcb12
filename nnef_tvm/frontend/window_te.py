"""Tensor-expression kernels for NNEF window ops that have no Relax operator.

Used through ``bb.emit_te`` by the converters of ``argmax_pool``, ``sample``,
``desample``, by ``debox`` over batch/channel dims and by ``box``/pools whose window
spans more than three dimensions. All kernels are *full rank*: every dim has a window
size, stride, dilation and padding (the NNEF window-op convention, SPEC-NOTES §7.3).
They are written so that GPU schedule rules (dlight) accept them: plain commutative
reductions only (argmax is a max followed by a first-index min, not a tuple reducer).

Borders: the caller materialises replicate/reflect/reflect-even padding beforehand
(:func:`nnef_tvm.frontend.padding.pad_with_border`) and crops negative padding, so the
kernels only see non-negative padding whose cells are either zeros ('constant') or
excluded ('ignore'). Out-of-range reads are guarded with ``if_then_else`` (which, unlike
``Select``, never evaluates the untaken branch).

Formulas (per dim, window cell ``j``, dilation ``d``, stride ``s``, padding ``p``):
* down-scaling (box, argmax_pool, sample): ``in[i*s + j*d - p]``;
* up-scaling (debox, desample): ``out[o]`` gathers ``in[(o + p - j*d) / s]`` where the
  division is exact and the result is in range (a gather form of the scatter-add).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from tvm import te
import tvm.tirx as tir


def _window_axes(size: Sequence[int]):
    return {k: te.reduce_axis((0, int(f)), name=f"w{k}") for k, f in enumerate(size) if int(f) > 1}


def _flat_window_index(size, axes, dtype):
    """Row-major index of the current window cell over all dims of ``size``."""
    flat = tir.const(0, dtype)
    for k, f in enumerate(size):
        r = axes.get(k)
        term = r.var.astype(dtype) if r is not None else tir.const(0, dtype)
        flat = flat * tir.const(int(f), dtype) + term
    return flat


def forward_window(x: te.Tensor, mode: str, size, pads, stride, dilation, out_shape,
                   ignore: bool, index_dtype: str = "int32"):
    """Window reduction over all dims: ``mode`` is 'sum', 'max' or 'argmax'.

    Padding cells read 0 ('constant') or are excluded (``ignore``: -inf for max/argmax,
    0 for sum; the caller divides by the count of real cells for averages).
    """
    rank = len(size)
    extents = [int(v) for v in x.shape]
    axes = _window_axes(size)
    dtype = x.dtype

    def cell(o, axes):
        """Value of the current window cell (padding: 0, or the lowest value for 'ignore')."""
        idx, conds = [], []
        for k in range(rank):
            r = axes.get(k)
            i = o[k] * int(stride[k]) - int(pads[k][0])
            if r is not None:
                i = i + r * int(dilation[k])
            idx.append(i)
            if tuple(pads[k]) != (0, 0):
                conds.append(tir.all(i >= 0, i < extents[k]))
        if mode in ("max", "argmax") and ignore:
            fill = tir.min_value(dtype)
        else:
            fill = tir.const(0, dtype)
        return tir.if_then_else(tir.all(*conds), x[tuple(idx)], fill) if conds else x[tuple(idx)]

    red = [axes[k] for k in sorted(axes)]
    if mode == "sum":
        return te.compute(tuple(out_shape), lambda *o: te.sum(cell(o, axes), axis=red) if red else cell(o, axes),
                          name="window_sum")
    if mode == "max":
        return te.compute(tuple(out_shape), lambda *o: te.max(cell(o, axes), axis=red) if red else cell(o, axes),
                          name="window_max")
    if mode != "argmax":
        raise ValueError(mode)
    if not red:
        return te.compute(tuple(out_shape), lambda *o: tir.const(0, index_dtype), name="argmax_pool")
    # Two plain reductions instead of an (index, value) tuple reducer, which GPU schedule
    # rules do not handle: the maximum, then the lowest window index holding it.
    best = te.compute(tuple(out_shape), lambda *o: te.max(cell(o, axes), axis=red), name="window_max")
    volume = int(np.prod([int(f) for f in size]))
    axes2 = _window_axes(size)
    red2 = [axes2[k] for k in sorted(axes2)]

    def first_index(*o):
        v = cell(o, axes2)
        flat = _flat_window_index(size, axes2, index_dtype)
        return te.min(tir.Select(v == best[o], flat, tir.const(volume, index_dtype)), axis=red2)

    return te.compute(tuple(out_shape), first_index, name="argmax_pool")


def _decode(flat, size, k):
    """Offset along dim ``k`` of the row-major window index ``flat``."""
    inner = int(np.prod(size[k + 1:], dtype=np.int64)) if k + 1 < len(size) else 1
    return tir.floormod(tir.floordiv(flat, inner), int(size[k]))


def sample(x: te.Tensor, index: te.Tensor, size, pads, stride, dilation, out_shape):
    """``out[o] = in[o*s + decode(index[o])*d - p]`` (0 outside the input)."""
    rank = len(size)
    extents = [int(v) for v in x.shape]

    def compute(*o):
        flat = index[o]
        idx, conds = [], []
        for k in range(rank):
            i = o[k] * int(stride[k]) - int(pads[k][0])
            if int(size[k]) > 1:
                i = i + _decode(flat, size, k).astype("int32") * int(dilation[k])
            idx.append(i)
            if tuple(pads[k]) != (0, 0):
                conds.append(tir.all(i >= 0, i < extents[k]))
        v = x[tuple(idx)]
        return tir.if_then_else(tir.all(*conds), v, tir.const(0, x.dtype)) if conds else v

    return te.compute(tuple(out_shape), compute, name="sample")


def reverse_window(x: te.Tensor, index: Optional[te.Tensor], size, pads, stride, dilation, big_shape,
                   index_dtype: str = "int32"):
    """Gather form of the scatter-add of debox (``index`` None) and desample.

    ``out[o] = sum_j [exact, in range] in[(o + p - j*d)/s]`` (desample: only where
    ``index`` at that input cell selects window cell ``j``).
    """
    rank = len(size)
    small = [int(v) for v in x.shape]
    axes = _window_axes(size)

    def compute(*o):
        idx, conds = [], []
        for k in range(rank):
            r = axes.get(k)
            num = o[k] + int(pads[k][0])
            if r is not None:
                num = num - r * int(dilation[k])
            s = int(stride[k])
            i = tir.floordiv(num, s) if s != 1 else num
            if s != 1:
                conds.append(tir.floormod(num, s) == 0)
            conds.append(tir.all(i >= 0, i < small[k]))
            idx.append(i)
        v = x[tuple(idx)]
        if index is not None:
            flat = _flat_window_index(size, axes, index_dtype)
            v = tir.if_then_else(index[tuple(idx)] == flat, v, tir.const(0, x.dtype))
        value = tir.if_then_else(tir.all(*conds), v, tir.const(0, x.dtype))
        red = [axes[k] for k in sorted(axes)]
        return te.sum(value, axis=red) if red else value

    return te.compute(tuple(int(v) for v in big_shape), compute, name="reverse_window")


def static_cell_count(big: Sequence[int], size, pads, stride, dilation, small: Sequence[int],
                      reverse: bool = False) -> np.ndarray:
    """Number of real (in-range) window cells per output cell, computed at conversion time.

    Forward: per output cell of a down-scaling window op. ``reverse``: per up-scaled cell,
    the number of (input cell, window cell) pairs landing on it (debox normalisation).
    ``big``/``small`` are the up-/down-scaled extents; the result has the ``small`` shape
    (forward) or the ``big`` shape (reverse).
    The count factorises over dims, so it is the outer product of per-dim counts; dims
    along which it is constant get extent 1 (broadcast), which keeps the embedded
    constant small (usually just the padded spatial dims).
    """
    total = np.ones((), dtype=np.float64)
    for X, f, (p, _), s, d, n in zip(big, size, pads, stride, dilation, small):
        c = np.zeros(n if not reverse else X)
        if not reverse:
            for o in range(n):
                c[o] = sum(1 for j in range(f) if 0 <= o * s + j * d - p < X)
        else:
            for i in range(n):
                for j in range(f):
                    t = i * s + j * d - p
                    if 0 <= t < X:
                        c[t] += 1
        if c.size and np.all(c == c[0]):
            c = c[:1]               # constant along this dim: keep extent 1, let it broadcast
        total = np.multiply.outer(total, c)
    return total
