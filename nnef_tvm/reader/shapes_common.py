"""Building blocks shared by the shape functions of every operation family.

A shape function has the signature ``fn(op, shape_of) -> list`` (the same one
consumers use for custom operations): ``shape_of(value)`` gives the shape of an
operand (a tuple of ints; ``()`` for a literal, which NNEF treats as a singleton
rank-0 tensor; a list of tuples for a tensor array) and the result holds one
shape per entry of ``op.outputs`` (a list of shapes for an array result).

Problems are raised as :class:`ShapeMismatch` carrying only the explanation;
the driver in :mod:`.shapes` prefixes the operation name and the source
position and turns it into an :class:`~nnef_tvm.errors.NNEFError`. Attribute
values come from user text, so every helper here checks lengths, ranges and
types before indexing: a bad attribute must end in a message, never in an
``IndexError``.

Broadcasting is NNEF's LEFT-aligned rule (spec §2.2 / SPEC-NOTES §7.1): a tensor
is conceptually infinite with trailing unit extents, so shapes are compared from
axis 0 and the shorter one is padded with 1s at the end.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Shape = tuple[int, ...]
ShapeOf = Callable[[Any], Any]


class ShapeMismatch(Exception):
    """A shape rule of the operation is violated; the message says which and how."""


def fmt(shape: Sequence[int]) -> str:
    """``[2,3]``: the compact spelling used in every message."""
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def volume(shape: Sequence[int]) -> int:
    result = 1
    for s in shape:
        result *= s
    return result


def padded(shape: Sequence[int], rank: int) -> Shape:
    """``shape`` with trailing unit extents up to ``rank`` (the implicit NNEF tail)."""
    if rank == len(shape) and type(shape) is tuple:
        return shape
    return tuple(shape) + (1,) * (rank - len(shape))


# ---------------------------------------------------------------------------
# broadcasting

def broadcast(a: Shape, b: Shape, what: str = "") -> Shape:
    """Left-aligned broadcast of two shapes; result rank is the larger rank."""
    if a == b and type(a) is tuple:     # the common case: nothing to broadcast
        return a
    rank = max(len(a), len(b))
    pa, pb = padded(a, rank), padded(b, rank)
    out = []
    for axis, (x, y) in enumerate(zip(pa, pb)):
        if x != y and x != 1 and y != 1:
            prefix = f"{what}: " if what else ""
            raise ShapeMismatch(
                f"{prefix}cannot broadcast {fmt(a)} with {fmt(b)} (left-aligned): "
                f"extents {x} and {y} differ at axis {axis}")
        out.append(y if x == 1 else x)
    return tuple(out)


def broadcast_to(param: Shape, target: Shape, param_name: str, target_name: str = "input") -> None:
    """Check that ``param`` broadcasts *to* ``target`` without changing it.

    Used where the result keeps the shape of one operand (prelu alpha, batch-norm
    and quantization parameters, conv/linear bias): every extent of ``param``
    must equal the target's or be 1, and axes past the target's rank must be 1.
    """
    rank = max(len(param), len(target))
    pp, pt = padded(param, rank), padded(target, rank)
    for axis, (p, t) in enumerate(zip(pp, pt)):
        if p != t and p != 1:
            allowed = "1" if t == 1 else f"{t} or 1"
            raise ShapeMismatch(
                f"{param_name} shape {fmt(param)} cannot be broadcast to {target_name} shape "
                f"{fmt(target)} (left-aligned): extent {p} at axis {axis} must be {allowed}")


# ---------------------------------------------------------------------------
# attribute access and validation

def attr(op, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of ``op`` (defaults are normally filled by the checker)."""
    attribs = op.attribs
    if name in attribs:
        return attribs[name]
    if default is None:
        raise ShapeMismatch(f"missing attribute '{name}'")
    return default


def _is_int(v: Any) -> bool:
    return type(v) is int or (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)))


def _all_ints(v) -> bool:
    """Every item is an integer (``_is_int``); the exact-``int`` test first, as that is the usual case."""
    for x in v:
        if type(x) is not int and not _is_int(x):
            return False
    return True


def int_value(op, name: str, default: Any = None) -> int:
    v = attr(op, name, default)
    if not _is_int(v):
        raise ShapeMismatch(f"'{name}' must be an integer, found {v!r}")
    return int(v)


def int_list(op, name: str, default: Any = None, *, length: int | None = None,
             allow_empty: bool = False, minimum: int | None = None,
             length_note: str = "") -> list[int]:
    """An ``integer[]`` attribute, optionally of a fixed length and bounded below.

    ``allow_empty``: ``[]`` is accepted whatever ``length`` says (``stride = []``).
    """
    v = attr(op, name, default)
    if not isinstance(v, (list, tuple)) or not _all_ints(v):
        raise ShapeMismatch(f"'{name}' must be an array of integers, found {v!r}")
    v = [x if type(x) is int else int(x) for x in v]
    if allow_empty and not v:
        return v
    if length is not None and len(v) != length:
        note = f" ({length_note})" if length_note else ""
        raise ShapeMismatch(f"'{name}' must have {length} entries{note}, found {len(v)}: {fmt(v)}")
    if minimum is not None:
        for i, x in enumerate(v):
            if x < minimum:
                kind = "positive" if minimum == 1 else f">= {minimum}"
                raise ShapeMismatch(f"'{name}' entries must be {kind}, found {x} at index {i} of {fmt(v)}")
    return v


def pair_list(op, name: str, *, length: int, length_note: str = "",
              allow_empty: bool = True) -> list[tuple[int, int]]:
    """A ``(integer, integer)[]`` attribute (padding) of the given length or ``[]``."""
    v = attr(op, name, [] if allow_empty else None)
    ok = isinstance(v, (list, tuple))
    if ok:
        for p in v:
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and _is_int(p[0]) and _is_int(p[1])):
                ok = False
                break
    if not ok:
        raise ShapeMismatch(f"'{name}' must be an array of (integer, integer) pairs, found {v!r}")
    v = [(int(p), int(q)) for p, q in v]
    if allow_empty and not v:
        return v
    if len(v) != length:
        note = f" ({length_note})" if length_note else ""
        raise ShapeMismatch(f"'{name}' must have {length} pairs{note}, found {len(v)}")
    return v


def axis_value(op, name: str, rank: int, *, upper: int | None = None, default: Any = None) -> int:
    """An axis attribute in ``[0, upper)``; ``upper`` defaults to ``rank``."""
    a = int_value(op, name, default)
    hi = rank if upper is None else upper
    if not 0 <= a < hi:
        raise ShapeMismatch(f"'{name}' = {a} is out of range [0,{hi}) for rank {rank}")
    return a


def axes_list(op, name: str, rank: int, *, upper: int | None = None, default: Any = None,
              what: str = "input") -> list[int]:
    """An ``axes`` attribute: unique entries in ``[0, upper)`` (``upper`` = rank by default)."""
    axes = int_list(op, name, default)
    hi = rank if upper is None else upper
    seen = set()
    for a in axes:
        if not 0 <= a < hi:
            raise ShapeMismatch(
                f"'{name}' entry {a} is out of range [0,{hi}) for {what} of rank {rank}")
        if a in seen:
            raise ShapeMismatch(f"'{name}' lists axis {a} twice: {fmt(axes)}")
        seen.add(a)
    return axes


def string_value(op, name: str, allowed: Sequence[str], default: Any = None) -> str:
    v = attr(op, name, default)
    if v not in allowed:
        choices = ", ".join(f"'{a}'" for a in allowed)
        raise ShapeMismatch(f"'{name}' = {v!r} is not supported here; expected one of {choices}")
    return v


def need_rank(shape: Shape, low: int, what: str = "input", high: int | None = None) -> None:
    if len(shape) < low or (high is not None and len(shape) > high):
        if high is None:
            expect = f"at least {low}"
        elif high == low:
            expect = f"{low}"
        else:
            expect = f"{low} to {high}"
        raise ShapeMismatch(f"{what} must have rank {expect}, found {fmt(shape)} (rank {len(shape)})")


def same_shape(op, name: str, shape_of: ShapeOf) -> list:
    """The result has the shape of input ``name`` (unary ops)."""
    return [shape_of(op.inputs[name])]
