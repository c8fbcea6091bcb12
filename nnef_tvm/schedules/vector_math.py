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

exp and sigmoid are written here as one stage each whose intermediates are
``Let``-bound (see :func:`_bind`), so a SiLU epilogue reads the convolution's
value once and merges into its write-back (EfficientNet-B0 whole model 0.74x
at 2 threads, 0.75x at 1, paired A/B); tanh and erf stay TOPI's stages.

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
EXP_CLAMP = 88.3762626647949  # the polynomial's argument range: 2^n stays a normal float32
LOG2E = 1.44269504088896341
LN2 = 0.693147180559945
# exp(r) ~ 1 + r + r^2 * P(r) on |r| <= ln2 / 2: Cephes' expf coefficients (highest first),
# the same polynomial as TVM's fast_exp (3.1e-7 relative, see the module docstring)
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
            1.6666665459e-1, 5.0000001201e-1)


def _f32(v):
    from tvm import tirx
    return tirx.const(v, "float32")


def _bind(name: str, value, body_of: Callable):
    """``let name = value in body_of(name)``: the value is computed (and read) once.

    Why a ``Let`` and not a separate stage: every intermediate of the
    polynomial is used several times. As separate TE stages (TOPI's
    ``fast_exp`` reads its argument 20 times) the argument stage is too big to
    inline into the epilogue (:func:`.cpu_common._cheap_to_inline`) and stays a
    full extra pass over the tensor, and the whole epilogue then cannot merge
    into a convolution's write-back: an EfficientNet expansion's SiLU ran as
    three passes over its output. Bound by ``Let``, the expression reads its
    input once and inlines like ``relu``.
    """
    from tvm import tirx
    var = tirx.Var(name, "float32")    # every bound value here is float32
    return tirx.Let(var, value, body_of(var))


def exp_expr(x):
    """exp(x) of a float32 PrimExpr, x below :data:`EXP_CLAMP` (above: exp(EXP_CLAMP)).

    Range reduction ``exp(x) = 2^n * exp(r)``, ``n = floor(x / ln2 + 1/2)``,
    ``r = x - n ln2``; ``2^n`` is built in the exponent bits. Below -87.3 the
    result is 0 or denormal-small (``n = -127`` makes the exponent field 0).
    """
    from tvm import tirx

    def from_clamped(c):
        def from_n(n):
            def from_r(r):
                p = _f32(EXP_POLY[0])
                for coef in EXP_POLY[1:]:
                    p = p * r + _f32(coef)
                two_n = tirx.reinterpret(
                    "float32", (tirx.Cast("int32", n) + tirx.const(127, "int32"))
                    << tirx.const(23, "int32"))
                return two_n * (p * r * r + r + _f32(1.0))
            return _bind("exp_r", c - n * _f32(LN2), from_r)
        return _bind("exp_n", tirx.floor(c * _f32(LOG2E) + _f32(0.5)), from_n)
    clamped = tirx.max(tirx.min(x, _f32(EXP_CLAMP)), _f32(-EXP_CLAMP))
    return _bind("exp_c", clamped, from_clamped)


def _exp_te(x):
    """exp(x) with IEEE overflow, one stage reading ``x`` once.

    Above 88 it is ``exp(x / 2) ** 2`` (halving is exact in float32, squaring
    doubles the relative error: 6e-7), above ln(FLT_MAX) the result is inf, as
    float32 ``expf`` gives.
    """
    from tvm import te, tirx

    def value(v):
        big = v > _f32(88.0)

        def finish(e):
            return tirx.Select(v > _f32(EXP_OVERFLOW), _f32(float("inf")),
                               tirx.Select(big, e * e, e))
        return _bind("exp_e", exp_expr(tirx.Select(big, v * _f32(0.5), v)), finish)
    return te.compute(x.shape, lambda *i: _bind("exp_x", x(*i), value), name="exp")


def _sigmoid_te(x):
    """1 / (1 + exp(-x)) with the polynomial exp, one stage reading ``x`` once.

    The stage is named ``logistic`` (the kernel keeps the name ``sigmoid``):
    tests recognise an inlined gate by ``sigmoid`` in an expression, which a
    materialised buffer named after the stage must not look like.
    """
    from tvm import te
    return te.compute(x.shape, lambda *i: _bind(
        "sigmoid_x", x(*i), lambda v: _f32(1.0) / (_f32(1.0) + exp_expr(-v))), name="logistic")


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
