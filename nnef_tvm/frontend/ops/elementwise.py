"""Element-wise operations (NNEF §4.2): unary, binary, select, clamp, copy.

All binary/ternary operands broadcast NNEF-style, aligned on the LEFT
(``ctx.broadcast_operands``); literal operands are rank-0 constants.
The compound simplifiers (sqr, sqrt, rsqr, rsqrt, log2, min, max, clamp) are
converted natively from their defining formulas.
"""
from __future__ import annotations

import math

from tvm import relax

from ..registry import converter

R = relax.op

# NNEF op -> Relax unary op with exactly the same semantics
_DIRECT_UNARY = {
    "exp": R.exp, "log": R.log,
    "sin": R.sin, "cos": R.cos, "tan": R.tan,
    "sinh": R.sinh, "cosh": R.cosh, "tanh": R.tanh,
    "asin": R.asin, "acos": R.acos, "atan": R.atan,
    "asinh": R.asinh, "acosh": R.acosh, "atanh": R.atanh,
    "abs": R.abs, "sign": R.sign, "neg": R.negative,
    "floor": R.floor, "ceil": R.ceil, "sqrt": R.sqrt, "rsqrt": R.rsqrt,
}


def _scalar(ctx, op, name="x"):
    return ctx.input(op, name, "scalar")


def _one(ctx, x):
    return relax.const(1.0, ctx.value_dtype(x))


def _make_direct(name, fn):
    def convert(ctx, op):
        return fn(_scalar(ctx, op))
    convert.__name__ = name
    convert.__doc__ = f"NNEF {name}(x): the Relax op of the same meaning, element-wise."
    converter(name)(convert)


for _name, _fn in _DIRECT_UNARY.items():
    _make_direct(_name, _fn)


@converter("copy")
def copy(ctx, op):
    """copy(x) = x (identity; any element type)."""
    return ctx.input(op, "x", op.dtype or ctx.result_dtype(op))


@converter("not")
def logical_not(ctx, op):
    """not(x) on tensor<logical>."""
    return R.logical_not(ctx.input(op, "x", "logical"))


@converter("round")
def round_(ctx, op):
    """round(x) = floor(x + 0.5): ties go up (-2.5 -> -2, 2.5 -> 3), unlike Relax round."""
    return ctx.nnef_round(_scalar(ctx, op))


@converter("rcp")
def rcp(ctx, op):
    """rcp(x) = 1 / x."""
    x = _scalar(ctx, op)
    return R.divide(_one(ctx, x), x)


@converter("sqr")
def sqr(ctx, op):
    """sqr(x) = x ^ 2 (computed as x * x)."""
    x = _scalar(ctx, op)
    return R.multiply(x, x)


@converter("rsqr")
def rsqr(ctx, op):
    """rsqr(x) = x ^ -2 = 1 / (x * x)."""
    x = _scalar(ctx, op)
    return R.divide(_one(ctx, x), R.multiply(x, x))


@converter("log2")
def log2(ctx, op):
    """log2(x) = log(x) / log(2)."""
    x = _scalar(ctx, op)
    return R.divide(R.log(x), relax.const(math.log(2.0), ctx.value_dtype(x)))


# -- binary ------------------------------------------------------------------------------------

_DIRECT_BINARY = {
    "add": (R.add, "scalar"), "sub": (R.subtract, "scalar"), "mul": (R.multiply, "scalar"),
    "div": (R.divide, "scalar"), "pow": (R.power, "scalar"),
    "lt": (R.less, "scalar"), "gt": (R.greater, "scalar"),
    "le": (R.less_equal, "scalar"), "ge": (R.greater_equal, "scalar"),
    "eq": (R.equal, "scalar"), "ne": (R.not_equal, "scalar"),
    "and": (R.logical_and, "logical"), "or": (R.logical_or, "logical"),
}


def binary_operands(ctx, op, dtype="scalar", names=("x", "y")):
    """The operands of a binary op, left-aligned-broadcast to a common rank."""
    return ctx.broadcast_operands(*(ctx.input(op, n, dtype) for n in names))


def _make_binary(name, fn, dtype):
    def convert(ctx, op):
        x, y = binary_operands(ctx, op, dtype)
        return fn(x, y)
    convert.__name__ = name
    convert.__doc__ = f"NNEF {name}(x, y) with left-aligned broadcasting."
    converter(name)(convert)


for _name, (_fn, _dt) in _DIRECT_BINARY.items():
    _make_binary(_name, _fn, _dt)


def nnef_min(x, y):
    """min(x, y) = select(x < y, x, y): on ties (and NaN) the result is y."""
    return R.where(R.less(x, y), x, y)


def nnef_max(x, y):
    """max(x, y) = select(x > y, x, y): on ties (and NaN) the result is y."""
    return R.where(R.greater(x, y), x, y)


@converter("min")
def min_(ctx, op):
    """NNEF min(x, y) = select(x < y, x, y)."""
    return nnef_min(*binary_operands(ctx, op))


@converter("max")
def max_(ctx, op):
    """NNEF max(x, y) = select(x > y, x, y)."""
    return nnef_max(*binary_operands(ctx, op))


@converter("select")
def select(ctx, op):
    """select(c, t, f) = c ? t : f, all three broadcast left-aligned."""
    dtype = op.dtype or ctx.result_dtype(op)
    c = ctx.input(op, "condition", "logical")
    t = ctx.input(op, "true_value", dtype)
    f = ctx.input(op, "false_value", dtype)
    c, t, f = ctx.broadcast_operands(c, t, f)
    return R.where(c, t, f)


def _scalar_bound(ctx, v, x_rank: int):
    """The float value of a clamp bound that is one number for every element, else None.

    A literal, or a one-element constant (NNEF-Tools writes relu6's 6.0 as a
    ``constant<scalar>(shape = [], value = [6.0])``) of rank <= the rank of x,
    so that broadcasting it does not change the result's shape.
    """
    import tvm
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        expr = ctx.operand(v)
    except Exception:
        return None
    if isinstance(expr, tvm.ir.expr.Constant):
        arr = expr.value.numpy()
        if arr.size == 1 and arr.ndim <= x_rank and arr.dtype.kind == "f":
            return float(arr.reshape(()))
    return None


@converter("clamp")
def clamp(ctx, op):
    """clamp(x, a, b) = max(min(x, b), a) with tensor bounds (a > b gives a).

    With literal bounds (relu6 is ``clamp(x, 0.0, 6.0)``) this is ``relax.clip``:
    one elementwise op that fuses as a plain epilogue; TVM's min/max lower to
    the same compare-and-select as NNEF's select form (NaN gives ``b``).
    """
    x = ctx.input(op, "x", "scalar")
    lo, hi = (_scalar_bound(ctx, op.inputs[n], ctx.rank(x)) for n in ("a", "b"))
    if lo is not None and hi is not None and str(ctx._type(x).dtype).startswith("float"):
        return R.clip(x, lo, max(lo, hi))
    x, a, b = ctx.broadcast_operands(*(ctx.input(op, n, "scalar") for n in ("x", "a", "b")))
    return nnef_max(ctx.emit(nnef_min(x, b)), a)
