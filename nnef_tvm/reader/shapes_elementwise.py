"""Shapes of element-wise operations, activations, normalizations and quantizers.

* Unary ops, ``cast`` and the scalar-parameter activations keep the input shape.
* Binary ops, ``select`` and ``clamp`` broadcast all operands LEFT-aligned
  (SPEC-NOTES §7.1): ``[1,C] + [N,C,H,W] -> [N,C,H,W]``; a literal operand is a
  rank-0 singleton and broadcasts everywhere.
* ``prelu`` alpha, batch-normalization parameters and quantization parameters
  must broadcast *to* the input; the result keeps the input shape (§8).
* ``softmax``/``l1``/``l2`` normalization validate their ``axes``; the local
  normalizations their full-rank window ``size`` (they use automatic padding and
  stride 1, so the window never changes the shape).
"""
from __future__ import annotations

from .shapes_common import (ShapeMismatch, axes_list, broadcast, broadcast_to, int_list, int_value,
                            same_shape)

UNARY = (
    "exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan",
    "asinh", "acosh", "atanh", "abs", "sign", "rcp", "neg", "floor", "ceil", "round",
    "sqr", "sqrt", "rsqr", "rsqrt", "log2", "not",
    "relu", "sigmoid", "softplus", "elu", "selu", "gelu", "silu", "leaky_relu",
)
BINARY = ("add", "sub", "mul", "div", "pow", "lt", "gt", "le", "ge", "eq", "ne",
          "and", "or", "min", "max")


def unary_shape(op, shape_of):
    return same_shape(op, "x", shape_of)


def copy_shape(op, shape_of):
    return same_shape(op, "x", shape_of)


def cast_shape(op, shape_of):
    return same_shape(op, "input", shape_of)


def binary_shape(op, shape_of):
    return [broadcast(shape_of(op.inputs["x"]), shape_of(op.inputs["y"]))]


def select_shape(op, shape_of):
    cond = shape_of(op.inputs["condition"])
    t = shape_of(op.inputs["true_value"])
    f = shape_of(op.inputs["false_value"])
    values = broadcast(t, f, "true_value and false_value")
    return [broadcast(cond, values, "condition and values")]


def clamp_shape(op, shape_of):
    x = shape_of(op.inputs["x"])
    a = shape_of(op.inputs["a"])
    b = shape_of(op.inputs["b"])
    return [broadcast(broadcast(x, a, "x and a"), b, "(x, a) and b")]


def prelu_shape(op, shape_of):
    x = shape_of(op.inputs["x"])
    broadcast_to(shape_of(op.inputs["alpha"]), x, "alpha", "x")
    return [x]


def softmax_shape(op, shape_of):
    x = shape_of(op.inputs["x"])
    axes_list(op, "axes", len(x), default=[1])
    return [x]


def axes_normalization_shape(op, shape_of):
    """l1_normalization / l2_normalization: reduce over ``axes``, keep the shape."""
    x = shape_of(op.inputs["input"])
    axes_list(op, "axes", len(x))
    return [x]


def window_normalization_shape(op, shape_of):
    """local_*_normalization: a centred box of full-rank ``size`` (automatic padding)."""
    x = shape_of(op.inputs["input"])
    int_list(op, "size", length=len(x), minimum=1,
             length_note="one per input axis, batch and channel included")
    return [x]


def batch_normalization_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    for name in ("mean", "variance", "offset", "scale"):
        broadcast_to(shape_of(op.inputs[name]), x, name)
    return [x]


def _bits(op):
    bits = int_value(op, "bits")
    if bits < 1:
        raise ShapeMismatch(f"'bits' must be positive, found {bits}")


def _quantize(*params):
    def shape_fn(op, shape_of):
        x = shape_of(op.inputs["x"])
        for name in params:
            broadcast_to(shape_of(op.inputs[name]), x, name, "x")
        _bits(op)
        return [x]
    shape_fn.__name__ = f"quantize_shape_{'_'.join(params)}"
    shape_fn.__doc__ = f"Fake quantizer: {', '.join(params)} must broadcast to x; result is x's shape."
    return shape_fn


SHAPES = {name: unary_shape for name in UNARY}
SHAPES.update({name: binary_shape for name in BINARY})
SHAPES.update({
    "copy": copy_shape,
    "cast": cast_shape,
    "select": select_shape,
    "clamp": clamp_shape,
    "prelu": prelu_shape,
    "softmax": softmax_shape,
    "l1_normalization": axes_normalization_shape,
    "l2_normalization": axes_normalization_shape,
    "local_response_normalization": window_normalization_shape,
    "local_mean_normalization": window_normalization_shape,
    "local_variance_normalization": window_normalization_shape,
    "local_contrast_normalization": window_normalization_shape,
    "batch_normalization": batch_normalization_shape,
    "min_max_linear_quantize": _quantize("min", "max"),
    "linear_quantize": _quantize("min", "max"),
    "zero_point_linear_quantize": _quantize("zero_point", "scale"),
    "logarithmic_quantize": _quantize("max"),
})
