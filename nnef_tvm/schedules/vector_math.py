"""exp / sigmoid / tanh / erf / softmax lowered to arithmetic that LLVM vectorises (CPU targets).

Why: TVM legalizes ``exp`` (and ``sigmoid = 1 / (1 + exp(-x))``, ``tanh``,
the exponentials inside ``softmax``) to LLVM's ``llvm.exp`` intrinsic. With no
vector math library in the LLVM that TVM links, a 16-lane ``exp`` is split
into 16 scalar ``expf`` calls: a SiLU epilogue (``x * sigmoid(x)``, every
EfficientNet block) costs more than the convolution it follows, and an LSTM
cell spends its time in ``expf``. TOPI has polynomial forms of these functions
built from plain multiply-adds and bit operations (``fast_exp``: range
reduction ``exp(x) = 2^n * exp(r)`` and a degree-7 polynomial; ``fast_tanh``,
``fast_erf``: rational approximations), which vectorise like any arithmetic.

Accuracy (measured against float64 over [-100, 100] and N(0, 4) samples): exp
within 3.1e-7 relative for x >= -87.3 (below that, where float32 ``exp`` is
denormal, it returns 0: absolute error < 1.2e-38; above 88.72 it is inf, as
``expf``); sigmoid within 1.3e-7
relative, 8.9e-8 absolute; tanh within 2.9e-7 relative (TVM's default tanh
lowering is 2.2e-4 relative near 0); erf within 3.3e-7; softmax as TVM's own
lowering (2e-6 relative, the rounding of the normalising sum). That is a few float32
ulps, the same order as libm's ``expf``.

Only float32 operands are rewritten; other dtypes keep TVM's registered
legalization. :func:`legalize_map` is passed to ``LegalizeOps`` as its
``customize_legalize_map`` for LLVM targets (see
:mod:`nnef_tvm.targets.pipeline`). NNEF semantics are unchanged: ``sigmoid``,
``gelu`` (``x * sigmoid(1.702 x)``), ``silu``, ``softmax`` and ``tanh`` keep their
definitions, only the float32 evaluation of the transcendental differs.
"""
from __future__ import annotations

from typing import Callable


def _float32(call) -> bool:
    ty = getattr(call.args[0], "ty", None)       # TVM 0.27: Expr.ty (was struct_info)
    return str(getattr(ty, "dtype", "")) == "float32"


def _fallback(op_name: str, bb, call):
    """TVM's own legalization of ``call`` (non-float32 operands)."""
    import tvm
    return tvm.ir.Op.get(op_name).get_attr("FLegalize")(bb, call)


def _unary(op_name: str, te_fn: Callable) -> Callable:
    def legalize(bb, call):
        if not _float32(call):
            return _fallback(op_name, bb, call)
        return bb.call_te(te_fn, call.args[0], primfunc_name_hint=op_name.split(".")[-1])
    return legalize


EXP_OVERFLOW = 88.72284       # ln(FLT_MAX): float32 exp is inf above


def _exp_te(x):
    """exp(x) with IEEE overflow: ``fast_exp`` clamps its argument at 88.376.

    Above 88 it is ``exp(x / 2) ** 2`` (halving is exact in float32, squaring
    doubles the relative error: 6e-7), above ln(FLT_MAX) the result is inf, as
    float32 ``expf`` gives.
    """
    from tvm import te, tirx, topi

    def f32(v):
        return tirx.const(v, "float32")
    shifted = te.compute(x.shape, lambda *i: tirx.Select(x(*i) > f32(88.0), x(*i) * f32(0.5),
                                                           x(*i)), name="exp_arg")
    e = topi.fast_exp(shifted)
    return te.compute(x.shape, lambda *i: tirx.Select(
        x(*i) > f32(EXP_OVERFLOW), f32(float("inf")),
        tirx.Select(x(*i) > f32(88.0), e(*i) * e(*i), e(*i))), name="exp")


def _sigmoid_te(x):
    """1 / (1 + exp(-x)) with the polynomial exp."""
    from tvm import topi
    return topi.divide(1.0, topi.add(1.0, topi.fast_exp(topi.negative(x))))


def _softmax(bb, call):
    from tvm import topi
    if not _float32(call):
        return _fallback("relax.nn.softmax", bb, call)
    return bb.call_te(topi.nn.fast_softmax, call.args[0], int(call.attrs.axis),
                      primfunc_name_hint="softmax")


def legalize_map() -> dict:
    """{Relax op name: legalization} for ``LegalizeOps(customize_legalize_map=...)``."""
    from tvm import topi
    return {
        "relax.exp": _unary("relax.exp", _exp_te),
        "relax.sigmoid": _unary("relax.sigmoid", _sigmoid_te),
        "relax.tanh": _unary("relax.tanh", topi.fast_tanh),
        "relax.erf": _unary("relax.erf", topi.fast_erf),
        "relax.nn.softmax": _softmax,
    }
