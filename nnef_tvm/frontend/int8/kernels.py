"""Relax building blocks of the integer path: quantize, accumulate, requantize.

All integer tensors here hold *zero-point-free codes* ``c = q - z`` (NNEF
``zero_point_linear_quantize``: ``q = clamp(round(x / s) + z, lo, hi)``, real value
``(q - z) * s = c * s``). Removing ``z`` before the reduction makes the products
exact without correction terms and lets ``conv`` pad with its own zeros (the real
0 is ``c = 0``). ``c`` usually still fits one byte: TFLite's int8 activations
with ``z = -128`` give ``c`` in ``[0, 255]`` (uint8), symmetric int8 weights stay
int8, uint8 with ``z = 128`` gives int8.

Requantization (``requantize``) follows the quantize op of the result
(``round(v) = floor(v + 0.5)``, SPEC-NOTES §7.13), evaluated in float64 from the
exact int32 accumulator: ``c_out = clamp(floor(acc * s_in * s_w / s_out + b / s_out
+ 0.5), lo - z, hi - z)``. The dequantized float the rest of the graph sees is
``float32(c_out) * s_out``, the same float32 product as the fake-quant formula
``(q - z) * scale``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from tvm import relax

from .grid import Grid, storage_dtype

R = relax.op


def _f32(v) -> relax.Expr:
    return relax.const(np.asarray(v, dtype=np.float32))


def quantize_activation(ctx, x: relax.Expr, grid: Grid) -> relax.Expr:
    """Zero-point-free codes of a float activation under a per-tensor grid.

    ``clamp(floor(x / s + 0.5), lo - z, hi - z)`` in float32 with the entry's own
    float32 scale: exactly the codes the fake quantization of ``x`` rounds to.
    """
    lo, hi = grid.centered_range()
    scale = np.asarray(grid.entry["scale"], dtype=np.float32).reshape(())
    v = ctx.emit(ctx.nnef_round(R.divide(x, _f32(scale))))
    v = ctx.emit(R.clip(v, float(lo), float(hi)))
    return ctx.emit(R.astype(v, storage_dtype(lo, hi)))


def dequantize(ctx, codes: relax.Expr, grid: Grid, name: Optional[str] = None) -> relax.Expr:
    """``float32(c) * s``: equal, bit for bit, to fake-quant's ``(q - z) * scale``."""
    scale = np.asarray(grid.entry["scale"], dtype=np.float32).reshape(())
    return ctx.emit(R.multiply(R.astype(codes, "float32"), _f32(scale)), name_hint=name)


def channel_const(values: np.ndarray, rank: int, axis: int, dtype: str) -> relax.Expr:
    """A constant vector laid along ``axis`` of a rank-``rank`` tensor (broadcastable)."""
    values = np.asarray(values)
    shape = [1] * rank
    shape[axis] = values.size
    return relax.const(values.astype(dtype).reshape(shape), dtype)


def split_bias(bias: Optional[np.ndarray], acc_scale: np.ndarray):
    """``(int32 bias at scale s_in * s_w, or None; float64 residual bias, or None)``.

    A bias whose real values lie on the accumulator grid (to 1e-3 of a step: a bias
    quantized at ``fl32(s_in * s_w)``, as TFLite writes them) is added to the int32
    accumulator; any other bias stays a float64 term of the requantization, so it
    is never rounded.
    """
    if bias is None or not np.any(bias):
        return None, None
    steps = bias.astype(np.float64) / acc_scale
    rounded = np.floor(steps + 0.5)
    if np.all(np.abs(steps - rounded) <= 1e-3) and np.all(np.abs(rounded) < 2 ** 30):
        return rounded.astype(np.int32), None
    return None, bias.astype(np.float64)


def requantize(ctx, acc: relax.Expr, axis: int, acc_scale: np.ndarray, bias: Optional[np.ndarray],
               out: Optional[Grid], name: str):
    """The int32 accumulator -> ``(codes or None, float32 value bound to ``name``)``.

    ``acc_scale`` (per channel along ``axis``, float64) is ``s_in * s_w``; ``bias``
    the real bias per channel. With an output grid the result is requantized to
    its codes (NNEF round) and dequantized; without one it is the real value
    ``acc * s_in * s_w + bias`` rounded once to float32.
    """
    rank = ctx.rank(acc)
    ibias, fbias = split_bias(bias, acc_scale)
    if ibias is not None:
        acc = ctx.emit(R.add(acc, channel_const(ibias, rank, axis, "int32")))
    t = R.astype(acc, "float64")
    if out is None:
        t = R.multiply(t, channel_const(acc_scale, rank, axis, "float64"))
        if fbias is not None:
            t = R.add(t, channel_const(fbias, rank, axis, "float64"))
        return None, ctx.emit(R.astype(t, "float32"), name_hint=name)
    s_out = out.scale[0]
    t = R.multiply(t, channel_const(acc_scale / s_out, rank, axis, "float64"))
    if fbias is not None:
        t = R.add(t, channel_const(fbias / s_out, rank, axis, "float64"))
    lo, hi = out.centered_range()
    c = ctx.emit(R.clip(R.floor(R.add(t, relax.const(0.5, "float64"))), float(lo), float(hi)))
    codes = ctx.emit(R.astype(c, storage_dtype(lo, hi)))
    return codes, dequantize(ctx, codes, out, name)
