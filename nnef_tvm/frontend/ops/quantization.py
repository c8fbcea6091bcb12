"""Fake-quantization operations (NNEF §4.9.5): real in, real out.

``round`` inside them is NNEF round, floor(x + 0.5). Tensor parameters (min,
max, zero_point, scale) broadcast left-aligned (per-channel since 1.0.5).
"""
from __future__ import annotations

from tvm import relax

from ..registry import converter
from .elementwise import nnef_max, nnef_min

R = relax.op


def _c(ctx, x, v):
    return relax.const(float(v), ctx.value_dtype(x))


def _clamp(ctx, x, lo, hi):
    return ctx.emit(nnef_max(ctx.emit(nnef_min(x, hi)), lo))


def _min_max(ctx, op, x, lo, hi, r):
    """round((clamp(x, lo, hi) - lo) / (hi - lo) * r) / r * (hi - lo) + lo."""
    x, lo, hi = ctx.broadcast_operands(x, lo, hi)
    width = ctx.emit(R.subtract(hi, lo))
    t = R.multiply(R.divide(R.subtract(_clamp(ctx, x, lo, hi), lo), width), _c(ctx, x, r))
    q = ctx.emit(ctx.nnef_round(ctx.emit(t)))
    return R.add(R.multiply(R.divide(q, _c(ctx, x, r)), width), lo)


@converter("min_max_linear_quantize")
def min_max_linear_quantize(ctx, op):
    """r = 2^bits - 1 - (signed and symmetric); linear quantization of [min, max] to r steps."""
    bits = int(op.attribs["bits"])
    r = 2 ** bits - 1 - (1 if op.attribs["signed"] and op.attribs["symmetric"] else 0)
    return _min_max(ctx, op, ctx.input(op, "x", "scalar"), ctx.input(op, "min", "scalar"),
                    ctx.input(op, "max", "scalar"), r)


@converter("linear_quantize")
def linear_quantize(ctx, op):
    """linear_quantize(x, min, max, bits): the unsigned min_max_linear_quantize (deprecated)."""
    r = 2 ** int(op.attribs["bits"]) - 1
    return _min_max(ctx, op, ctx.input(op, "x", "scalar"), ctx.input(op, "min", "scalar"),
                    ctx.input(op, "max", "scalar"), r)


def zero_point_bounds(bits, signed, symmetric):
    """(lo, hi): unsigned [0, 2^b - 1]; signed symmetric [-(2^(b-1) - 1), 2^(b-1) - 1];
    signed asymmetric [-2^(b-1), 2^(b-1) - 1] (e.g. [-128, 127] for 8 bits)."""
    if not signed:
        return 0, 2 ** bits - 1
    hi = 2 ** (bits - 1) - 1
    return (-hi if symmetric else -hi - 1), hi


@converter("zero_point_linear_quantize")
def zero_point_linear_quantize(ctx, op):
    """z = scalar(zero_point); q = clamp(round(x / scale) + z, lo, hi); y = (q - z) * scale."""
    x = ctx.input(op, "x", "scalar")
    dt = ctx.value_dtype(x)
    z = ctx.input(op, "zero_point", "integer")
    z = ctx.emit(R.astype(z, dt))
    scale = ctx.input(op, "scale", "scalar")
    x, z, scale = ctx.broadcast_operands(x, z, scale)
    lo, hi = zero_point_bounds(int(op.attribs["bits"]), op.attribs["signed"], op.attribs["symmetric"])
    q = ctx.emit(R.add(ctx.nnef_round(R.divide(x, scale)), z))
    q = _clamp(ctx, q, _c(ctx, x, lo), _c(ctx, x, hi))
    return R.multiply(R.subtract(q, z), scale)


@converter("logarithmic_quantize")
def logarithmic_quantize(ctx, op):
    """m = ceil(log2(max)); r = 2^bits - 1; y = sign(x) * 2^round(clamp(log2|x|, m - r, m))."""
    x = ctx.input(op, "x", "scalar")
    mx = ctx.input(op, "max", "scalar")
    x, mx = ctx.broadcast_operands(x, mx)
    ln2 = _c(ctx, x, 0.6931471805599453)
    m = ctx.emit(R.ceil(R.divide(R.log(mx), ln2)))
    r = _c(ctx, x, 2 ** int(op.attribs["bits"]) - 1)
    lg = ctx.emit(R.divide(R.log(R.abs(x)), ln2))
    e = ctx.nnef_round(_clamp(ctx, lg, ctx.emit(R.subtract(m, r)), m))
    return R.multiply(R.sign(x), R.power(_c(ctx, x, 2.0), e))
