"""Activation functions (NNEF §4.9.1), converted from their normative formulas.

The formulas are the definition (e.g. ``gelu`` is the sigmoid approximation
``x * sigmoid(1.702 x)``, not the erf GELU of Relax), and ``softmax`` normalizes
jointly over every listed axis (default: the channel axis 1).
"""
from __future__ import annotations

from tvm import relax

from ..context import norm_axes
from ..registry import converter

R = relax.op


def _x(ctx, op):
    return ctx.input(op, "x", "scalar")


def _c(ctx, x, v):
    return relax.const(v, ctx.value_dtype(x))


@converter("relu")
def relu(ctx, op):
    """relu(x) = max(x, 0)."""
    return R.nn.relu(_x(ctx, op))


@converter("sigmoid")
def sigmoid(ctx, op):
    """sigmoid(x) = 1 / (1 + exp(-x))."""
    return R.sigmoid(_x(ctx, op))


def _negative_branch(ctx, x, neg):
    """select(x < 0, neg, x)."""
    return R.where(R.less(x, _c(ctx, x, 0.0)), neg, x)


@converter("prelu")
def prelu(ctx, op):
    """prelu(x, alpha) = select(x < 0, alpha * x, x); alpha broadcasts left-aligned."""
    x = _x(ctx, op)
    alpha = ctx.input(op, "alpha", "scalar")
    x, alpha = ctx.broadcast_operands(x, alpha)
    return _negative_branch(ctx, x, R.multiply(alpha, x))


@converter("leaky_relu")
def leaky_relu(ctx, op):
    """leaky_relu(x, alpha) = select(x < 0, alpha * x, x) with a scalar attribute alpha."""
    x = _x(ctx, op)
    return _negative_branch(ctx, x, R.multiply(_c(ctx, x, float(op.attribs["alpha"])), x))


def _elu(ctx, x, alpha):
    # alpha * (exp(x) - 1) where x < 0
    return _negative_branch(ctx, x, R.multiply(_c(ctx, x, alpha),
                                               R.subtract(R.exp(x), _c(ctx, x, 1.0))))


@converter("elu")
def elu(ctx, op):
    """elu(x, alpha = 1) = select(x < 0, alpha * (exp(x) - 1), x)."""
    return _elu(ctx, _x(ctx, op), float(op.attribs["alpha"]))


@converter("selu")
def selu(ctx, op):
    """selu(x, alpha, lambda) = lambda * select(x < 0, alpha * (exp(x) - 1), x)."""
    x = _x(ctx, op)
    lam = float(op.attribs["lambda"])
    return R.multiply(_c(ctx, x, lam), _elu(ctx, x, float(op.attribs["alpha"])))


@converter("gelu")
def gelu(ctx, op):
    """gelu(x) = x * sigmoid(1.702 * x) (the spec's definition, not the erf form)."""
    x = _x(ctx, op)
    return R.multiply(x, R.sigmoid(R.multiply(_c(ctx, x, 1.702), x)))


@converter("silu")
def silu(ctx, op):
    """silu(x) = x * sigmoid(x)."""
    x = _x(ctx, op)
    return R.multiply(x, R.sigmoid(x))


@converter("softplus")
def softplus(ctx, op):
    """softplus(x) = log(exp(x) + 1)."""
    x = _x(ctx, op)
    return R.log(R.add(R.exp(x), _c(ctx, x, 1.0)))


@converter("softmax")
def softmax(ctx, op):
    """softmax(x, axes = [1]): e = exp(x - max_reduce(x, axes)); e / sum_reduce(e, axes).

    Jointly over all listed axes; a single axis maps to Relax softmax.
    ``axes = []`` normalizes over nothing: exp(x - x) / 1 = 1 everywhere.
    """
    x = _x(ctx, op)
    axes = norm_axes(op.attribs["axes"], ctx.rank(x))
    if len(axes) == 1:
        return R.nn.softmax(x, axis=axes[0])
    if not axes:
        return R.ones_like(x)
    m = ctx.emit(R.max(x, axis=axes, keepdims=True))
    e = ctx.emit(R.exp(R.subtract(x, m)))
    return R.divide(e, R.sum(e, axis=axes, keepdims=True))
