"""Shapes of reductions (spec §4.4) and contractions (``matmul`` §4.7, ``linear`` §4.9.2).

Reductions keep the rank: every axis in ``axes`` becomes 1 (keepdims). ``axes``
must be unique and in ``[0, rank)``; ``axes = []`` is the identity. ``moments``
gives two such shapes (mean and variance).

``matmul`` takes operands of equal rank >= 2: the last two axes are the
matrices (``transposeA``/``transposeB`` swap them), the leading axes are batch
axes broadcast LEFT-aligned. ``linear`` is ``matmul(input, filter,
transposeB = true) + bias`` on ``input [N, C_in]``, ``filter [C_out, C_in]``;
the bias must broadcast to ``[N, C_out]`` (normally ``[1, C_out]``).
"""
from __future__ import annotations

from .shapes_common import ShapeMismatch, axes_list, broadcast, broadcast_to, fmt, need_rank


def reduce_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    axes = set(axes_list(op, "axes", len(x)))
    return [tuple(1 if i in axes else e for i, e in enumerate(x))]


def moments_shape(op, shape_of):
    shape = reduce_shape(op, shape_of)[0]
    return [shape, shape]


def matmul_shape(op, shape_of):
    a = shape_of(op.inputs["A"])
    b = shape_of(op.inputs["B"])
    ta = bool(op.attribs.get("transposeA", False))
    tb = bool(op.attribs.get("transposeB", False))
    need_rank(a, 2, "A")
    need_rank(b, 2, "B")
    if len(a) != len(b):
        raise ShapeMismatch(f"A {fmt(a)} and B {fmt(b)} must have the same rank "
                            f"(found {len(a)} and {len(b)})")
    m, ka = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    kb, n = (b[-1], b[-2]) if tb else (b[-2], b[-1])
    if ka != kb:
        sa = "A[-2] (transposed)" if ta else "A[-1]"
        sb = "B[-1] (transposed)" if tb else "B[-2]"
        raise ShapeMismatch(f"inner extents differ: {sa} = {ka} but {sb} = {kb} "
                            f"(A {fmt(a)}, B {fmt(b)})")
    batch = broadcast(a[:-2], b[:-2], "batch axes of A and B")
    return [batch + (m, n)]


def linear_shape(op, shape_of):
    x = shape_of(op.inputs["input"])
    w = shape_of(op.inputs["filter"])
    need_rank(x, 2, "input", 2)
    need_rank(w, 2, "filter", 2)
    if x[1] != w[1]:
        raise ShapeMismatch(f"input has {x[1]} channels but filter {fmt(w)} expects {w[1]} "
                            f"(filter is [C_out, C_in])")
    out = (x[0], w[0])
    broadcast_to(shape_of(op.inputs.get("bias", 0.0)), out, "bias", "output")
    return [out]


SHAPES = {name: reduce_shape for name in (
    "sum_reduce", "max_reduce", "min_reduce", "mean_reduce", "argmax_reduce", "argmin_reduce",
    "any_reduce", "all_reduce")}
SHAPES.update({
    "moments": moments_shape,
    "matmul": matmul_shape,
    "linear": linear_shape,
})
