"""Syntax tree of an NNEF document, as produced by :mod:`.syntax` (the lark parser).

This is the contract between the parser (text -> tree) and the semantic checker
(tree -> :class:`~.graph.Graph`). Every node carries ``pos`` (file, line,
column of its first token) so that later errors can point at the source.

The tree is the *compositional* superset; whether a document stays within the
flat subset or uses the two extensions is decided by the semantic checker
(using ``Document.extensions`` and the node kinds), so that error positions stay
precise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import SourcePos


# ---------------------------------------------------------------- types ----
@dataclass(frozen=True)
class PrimitiveType:
    """``integer`` | ``scalar`` | ``logical`` | ``string`` | ``?`` (generic)."""
    name: str
    pos: Optional[SourcePos] = field(default=None, compare=False)


@dataclass(frozen=True)
class TensorType:
    """``tensor<T>``; ``item`` is None for the unbound ``tensor<>``."""
    item: Optional[PrimitiveType]
    pos: Optional[SourcePos] = field(default=None, compare=False)


@dataclass(frozen=True)
class ArrayType:
    """``T[]``."""
    item: "TypeSpec"
    pos: Optional[SourcePos] = field(default=None, compare=False)


@dataclass(frozen=True)
class TupleType:
    """``(T1, T2, ...)`` with at least two items."""
    items: tuple["TypeSpec", ...]
    pos: Optional[SourcePos] = field(default=None, compare=False)


TypeSpec = Union[PrimitiveType, TensorType, ArrayType, TupleType]


# ---------------------------------------------------------- expressions ----
@dataclass
class Literal:
    """A number, string or logical literal. ``kind`` is 'integer' | 'scalar' | 'string' | 'logical'.

    ``value`` is the Python value (int, float, str, bool). In flat syntax a
    leading '-' is part of a numeric literal (so the value is negative).
    """
    value: object
    kind: str
    pos: Optional[SourcePos] = None


@dataclass
class Name:
    """An identifier used as a value."""
    name: str
    pos: Optional[SourcePos] = None


@dataclass
class ArrayExpr:
    """``[a, b, ...]`` (possibly empty)."""
    items: list["Expr"]
    pos: Optional[SourcePos] = None


@dataclass
class TupleExpr:
    """``(a, b, ...)`` with at least two items; on a left-hand side also the unparenthesised form."""
    items: list["Expr"]
    pos: Optional[SourcePos] = None


@dataclass
class UnaryOp:
    """``op`` in '-', '+', '!'."""
    op: str
    operand: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class BinaryOp:
    """``op`` in '+ - * / ^ < <= > >= == != && || in'."""
    op: str
    left: "Expr"
    right: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class IfElse:
    """``then if cond else otherwise`` (compile-time, lazy)."""
    cond: "Expr"
    then: "Expr"
    otherwise: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class Iterator:
    """``name in iterable`` inside a comprehension."""
    name: str
    iterable: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class Comprehension:
    """``[for i in a, j in b if cond yield body]`` (iterators run in parallel)."""
    iterators: list[Iterator]
    cond: Optional["Expr"]
    body: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class Subscript:
    """``base[index]`` (``is_range`` False) or ``base[begin:end]`` (either bound may be None)."""
    base: "Expr"
    index: Optional["Expr"] = None
    begin: Optional["Expr"] = None
    end: Optional["Expr"] = None
    is_range: bool = False
    pos: Optional[SourcePos] = None


@dataclass
class Builtin:
    """``shape_of | length_of | range_of | integer | scalar | logical | string`` applied to one argument."""
    name: str
    arg: "Expr"
    pos: Optional[SourcePos] = None


@dataclass
class Argument:
    """One argument of an invocation; ``name`` is None for a positional one."""
    value: "Expr"
    name: Optional[str] = None
    pos: Optional[SourcePos] = None


@dataclass
class Invocation:
    """``op<dtype>(args...)``; ``dtype`` is the explicit generic type name or None ('?' allowed)."""
    op: str
    args: list[Argument]
    dtype: Optional[str] = None
    pos: Optional[SourcePos] = None


Expr = Union[Literal, Name, ArrayExpr, TupleExpr, UnaryOp, BinaryOp, IfElse,
             Comprehension, Subscript, Builtin, Invocation]


# ----------------------------------------------------------- statements ----
@dataclass
class Assignment:
    """``lvalue = rvalue;`` where lvalue is a Name or a nested ArrayExpr/TupleExpr of Names."""
    lvalue: Expr
    rvalue: Expr
    pos: Optional[SourcePos] = None


@dataclass
class Param:
    name: str
    type: TypeSpec
    default: Optional[Expr] = None      # a literal expression (Literal/ArrayExpr/TupleExpr/UnaryOp '-')
    pos: Optional[SourcePos] = None


@dataclass
class Result:
    name: str
    type: TypeSpec
    pos: Optional[SourcePos] = None


@dataclass
class Fragment:
    """``fragment name<? = default>(params) -> (results) { body }``; ``body`` None when declared with ';'."""
    name: str
    params: list[Param]
    results: list[Result]
    body: Optional[list[Assignment]] = None
    generic: bool = False
    generic_default: Optional[str] = None
    pos: Optional[SourcePos] = None


@dataclass
class GraphDef:
    """``graph name(inputs) -> (outputs) { body }``."""
    name: str
    params: list[Name]
    results: list[Name]
    body: list[Assignment]
    pos: Optional[SourcePos] = None


@dataclass
class Extension:
    name: str
    pos: Optional[SourcePos] = None


@dataclass
class Document:
    """A whole ``graph.nnef`` (or a stdlib/fragment file, which has ``graph`` None)."""
    version: tuple[int, int]
    extensions: list[Extension]
    fragments: list[Fragment]
    graph: Optional[GraphDef]
    file: Optional[str] = None
    version_pos: Optional[SourcePos] = None
