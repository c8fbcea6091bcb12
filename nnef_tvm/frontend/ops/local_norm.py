"""Local (windowed) normalizations (NNEF §4.9.4), converted from their compound bodies.

All use ``box(..., size, normalize = true)`` with the defaults of ``box``: border
'constant' and automatic padding, so at the edges the mean still divides by the full
window volume (the ONNX/Caffe LRN convention ``alpha/n * sum``). ``size`` is full rank;
the cross-channel window ``[1, n, 1, 1]`` of LRN is pooled as a 2-D pool over
``[N, 1, C, H*W]`` (see :func:`~nnef_tvm.frontend.ops.window.window_reduce`).

* local_response_normalization = ``x / (bias + alpha * box_mean(x^2))^beta``
* local_mean_normalization = ``x - box_mean(x)``
* local_variance_normalization = ``x / max(sqrt(box_mean(x^2)) + bias, epsilon)``
* local_contrast_normalization = variance normalization of the mean-normalized input
"""
from __future__ import annotations

from tvm import relax

from ..registry import converter
from .window import window_reduce

R = relax.op


def _mean(ctx, op, x):
    return window_reduce(ctx, op, x, "avg", [int(v) for v in op.attribs["size"]])


def _c(ctx, x, value):
    return relax.const(float(value), ctx.value_dtype(x))


def _mean_normalized(ctx, op, x):
    return ctx.emit(R.subtract(x, _mean(ctx, op, x)))


def _variance_normalized(ctx, op, x):
    sq = ctx.emit(R.multiply(x, x))
    sigma = ctx.emit(R.sqrt(_mean(ctx, op, sq)))
    denom = ctx.emit(R.maximum(R.add(sigma, _c(ctx, x, op.attribs.get("bias", 0.0))),
                               _c(ctx, x, op.attribs.get("epsilon", 0.0))))
    return ctx.emit(R.divide(x, denom))


@converter("local_response_normalization")
def local_response_normalization(ctx, op):
    x = ctx.input(op, "input")
    a = op.attribs
    sq = ctx.emit(R.multiply(x, x))
    sigma = ctx.emit(R.add(_c(ctx, x, a.get("bias", 1.0)),
                           R.multiply(_c(ctx, x, a.get("alpha", 1.0)), _mean(ctx, op, sq))))
    return ctx.emit(R.divide(x, R.power(sigma, _c(ctx, x, a.get("beta", 0.5)))))


@converter("local_mean_normalization")
def local_mean_normalization(ctx, op):
    return _mean_normalized(ctx, op, ctx.input(op, "input"))


@converter("local_variance_normalization")
def local_variance_normalization(ctx, op):
    return _variance_normalized(ctx, op, ctx.input(op, "input"))


@converter("local_contrast_normalization")
def local_contrast_normalization(ctx, op):
    return _variance_normalized(ctx, op, _mean_normalized(ctx, op, ctx.input(op, "input")))
