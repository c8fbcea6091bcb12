"""Reductions (NNEF §4.4) and ``moments`` (§4.9.6).

Every reduction keeps the rank (reduced axes become extent 1). ``axes = []``
reduces nothing (identity; argmax/argmin then give index 0). ``argmax_reduce``
/ ``argmin_reduce`` over several axes index the row-major flattening of the
reduced sub-tensor (the spec leaves it open; this is what nnef_tools and the
C++ runtime do for the cases they support); ties pick the first occurrence.
"""
from __future__ import annotations

from tvm import relax

from ..context import norm_axes
from ..registry import converter

R = relax.op


def _input_axes(ctx, op, dtype="scalar"):
    x = ctx.input(op, "input", dtype)
    return x, sorted(set(norm_axes(op.attribs["axes"], ctx.rank(x))))


@converter("sum_reduce")
def sum_reduce(ctx, op):
    """sum_reduce(input, axes, normalize): sum over axes; mean when normalize."""
    x, axes = _input_axes(ctx, op)
    if not axes:
        return x
    fn = R.mean if op.attribs.get("normalize", False) else R.sum
    return fn(x, axis=axes, keepdims=True)


@converter("mean_reduce")
def mean_reduce(ctx, op):
    """mean_reduce(input, axes) = sum_reduce(input, axes, normalize = true)."""
    x, axes = _input_axes(ctx, op)
    return R.mean(x, axis=axes, keepdims=True) if axes else x


@converter("max_reduce")
def max_reduce(ctx, op):
    """max_reduce(input, axes)."""
    x, axes = _input_axes(ctx, op)
    return R.max(x, axis=axes, keepdims=True) if axes else x


@converter("min_reduce")
def min_reduce(ctx, op):
    """min_reduce(input, axes)."""
    x, axes = _input_axes(ctx, op)
    return R.min(x, axis=axes, keepdims=True) if axes else x


def _logical_reduce(ctx, op, fn):
    x, axes = _input_axes(ctx, op, "logical")
    if not axes:
        return x
    as_int = R.astype(x, "int8")
    return R.astype(fn(as_int, axis=axes, keepdims=True), "bool")


@converter("any_reduce")
def any_reduce(ctx, op):
    """any_reduce(input: tensor<logical>, axes): logical or over axes (max of 0/1)."""
    return _logical_reduce(ctx, op, R.max)


@converter("all_reduce")
def all_reduce(ctx, op):
    """all_reduce(input: tensor<logical>, axes): logical and over axes (min of 0/1)."""
    return _logical_reduce(ctx, op, R.min)


def _arg_reduce(ctx, op, fn):
    x, axes = _input_axes(ctx, op)
    out_dtype = ctx.result_dtype(op)
    shape = ctx.shape(x)
    if not axes:
        return R.zeros(shape, out_dtype)
    if len(axes) == 1:
        idx = fn(x, axis=axes[0], keepdims=True)
    else:
        # move the reduced axes (in order) to the end, flatten them row-major
        kept = [a for a in range(len(shape)) if a not in axes]
        moved = ctx.emit(R.permute_dims(x, kept + axes))
        volume = 1
        for a in axes:
            volume *= shape[a]
        flat = ctx.emit(R.reshape(moved, [shape[a] for a in kept] + [volume]))
        idx = ctx.emit(fn(flat, axis=len(kept), keepdims=False))
        idx = R.reshape(idx, [1 if a in axes else shape[a] for a in range(len(shape))])
    return R.astype(idx, out_dtype)


@converter("argmax_reduce")
def argmax_reduce(ctx, op):
    """argmax_reduce(input, axes) -> tensor<integer>; first occurrence on ties."""
    return _arg_reduce(ctx, op, R.argmax)


@converter("argmin_reduce")
def argmin_reduce(ctx, op):
    """argmin_reduce(input, axes) -> tensor<integer>; first occurrence on ties."""
    return _arg_reduce(ctx, op, R.argmin)


@converter("moments")
def moments(ctx, op):
    """moments(input, axes) -> (mean, variance): population variance mean((x - mean)^2)."""
    x, axes = _input_axes(ctx, op)
    if not axes:
        return x, R.zeros(ctx.shape(x), ctx.value_dtype(x))
    mean = ctx.emit(R.mean(x, axis=axes, keepdims=True))
    d = ctx.emit(R.subtract(x, mean))
    return mean, R.mean(R.multiply(d, d), axis=axes, keepdims=True)
