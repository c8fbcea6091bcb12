"""matmul (NNEF §4.7) and linear (§4.9.2)."""
from __future__ import annotations

from tvm import relax

from ...reader.graph import Identifier
from ..registry import converter

R = relax.op


def _swap_last(ctx, x):
    rank = ctx.rank(x)
    return ctx.emit(R.permute_dims(x, list(range(rank - 2)) + [rank - 1, rank - 2]))


@converter("matmul")
def matmul(ctx, op):
    """matmul(A, B, transposeA, transposeB): batched over leading dims (equal ranks, which
    broadcast left-aligned = right-aligned); ``transposeX`` swaps X's last two dims."""
    a = ctx.input(op, "A", "scalar")
    b = ctx.input(op, "B", "scalar")
    if op.attribs.get("transposeA", False):
        a = _swap_last(ctx, a)
    if op.attribs.get("transposeB", False):
        b = _swap_last(ctx, b)
    return R.matmul(a, b)


@converter("linear")
def linear(ctx, op):
    """linear(input [N, C_in], filter [C_out, C_in], bias = 0.0) = input @ filter^T + bias."""
    x = ctx.input(op, "input", "scalar")
    w = _swap_last(ctx, ctx.input(op, "filter", "scalar"))
    y = ctx.emit(R.matmul(x, w))
    bias = op.inputs.get("bias", 0.0)
    if not isinstance(bias, Identifier) and float(bias) == 0.0:
        return y
    y, b = ctx.broadcast_operands(y, ctx.input(op, "bias", "scalar"))
    return R.add(y, b)
