"""NNEF semantic types, implicit casts, common types and generic deduction (spec §3.3, SPEC-NOTES §5.1-5.3).

The syntax tree spells types as :mod:`.ast` nodes carrying source positions; the
checker works on the position-free, hashable forms defined here:

* :class:`Prim` – ``integer`` | ``scalar`` | ``logical`` | ``string`` | ``?``;
* :class:`TensorT` – ``tensor<T>`` (``item`` None for the unbound ``tensor<>``);
* :class:`ArrayT` – ``T[]``; :data:`EMPTY` is the type of the literal ``[]``,
  which casts to every array type and to which nothing casts;
* :class:`TupleT` – ``(T1, ..., Tn)``;
* :data:`UNKNOWN` – the type of a value whose defining statement had an error
  (lets the checker continue without cascading errors).

The implicit casts are exactly those of the spec (§5.2): ``T -> tensor<T>``,
anything primitive to ``?``, any bound tensor to ``tensor<?>``, any tensor to
``tensor<>``, and the item-wise liftings to arrays and tuples.  There is no
``integer -> scalar`` cast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from . import ast

PRIMITIVE_NAMES = ("integer", "scalar", "logical", "string")
GENERIC = "?"


@dataclass(frozen=True)
class Prim:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TensorT:
    item: Optional[str]          # primitive name, '?' or None (unbound tensor<>)

    def __str__(self) -> str:
        return f"tensor<{self.item or ''}>"


@dataclass(frozen=True)
class ArrayT:
    item: "Type"

    def __str__(self) -> str:
        return f"{self.item}[]"


@dataclass(frozen=True)
class TupleT:
    items: tuple

    def __str__(self) -> str:
        return "(" + ",".join(str(t) for t in self.items) + ")"


@dataclass(frozen=True)
class _Special:
    name: str

    def __str__(self) -> str:
        return self.name


Type = Union[Prim, TensorT, ArrayT, TupleT, _Special]

INTEGER = Prim("integer")
SCALAR = Prim("scalar")
LOGICAL = Prim("logical")
STRING = Prim("string")
ANY = Prim(GENERIC)
EMPTY = _Special("[]")           # type of the empty array literal
UNKNOWN = _Special("<error>")    # poisoned by an earlier error

_PRIMS = {n: Prim(n) for n in PRIMITIVE_NAMES + (GENERIC,)}
_TENSORS = {n: TensorT(n) for n in PRIMITIVE_NAMES + (GENERIC,)}
_TENSORS[None] = TensorT(None)


def prim(name: str) -> Prim:
    return _PRIMS[name]


def tensor(item: Optional[str]) -> TensorT:
    return _TENSORS[item]


_ARRAYS: dict = {}
_TUPLES: dict = {}
_MAX_INTERNED = 4096     # tuple types come from user text: bound the memo


def _flat(t) -> bool:
    return isinstance(t, (Prim, TensorT))


def array_of(item: "Type") -> ArrayT:
    """``item[]``, shared for primitive and tensor items (and tuples of those) so that equal
    types are usually identical and compare by ``is``."""
    t = _ARRAYS.get(item)
    if t is None:
        t = ArrayT(item)
        if _flat(item) or (isinstance(item, TupleT) and _TUPLES.get(item.items) is item
                             and len(_ARRAYS) < _MAX_INTERNED):
            _ARRAYS[item] = t
    return t


def tuple_of(items: tuple) -> TupleT:
    """``(T1, ..., Tn)``, shared when every item is a primitive or tensor type."""
    t = _TUPLES.get(items)
    if t is None:
        t = TupleT(items)
        if len(_TUPLES) < _MAX_INTERNED and all(_flat(i) for i in items):
            _TUPLES[items] = t
    return t


def from_spec(spec: ast.TypeSpec) -> Type:
    """Convert a syntax-tree type to a semantic type."""
    if isinstance(spec, ast.PrimitiveType):
        return prim(spec.name)
    if isinstance(spec, ast.TensorType):
        return tensor(spec.item.name if spec.item is not None else None)
    if isinstance(spec, ast.ArrayType):
        return array_of(from_spec(spec.item))
    if isinstance(spec, ast.TupleType):
        return tuple_of(tuple([from_spec(t) for t in spec.items]))
    raise TypeError(f"not a type spec: {spec!r}")


# ------------------------------------------------------------- predicates --
def is_tensor(t: Type) -> bool:
    return isinstance(t, TensorT)


def has_tensor(t: Type) -> bool:
    """True if ``t`` mentions a tensor anywhere (i.e. it is not an attribute type)."""
    if isinstance(t, TensorT):
        return True
    if isinstance(t, ArrayT):
        return has_tensor(t.item)
    if isinstance(t, TupleT):
        return any(has_tensor(i) for i in t.items)
    return False


def is_attribute(t: Type) -> bool:
    return not has_tensor(t)


def all_tensor(t: Type) -> bool:
    """True if every leaf of ``t`` is a tensor (allowed as a fragment result type)."""
    if isinstance(t, TensorT):
        return True
    if isinstance(t, ArrayT):
        return all_tensor(t.item)
    if isinstance(t, TupleT):
        return all(all_tensor(i) for i in t.items)
    return False


def has_generic(t: Type) -> bool:
    if isinstance(t, Prim):
        return t.name == GENERIC
    if isinstance(t, TensorT):
        return t.item == GENERIC
    if isinstance(t, ArrayT):
        return has_generic(t.item)
    if isinstance(t, TupleT):
        return any(has_generic(i) for i in t.items)
    return False


def has_unbound_tensor(t: Type) -> bool:
    if isinstance(t, TensorT):
        return t.item is None
    if isinstance(t, ArrayT):
        return has_unbound_tensor(t.item)
    if isinstance(t, TupleT):
        return any(has_unbound_tensor(i) for i in t.items)
    return False


def mixed_tuple(t: Type) -> Optional[TupleT]:
    """The first tuple type inside ``t`` whose items mix tensor and attribute types."""
    if isinstance(t, ArrayT):
        return mixed_tuple(t.item)
    if isinstance(t, TupleT):
        kinds = {has_tensor(i) for i in t.items}
        if len(kinds) > 1:
            return t
        for i in t.items:
            m = mixed_tuple(i)
            if m is not None:
                return m
    return None


def bind(t: Type, binding: Optional[str]) -> Type:
    """Substitute the generic ``?`` in ``t`` by ``binding`` (no-op when None)."""
    if binding is None:
        return t
    if isinstance(t, Prim):
        return prim(binding) if t.name == GENERIC else t
    if isinstance(t, TensorT):
        return tensor(binding) if t.item == GENERIC else t
    if isinstance(t, ArrayT):
        return ArrayT(bind(t.item, binding)) if has_generic(t.item) else t
    if isinstance(t, TupleT):
        return TupleT(tuple(bind(i, binding) for i in t.items)) if has_generic(t) else t
    return t


# ------------------------------------------------------------------ casts --
def can_cast(src: Type, dst: Type) -> bool:
    """Whether a value of type ``src`` may be passed where ``dst`` is expected (§5.2).

    ``dst`` may contain ``?``; a primitive or bound tensor then matches it (the
    caller checks that the deduced bindings agree, see :func:`deduce`).
    """
    if src is UNKNOWN or dst is UNKNOWN or src == dst:
        return True
    if isinstance(dst, Prim):
        return dst.name == GENERIC and isinstance(src, Prim)
    if isinstance(dst, TensorT):
        if isinstance(src, TensorT):
            if dst.item is None:
                return True
            return dst.item == GENERIC and src.item is not None
        if isinstance(src, Prim):
            return dst.item is None or dst.item == GENERIC or dst.item == src.name
        return False
    if isinstance(dst, ArrayT):
        if src is EMPTY:
            return True
        return isinstance(src, ArrayT) and can_cast(src.item, dst.item)
    if isinstance(dst, TupleT):
        return (isinstance(src, TupleT) and len(src.items) == len(dst.items)
                and all(can_cast(s, d) for s, d in zip(src.items, dst.items)))
    return False


def common_type(a: Type, b: Type) -> Optional[Type]:
    """The type both ``a`` and ``b`` cast to, being one of them (None if neither casts)."""
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a == b:
        return a
    if a is EMPTY and isinstance(b, ArrayT):
        return b
    if b is EMPTY and isinstance(a, ArrayT):
        return a
    if isinstance(a, ArrayT) and isinstance(b, ArrayT):
        item = common_type(a.item, b.item)
        return ArrayT(item) if item is not None else None
    if isinstance(a, TupleT) and isinstance(b, TupleT) and len(a.items) == len(b.items):
        items = [common_type(x, y) for x, y in zip(a.items, b.items)]
        return None if any(i is None for i in items) else TupleT(tuple(items))
    # primitive <-> tensor of the same item type: the tensor is the common type
    if can_cast(a, b) and not has_generic(b):
        return b
    if can_cast(b, a) and not has_generic(a):
        return a
    return None


def deduce(src: Type, dst: Type, out: set) -> None:
    """Add to ``out`` the bindings of ``?`` in ``dst`` implied by an argument of type ``src``."""
    if isinstance(dst, Prim):
        if dst.name == GENERIC and isinstance(src, Prim):
            out.add(src.name)
    elif isinstance(dst, TensorT):
        if dst.item == GENERIC:
            if isinstance(src, TensorT) and src.item is not None:
                out.add(src.item)
            elif isinstance(src, Prim):
                out.add(src.name)
    elif isinstance(dst, ArrayT):
        if isinstance(src, ArrayT):
            deduce(src.item, dst.item, out)
    elif isinstance(dst, TupleT):
        if isinstance(src, TupleT):
            for s, d in zip(src.items, dst.items):
                deduce(s, d, out)
