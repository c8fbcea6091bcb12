"""Shapes of the operations that introduce, update or replicate whole tensors.

``external``/``constant``/``variable`` take their shape from the ``shape``
attribute (spec §4.1): every extent must be positive (1.0 removed the 0 = unknown
extent that the Khronos parser still accepts, SPEC-NOTES E8), and a constant's
``value`` must hold either one item (broadcast fill) or exactly ``volume`` items.
``update`` (§4.8) requires the new value to have the variable's shape.
``copy_n`` gives ``times`` copies of its input shape; ``add_n`` (§4.9.6) sums
tensors of one shape (literals, being singletons, may join them).
"""
from __future__ import annotations

import numpy as np

from .shapes_common import ShapeMismatch, attr, fmt, int_list, int_value, volume


def _declared_shape(op) -> tuple[int, ...]:
    shape = int_list(op, "shape")
    for i, s in enumerate(shape):
        if s <= 0:
            raise ShapeMismatch(f"'shape' extents must be positive, found {s} at axis {i} of {fmt(shape)}")
    return tuple(shape)


def external_shape(op, shape_of):
    return [_declared_shape(op)]


def variable_shape(op, shape_of):
    return [_declared_shape(op)]


def constant_shape(op, shape_of):
    shape = _declared_shape(op)
    value = attr(op, "value")
    if isinstance(value, (list, tuple)):
        count = len(value)
    elif isinstance(value, np.ndarray):
        count = value.size
    elif isinstance(value, (bool, int, float)):
        count = 1
    else:
        raise ShapeMismatch(f"'value' must be an array of literals, found {value!r}")
    n = volume(shape)
    if count not in (1, n):
        raise ShapeMismatch(f"'value' has {count} items but shape {fmt(shape)} needs {n} "
                            f"(or a single item to fill it)")
    return [shape]


def update_shape(op, shape_of):
    var = shape_of(op.inputs["variable"])
    value = shape_of(op.inputs["value"])
    if var != value:
        raise ShapeMismatch(f"value shape {fmt(value)} differs from variable shape {fmt(var)}")
    return [var]


def copy_n_shape(op, shape_of):
    times = int_value(op, "times")
    if times < 1:
        raise ShapeMismatch(f"'times' must be positive, found {times}")
    return [[shape_of(op.inputs["x"])] * times]


def add_n_shape(op, shape_of):
    values = op.inputs["x"]
    shapes = shape_of(values)
    if not isinstance(shapes, list) or not shapes:
        raise ShapeMismatch("'x' must be a non-empty array of tensors")
    tensor_shapes = [(i, s) for i, (v, s) in enumerate(zip(values, shapes)) if not _is_literal(v)]
    if not tensor_shapes:
        return [()]
    first_index, first = tensor_shapes[0]
    for i, s in tensor_shapes[1:]:
        if s != first:
            raise ShapeMismatch(f"all operands must have the same shape: x[{first_index}] is "
                                f"{fmt(first)} but x[{i}] is {fmt(s)}")
    return [first]


def _is_literal(value) -> bool:
    return isinstance(value, (bool, int, float))


SHAPES = {
    "external": external_shape,
    "variable": variable_shape,
    "constant": constant_shape,
    "update": update_shape,
    "copy_n": copy_n_shape,
    "add_n": add_n_shape,
}
