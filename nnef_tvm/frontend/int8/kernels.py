"""Relax building blocks of the integer path: quantize, accumulate, requantize.

Integer tensors here hold, when they fit one byte, *zero-point-free codes*
``c = q - z`` (NNEF ``zero_point_linear_quantize``: ``q = clamp(round(x / s) + z,
lo, hi)``, real value ``(q - z) * s = c * s``). Removing ``z`` before the reduction
makes the products exact without correction terms and lets ``conv`` pad with its
own zeros (the real 0 is ``c = 0``). TFLite's int8 activations with ``z = -128``
give ``c`` in ``[0, 255]`` (uint8), symmetric int8 weights stay int8, uint8 with
``z = 128`` gives int8. Other zero points (``c`` needs 9 bits) keep the raw codes
``q`` with an ``offset = z`` that the reductions subtract (see
:mod:`.converters`).

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


def code_form(grid: Grid) -> tuple[int, int, int, str]:
    """``(offset, lo, hi, dtype)`` of the integer tensors holding ``grid``'s codes.

    Zero-point-free codes ``c = q - z`` (offset 0) when they fit one byte; else the
    raw codes ``q`` (offset ``z``, int8/uint8 by the entry's signedness), whose
    zero point the reductions then subtract with correction terms.
    """
    lo, hi = grid.centered_range()
    dtype = storage_dtype(lo, hi)
    if dtype in ("int8", "uint8") or not grid.per_tensor:
        return 0, lo, hi, dtype
    return int(grid.zero[0]), grid.lo, grid.hi, grid.dtype


def quantize_activation(ctx, x: relax.Expr, grid: Grid) -> tuple[relax.Expr, int]:
    """``(codes, offset)`` of a float activation under a per-tensor grid.

    ``clamp(floor(x / s + 0.5) + offset, lo, hi)`` in float32 with the entry's own
    float32 scale: exactly the codes the fake quantization of ``x`` rounds to.
    """
    offset, lo, hi, dtype = code_form(grid)
    scale = np.asarray(grid.entry["scale"], dtype=np.float32).reshape(())
    v = ctx.nnef_round(R.divide(x, _f32(scale)))
    if offset:
        v = R.add(v, _f32(offset))
    v = ctx.emit(R.clip(ctx.emit(v), float(lo), float(hi)))
    return ctx.emit(R.astype(v, dtype)), offset


def dequantize(ctx, codes: relax.Expr, offset: int, grid: Grid,
               name: Optional[str] = None) -> relax.Expr:
    """``(float32(codes) - offset) * s``: fake-quant's ``(q - z) * scale``, bit for bit."""
    scale = np.asarray(grid.entry["scale"], dtype=np.float32).reshape(())
    v = R.astype(codes, "float32")
    if offset:
        v = R.subtract(v, _f32(offset))
    return ctx.emit(R.multiply(v, _f32(scale)), name_hint=name)


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
    """The int32 accumulator -> ``((codes, offset) or None, float32 value bound to ``name``)``.

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
    offset, lo, hi, dtype = code_form(out)
    t = R.floor(R.add(t, relax.const(0.5, "float64")))
    if offset:
        t = R.add(t, relax.const(float(offset), "float64"))
    c = ctx.emit(R.clip(t, float(lo), float(hi)))
    codes = ctx.emit(R.astype(c, dtype))
    return (codes, offset), dequantize(ctx, codes, offset, out, name)
