"""Tensor introduction and state (NNEF §4.1, §4.8): constant, variable, update.

``external`` tensors are created by the driver (graph inputs become ``main``
parameters, in graph order); the ``external`` converter just returns that parameter.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from ..convert import variable_value
from ..registry import converter


@converter("external")
def external(ctx, op):
    """``external<T>(shape)``: a graph input, i.e. the ``main`` parameter of that name."""
    return ctx.value(op.outputs["output"])


@converter("constant")
def constant(ctx, op):
    """``constant<T>(shape, value)``: ``value`` has volume items (row-major) or one (fill)."""
    shape = [int(s) for s in op.attribs["shape"]]
    dtype = ctx.result_dtype(op)
    values = np.asarray(op.attribs["value"], dtype=dtype).reshape(-1)
    volume = int(np.prod(shape)) if shape else 1
    if values.size == 1:
        data = np.full(shape, values[0], dtype=dtype)
    elif values.size == volume:
        data = values.reshape(shape)
    else:
        raise ctx.error(op, f"'value' has {values.size} items; expected 1 or {volume} "
                            f"(the volume of shape {shape})")
    return relax.const(data, dtype)


@converter("variable")
def variable(ctx, op):
    """``variable<T>(shape, label)``: bound constant, or a ``main`` parameter (keep_params)."""
    return variable_value(ctx, op)


@converter("update")
def update(ctx, op):
    """``update(variable, value)``: the variable's next value (= ``value``).

    Readers of the variable in the same execution see the old value, so the
    result is simply ``value``; the driver appends it to ``main``'s outputs and
    records which variable it updates (function attribute ``nnef_updates``).
    """
    var = op.inputs["variable"]
    ctx.updates.append((str(var), str(op.outputs["result"])))
    return ctx.input(op, "value")
