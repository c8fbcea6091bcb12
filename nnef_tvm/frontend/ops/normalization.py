"""Non-windowed normalizations (NNEF §4.9.4): batch, l1 and l2 normalization.

(The local_*_normalization ops are windowed and live with the sliding-window family.)
"""
from __future__ import annotations

from tvm import relax

from ..context import norm_axes
from ..registry import converter
from .elementwise import nnef_max

R = relax.op


@converter("batch_normalization")
def batch_normalization(ctx, op):
    """offset + scale * (input - mean) / sqrt(variance + epsilon); params broadcast left-aligned."""
    x = ctx.input(op, "input", "scalar")
    mean, var, offset, scale = (ctx.input(op, n, "scalar")
                                for n in ("mean", "variance", "offset", "scale"))
    x, mean, var, offset, scale = ctx.broadcast_operands(x, mean, var, offset, scale)
    eps = relax.const(float(op.attribs["epsilon"]), ctx.value_dtype(x))
    norm = ctx.emit(R.divide(R.subtract(x, mean), R.sqrt(R.add(var, eps))))
    return R.add(offset, R.multiply(scale, norm))


def _norm(ctx, op, magnitude):
    x = ctx.input(op, "input", "scalar")
    axes = sorted(set(norm_axes(op.attribs["axes"], ctx.rank(x))))
    dt = ctx.value_dtype(x)
    m = ctx.emit(magnitude(x, axes))
    denom = nnef_max(R.add(m, relax.const(float(op.attribs.get("bias", 0.0)), dt)),
                     relax.const(float(op.attribs.get("epsilon", 0.0)), dt))
    return R.divide(x, ctx.emit(denom))


@converter("l1_normalization")
def l1_normalization(ctx, op):
    """x / max(sum_reduce(|x|, axes) + bias, epsilon)."""
    return _norm(ctx, op, lambda x, axes: R.sum(R.abs(x), axis=axes, keepdims=True)
                 if axes else R.abs(x))


@converter("l2_normalization")
def l2_normalization(ctx, op):
    """x / max(sqrt(sum_reduce(x^2, axes)) + bias, epsilon)."""
    return _norm(ctx, op, lambda x, axes: R.sqrt(R.sum(R.multiply(x, x), axis=axes, keepdims=True)
                                                 if axes else R.multiply(x, x)))
