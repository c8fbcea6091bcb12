"""Optional simulation of ``graph.quant`` (``from_nnef(..., fake_quantize=True)``).

NNEF attaches quantization to tensors (``Tensor.quantization``: the op name and
its arguments, from graph.quant or legacy .dat headers). The reader already
dequantizes variable data, so by default the frontend computes in real
arithmetic and ignores it. With ``fake_quantize=True`` every real-valued tensor
that carries quantization is passed through that fake-quantization operation
(§4.9.5) right where it is defined (inputs, variables, activations), which
simulates the quantized model's rounding in float arithmetic.

Tensors whose value is a compile-time constant (``variable`` data bound as a
constant) are fake-quantized here in numpy with the same §4.9.5 formulas
(:func:`fake_quantize_array`), so no TIR kernel has to be built only to fold
them (that made a 25-op int8 model take ~5x longer to compile).

With ``quantization='int8'`` (:mod:`nnef_tvm.frontend.int8`) the results of
integer conv/linear/matmul are already dequantized codes of their own grid;
fake-quantizing them again would be the identity, so they are left alone.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..errors import NNEFError
from ..reader.graph import Identifier, Operation
from . import registry

# tensor-typed parameters of each quantization op (the rest are attributes)
_TENSOR_PARAMS = {
    "min_max_linear_quantize": {"min": "scalar", "max": "scalar"},
    "linear_quantize": {"min": "scalar", "max": "scalar"},
    "zero_point_linear_quantize": {"zero_point": "integer", "scale": "scalar"},
    "logarithmic_quantize": {"max": "scalar"},
}


def _left_aligned(value, rank: int) -> np.ndarray:
    a = np.asarray(value)
    return a.reshape(a.shape + (1,) * max(0, rank - a.ndim))


def _nnef_round(x: np.ndarray) -> np.ndarray:
    return np.floor(x + x.dtype.type(0.5))


def fake_quantize_array(x: np.ndarray, quantization: dict) -> np.ndarray | None:
    """``x`` (a real constant) through its quantization op in numpy; None if not one of
    the four standard ops. Parameters broadcast left-aligned; round = floor(x + 0.5)."""
    op_name = quantization.get("op-name")
    x = np.asarray(x)
    dt, rank = x.dtype, x.ndim

    def arg(key):
        return _left_aligned(quantization[key], rank).astype(dt)
    try:
        if op_name in ("min_max_linear_quantize", "linear_quantize"):
            bits = int(quantization["bits"])
            r = 2 ** bits - 1
            if op_name == "min_max_linear_quantize" and quantization["signed"] \
                    and quantization["symmetric"]:
                r -= 1
            r = dt.type(r)
            lo, hi = arg("min"), arg("max")
            width = hi - lo
            q = _nnef_round((np.maximum(np.minimum(x, hi), lo) - lo) / width * r)
            return (q / r * width + lo).astype(dt)
        if op_name == "zero_point_linear_quantize":
            from .ops.quantization import zero_point_bounds
            lo, hi = zero_point_bounds(int(quantization["bits"]), quantization["signed"],
                                       quantization["symmetric"])
            z, scale = arg("zero_point"), arg("scale")
            with np.errstate(over="ignore"):     # 32-bit bounds are +-inf in float16
                q = np.clip(_nnef_round(x / scale) + z, dt.type(lo), dt.type(hi))
            return ((q - z) * scale).astype(dt)
        if op_name == "logarithmic_quantize":
            mx = arg("max")
            m = np.ceil(np.log(mx) / dt.type(0.6931471805599453))
            r = dt.type(2 ** int(quantization["bits"]) - 1)
            with np.errstate(divide="ignore"):
                lg = np.log(np.abs(x)) / dt.type(0.6931471805599453)
            e = _nnef_round(np.maximum(np.minimum(lg, m), m - r))
            return (np.sign(x) * np.power(dt.type(2.0), e)).astype(dt)
    except KeyError:
        return None
    return None


def fake_quantize(ctx, name: str, value: relax.Expr, quantization: dict, pos=None) -> relax.Expr:
    """``value`` passed through the quantization op described by ``quantization``."""
    op_name = quantization.get("op-name")
    state = ctx.__dict__.get("_int8_state")
    if state is not None and name in state.exact and state.exact[name].same_as(value):
        return value     # integer codes dequantized: already on this tensor's grid
    const = _constant_value(ctx, value)
    if const is not None and op_name in _TENSOR_PARAMS:
        folded = _fold_constant(name, const, quantization, pos)
        if folded is not None:
            return folded
    params = _TENSOR_PARAMS.get(op_name)
    fn = registry.lookup(op_name) if params is not None else None
    if fn is None:
        raise NNEFError(f"tensor '{name}': quantization operation '{op_name}' cannot be simulated "
                        f"(known: {', '.join(sorted(_TENSOR_PARAMS))})", pos)
    inputs: dict = {"x": value}
    attribs = {}
    for key, arg in quantization.items():
        if key == "op-name":
            continue
        if key in params:
            inputs[key] = ctx.const(np.asarray(arg), params[key], shape=np.shape(arg))
        else:
            attribs[key] = arg
    missing = [p for p in params if p not in inputs]
    if missing:
        raise NNEFError(f"tensor '{name}': quantization '{op_name}' lacks {', '.join(missing)}", pos)
    shape = ctx.shape(value)
    for key in params:
        pshape = ctx.shape(inputs[key])
        padded = tuple(pshape) + (1,) * (len(shape) - len(pshape))
        if len(pshape) > len(shape) or any(p not in (1, n) for p, n in zip(padded, shape)):
            raise NNEFError(f"tensor '{name}' of shape {list(shape)}: quantization argument "
                            f"'{key}' of shape {list(pshape)} does not broadcast to it "
                            f"(NNEF aligns shapes on the left, e.g. [1, C] per channel)", pos)
    op = Operation(op_name, inputs=inputs, outputs={"y": Identifier(name)}, attribs=attribs, pos=pos)
    return ctx.emit(fn(ctx, op))


def _constant_value(ctx, value, depth: int = 0):
    """numpy value of ``value`` if it is a constant or a layout op (permute_dims, reshape,
    expand_dims, squeeze) of one -- what NNEF-Tools emits for filters -- else None."""
    if isinstance(value, tvm.ir.expr.Constant):
        return value.value.numpy()
    if depth > 8 or not isinstance(value, relax.Var):
        return None
    try:
        bound = ctx.bb.lookup_binding(value)
    except Exception:  # pragma: no cover - not a dataflow variable of this builder
        return None
    if not isinstance(bound, relax.Call) or not bound.args:
        return None
    name = getattr(bound.op, "name", "")
    if name not in ("relax.permute_dims", "relax.reshape", "relax.expand_dims", "relax.squeeze"):
        return None
    src = _constant_value(ctx, bound.args[0], depth + 1)
    if src is None:
        return None
    if name == "relax.permute_dims":
        axes = bound.attrs.axes
        return np.transpose(src, None if axes is None else [int(a) for a in axes])
    return src.reshape(ctx.shape(value))


def _fold_constant(name, data, quantization: dict, pos):
    for key in _TENSOR_PARAMS[quantization["op-name"]]:
        pshape = np.shape(quantization.get(key, 0))
        padded = tuple(pshape) + (1,) * (data.ndim - len(pshape))
        if len(pshape) > data.ndim or any(p not in (1, n) for p, n in zip(padded, data.shape)):
            return None          # let the Relax path report the shape error
    out = fake_quantize_array(data, quantization)
    return None if out is None else relax.const(out)
