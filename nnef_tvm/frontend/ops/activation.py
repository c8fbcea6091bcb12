"""Activation functions (NNEF §4.9.1), converted from their normative formulas."""
from __future__ import annotations

from tvm import relax

from ..registry import converter

R = relax.op


@converter("relu")
def relu(ctx, op):
    """relu(x) = max(x, 0)."""
    return R.nn.relu(ctx.input(op, "x", "scalar"))
