"""Checked fragment prototypes (spec §3.2.2, SPEC-NOTES §4.1) and the per-node plans the checker leaves for the evaluator.

A :class:`Signature` is what an invocation is checked against: parameter and
result types (semantic, see :mod:`.types`), evaluated defaults, generic
declaration. :func:`check_prototype` enforces the declaration rules: generic
``<?>`` iff a type mentions ``?``, tensor parameters before attributes, unique
names, castable defaults, no ``tensor<>`` in results, results are tensors, no
tuples mixing tensor and attribute items.

A :class:`Plan` records, for one invocation (or tensor operator) node, which
signature it calls, which argument expression feeds each parameter and the
statically bound generic type, so that expansion does not redo argument
matching.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import ast
from . import types as T
from ..errors import NNEFError, SourcePos


@dataclass
class ParamInfo:
    name: str
    type: T.Type
    is_tensor: bool
    has_default: bool = False
    default: object = None
    pos: Optional[SourcePos] = None


@dataclass
class Signature:
    name: str
    params: list[ParamInfo]
    results: list[tuple[str, T.Type]]
    generic: bool = False
    generic_default: Optional[str] = None
    fragment: Optional[ast.Fragment] = None
    standard: bool = False
    index: dict = field(default_factory=dict)       # param name -> position
    broken: bool = False    # declaration or body had errors (already reported): invocations are skipped
    # memo of bound_types(): a signature does not change once checked, and binding the same
    # generic for every invocation of a 10k-op graph is measurable
    _bound: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_body(self) -> bool:
        return self.fragment is not None and self.fragment.body is not None

    def result_type(self, binding: Optional[str]) -> T.Type:
        return self.bound_types(binding)[1]

    def bound_types(self, binding: Optional[str]) -> tuple:
        """``(parameter types, result type)`` with ``?`` bound to ``binding`` (as is for None)."""
        memo = self._bound.get(binding)
        if memo is None:
            if len(self.results) == 1:
                result = T.bind(self.results[0][1], binding)
            else:
                result = T.TupleT(tuple(T.bind(t, binding) for _, t in self.results))
            memo = ([T.bind(p.type, binding) for p in self.params], result)
            self._bound[binding] = memo
        return memo

    def describe(self) -> str:
        return f"'{self.name}'"


@dataclass(slots=True)
class Plan:
    """How one invocation node calls its fragment (filled in by the checker)."""
    sig: Signature
    args: list            # per parameter: an ast expression, or None for the default
    binding: Optional[str]  # statically bound generic ('?' = the enclosing fragment's binding)
    pos: Optional[SourcePos] = None


# --------------------------------------------------------- literal values --
def literal_value(e: ast.Expr):
    """Evaluate a literal expression (parameter default); returns (value, type) or raises NNEFError."""
    if isinstance(e, ast.Literal):
        return e.value, T.prim(e.kind)
    if isinstance(e, ast.UnaryOp) and e.op == "-" and isinstance(e.operand, ast.Literal) \
            and e.operand.kind in ("integer", "scalar"):
        return -e.operand.value, T.prim(e.operand.kind)
    if isinstance(e, ast.ArrayExpr):
        values, typ = [], None
        for item in e.items:
            v, t = literal_value(item)
            c = t if typ is None else T.common_type(typ, t)
            if c is None:
                raise NNEFError(f"array items of types '{typ}' and '{t}' have no common type", item.pos)
            values.append(v)
            typ = c
        return values, (T.ArrayT(typ) if typ is not None else T.EMPTY)
    if isinstance(e, ast.TupleExpr):
        pairs = [literal_value(i) for i in e.items]
        return tuple(v for v, _ in pairs), T.TupleT(tuple(t for _, t in pairs))
    raise NNEFError("default value must be a literal expression", getattr(e, "pos", None))


# -------------------------------------------------------- prototype rules --
def check_prototype(frag: ast.Fragment, errors: list, *, standard: bool = False) -> Signature:
    """Build the signature of ``frag``, appending declaration errors to ``errors``."""
    n_errors = len(errors)
    params: list[ParamInfo] = []
    seen: set = set()
    mentions_generic = False
    attribute_seen = False
    for p in frag.params:
        typ = T.from_spec(p.type)
        mentions_generic |= T.has_generic(typ)
        if p.name in seen:
            errors.append(NNEFError(f"duplicate parameter name '{p.name}' in fragment '{frag.name}'", p.pos))
        seen.add(p.name)
        mixed = T.mixed_tuple(typ)
        if mixed is not None:
            errors.append(NNEFError(f"item types in tuple type '{mixed}' must be all attribute types "
                                    f"or all tensor types", p.pos))
        is_tensor = T.has_tensor(typ)
        if is_tensor and attribute_seen:
            errors.append(NNEFError(f"tensor parameter '{p.name}' of type '{typ}' must come before all "
                                    f"attribute parameters", p.pos))
        attribute_seen |= not is_tensor
        info = ParamInfo(p.name, typ, is_tensor, pos=p.pos)
        if p.default is not None:
            try:
                value, vtype = literal_value(p.default)
            except NNEFError as e:
                errors.append(e)
            else:
                if not T.can_cast(vtype, typ):
                    errors.append(NNEFError(f"default value of type '{vtype}' cannot be cast to the type "
                                            f"'{typ}' of parameter '{p.name}'", p.default.pos or p.pos))
                info.has_default = True
                info.default = value
        params.append(info)

    results = []
    for r in frag.results:
        typ = T.from_spec(r.type)
        mentions_generic |= T.has_generic(typ)
        if r.name in seen:
            errors.append(NNEFError(f"duplicate parameter/result name '{r.name}' in fragment '{frag.name}'", r.pos))
        seen.add(r.name)
        if T.has_unbound_tensor(typ):
            errors.append(NNEFError(f"result '{r.name}' may not have the unbound type 'tensor<>'", r.pos))
        elif not T.all_tensor(typ):
            errors.append(NNEFError(f"result '{r.name}' must be of tensor type (or an array/tuple of tensors), "
                                    f"found '{typ}'", r.pos))
        results.append((r.name, typ))

    if mentions_generic and not frag.generic:
        errors.append(NNEFError(f"fragment '{frag.name}' has generic parameter or result types and must be "
                                f"declared generic using <?>", frag.pos))
    if frag.generic and not mentions_generic:
        errors.append(NNEFError(f"fragment '{frag.name}' is declared generic but no parameter or result "
                                f"type mentions '?'", frag.pos))
    sig = Signature(frag.name, params, results, frag.generic, frag.generic_default, frag, standard)
    sig.index = {p.name: i for i, p in enumerate(params)}
    sig.broken = len(errors) > n_errors
    return sig
