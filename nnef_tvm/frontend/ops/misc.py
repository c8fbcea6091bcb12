"""add_n and copy_n (NNEF §4.9.6)."""
from __future__ import annotations

from tvm import relax

from ..registry import converter

R = relax.op


@converter("add_n")
def add_n(ctx, op):
    """add_n(x[]) = x[0] + x[1] + ... (equal shapes; empty array: a [1] zero tensor)."""
    xs = ctx.inputs_list(op, "x", "scalar")
    if not xs:
        return ctx.const([0.0], "scalar", shape=[1])
    total = xs[0]
    for x in xs[1:]:
        a, b = ctx.broadcast_operands(total, x)
        total = ctx.emit(R.add(a, b))
    return total


@converter("copy_n")
def copy_n(ctx, op):
    """copy_n<T>(x, times) = [x, x, ...] (times copies)."""
    x = ctx.input(op, "x", op.dtype)
    return [x] * int(op.attribs["times"])
