"""Optional simulation of ``graph.quant`` (``from_nnef(..., fake_quantize=True)``).

NNEF attaches quantization to tensors (``Tensor.quantization``: the op name and
its arguments, from graph.quant or legacy .dat headers). The reader already
dequantizes variable data, so by default the frontend computes in real
arithmetic and ignores it. With ``fake_quantize=True`` every real-valued tensor
that carries quantization is passed through that fake-quantization operation
(§4.9.5) right where it is defined (inputs, variables, activations), which
simulates the quantized model's rounding in float arithmetic.
"""
from __future__ import annotations

import numpy as np
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


def fake_quantize(ctx, name: str, value: relax.Expr, quantization: dict, pos=None) -> relax.Expr:
    """``value`` passed through the quantization op described by ``quantization``."""
    op_name = quantization.get("op-name")
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
