"""Pooling compounds (NNEF §4.9.3): max_pool, avg_pool, rms_pool, max_pool_with_index.

Converted directly (not through their fragment bodies) so that they map onto Relax pools:
* ``avg_pool = box(normalize = true)``: 'constant' counts the zero padding
  (count_include_pad), 'ignore' divides by the number of real cells;
* ``max_pool``: 'constant' (the NNEF default) lets zero padding compete in the max,
  'ignore' excludes it (= the native Relax max-pool padding);
* ``rms_pool = sqrt(avg_pool(x^2))``;
* ``max_pool_with_index = (max_pool(x), argmax_pool(x))`` — the body's
  ``sample(x, argmax_pool(x))`` is by definition the window maximum, so the value comes
  from the native pool and only the index needs the argmax kernel.
All window parameters are full rank; see :func:`nnef_tvm.frontend.ops.window.window_reduce`.
"""
from __future__ import annotations

from tvm import relax

from ..registry import converter
from .window import _window_args, argmax_indices, window_reduce


@converter("max_pool")
def max_pool(ctx, op):
    return window_reduce(ctx, op, ctx.input(op, "input"), "max", **_window_args(op))


@converter("avg_pool")
def avg_pool(ctx, op):
    return window_reduce(ctx, op, ctx.input(op, "input"), "avg", **_window_args(op))


@converter("rms_pool")
def rms_pool(ctx, op):
    x = ctx.input(op, "input")
    sq = ctx.emit(relax.op.multiply(x, x))
    return ctx.emit(relax.op.sqrt(window_reduce(ctx, op, sq, "avg", **_window_args(op))))


@converter("max_pool_with_index")
def max_pool_with_index(ctx, op):
    x = ctx.input(op, "input")
    a = _window_args(op)
    value = window_reduce(ctx, op, x, "max", **a)
    index = argmax_indices(ctx, op, x, a)
    return value, index
