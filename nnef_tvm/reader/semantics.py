"""NNEF semantic layer: syntax tree -> checked :class:`~.graph.Graph` (spec §3.2-3.3, §6 step 2).

Public API
----------
``build_graph(doc, *, lower=None) -> (Graph, custom_fragments)``
    Check the document and evaluate its graph body into operations. ``lower``
    chooses which invocations are expanded through their fragment bodies:

    * ``None`` (default): custom fragments that have a body; standard compounds
      stay atomic;
    * a set (or list/tuple) of operation names;
    * a callable ``name -> bool``;
    * ``'all'``: every fragment with a body, down to primitives.

    Body-less fragments (primitives, custom primitives) always stay atomic.
    All independent errors of the document are raised together as one
    :class:`NNEFError` (``NNEFError.collect``).

``check(doc) -> list[NNEFError]``
    The same checks, returning the errors instead of raising.

Decisions where the spec leaves room (SPEC-NOTES §3, §9):

* Strict flat subset: without ``KHR_enable_operator_expressions`` every
  right-hand side in the graph body and in custom fragment bodies must be a
  single invocation whose arguments are identifiers, literals (a '-' before a
  number counts as part of it) or arrays/tuples of those. Nested invocations,
  operators, if/else, comprehensions, subscripts, built-ins and a bare
  identifier/literal RHS are reported (the Khronos parser is lenient, E14).
* ``y = x;`` (or ``y = 1.0;``) in the graph body emits ``copy`` (E11).
* Unknown extensions are errors (as in Khronos).
* A compound whose array result is bound to a single identifier inside a
  fragment is expanded even when not asked for, since only expansion knows
  the array length (1.0.5 rule; Khronos rejects it when not lowered).
* Compile-time values follow the spec where Khronos diverges: conventional
  unary-minus precedence is the parser's job (E1); ``&& || !`` on
  ``tensor<logical>`` map to and/or/not and ``==`` on logical tensors is a type
  error (E3); string repetition/subscripts, tuple item access and empty
  ranges ``i >= j`` work (E5); integer ``/`` truncates toward zero and
  ``integer(-2.7)`` is -2 (E6); ``string(1.5)`` is ``'1.5'`` (E7); ``shape_of``
  is rejected (E9); scalar division by zero gives inf/nan (IEEE), integer
  division by zero is an error.
* Intermediate tensors are named like Khronos (``<op><n>``, array items
  ``<op><n>_<k>``, never colliding with user identifiers) so that graphs can be
  compared operation by operation.
"""
from __future__ import annotations

import gc
import sys
from functools import lru_cache
from typing import Callable, Optional

from . import ast
from . import extensions as _extensions
from . import types as T
from .checker import (EXPRESSIONS_EXTENSION, ExprChecker, Poisoned, destructure, flat_violation,
                      lvalue_names, _describe)
from .evaluator import Evaluator, Frame
from .graph import Graph
from .signatures import Signature, check_prototype
from ..errors import NNEFError

FRAGMENTS_EXTENSION = "KHR_enable_fragment_definitions"
KNOWN_EXTENSIONS = (FRAGMENTS_EXTENSION, EXPRESSIONS_EXTENSION)
_RECURSION_LIMIT = 20000


# ---------------------------------------------------------------- stdlib --
@lru_cache(maxsize=1)
def standard_signatures() -> tuple[dict, dict]:
    """Signatures of the 118 standard operations and the plans of the compound bodies (checked once)."""
    from .stdlib import standard_fragments
    frags = standard_fragments()
    errors: list = []
    sigs = {name: check_prototype(f, errors, standard=True) for name, f in frags.items()}
    plans: dict = {}
    for sig in sigs.values():
        if sig.has_body:
            _check_fragment_body(sig, sigs, plans, errors, allow_expr=True)
    if errors:  # an internal defect, not a user error
        raise RuntimeError("standard library does not check:\n" + str(NNEFError.collect(errors)))
    return sigs, plans


# ------------------------------------------------------- fragment bodies --
def _check_fragment_body(sig: Signature, sigs, plans, errors, *, allow_expr: bool) -> None:
    frag = sig.fragment
    n_errors = len(errors)
    checker = ExprChecker(sigs, plans, in_graph=False, generic=sig.generic)
    scope = checker.scope
    for p in sig.params:
        scope[p.name] = p.type
    params = {p.name for p in sig.params}
    result_types = dict(sig.results)
    for stmt in frag.body:
        declared_here: list = []
        try:
            names = lvalue_names(stmt.lvalue)
            declared_here = [n.name for n in names if n.name not in scope and n.name not in params]
            if not allow_expr:
                _require_flat(stmt)
            seen: set = set()
            for n in names:
                if n.name in params:
                    raise NNEFError(f"parameter '{n.name}' of fragment '{sig.name}' cannot be assigned", n.pos)
                if n.name in scope or n.name in seen:
                    what = "result" if n.name in result_types else "identifier"
                    raise NNEFError(f"{what} '{n.name}' is already assigned", n.pos)
                seen.add(n.name)
            typ = checker.expr(stmt.rvalue, top=True)
            out: dict = {}
            destructure(stmt.lvalue, typ, out, graph=False)
            if isinstance(stmt.lvalue, ast.Name) and isinstance(stmt.rvalue, ast.Invocation) \
                    and stmt.lvalue.name not in result_types:
                plan = plans.get(id(stmt.rvalue))
                if plan is not None and not plan.sig.has_body and isinstance(typ, T.ArrayT):
                    raise NNEFError(f"the array result of primitive '{plan.sig.name}' has unknown length; "
                                    f"list the items on the left-hand side", stmt.lvalue.pos)
            for name, t in out.items():
                want = result_types.get(name)
                if want is not None and not T.can_cast(t, want):
                    raise NNEFError(f"result '{name}' of type '{want}' cannot be assigned a value of "
                                    f"type '{t}'", stmt.pos or stmt.lvalue.pos)
            scope.update(out)
        except Poisoned:
            for n in declared_here:
                scope[n] = T.UNKNOWN
        except NNEFError as e:
            errors.append(e)
            for n in declared_here:
                scope.setdefault(n, T.UNKNOWN)
    for r, _ in sig.results:
        if r not in scope:
            errors.append(NNEFError(f"result '{r}' of fragment '{sig.name}' is not assigned", frag.pos))
    if len(errors) > n_errors or any(t is T.UNKNOWN for t in scope.values()):
        sig.broken = True


def _require_flat(stmt) -> None:
    bad = flat_violation(stmt.rvalue)
    if bad is not None:
        if bad is stmt.rvalue and not isinstance(bad, ast.Invocation):
            msg = f"right-hand side must be an operation invocation ({_describe(bad)} found)"
        else:
            msg = f"{_describe(bad)} in an argument"
        raise NNEFError(f"{msg}: this needs 'extension {EXPRESSIONS_EXTENSION};'",
                        getattr(bad, "pos", None) or stmt.pos)


# -------------------------------------------------------------- document --
def _version_text(v) -> str:
    try:
        return ".".join(str(x) for x in v if x is not None)
    except TypeError:
        return str(v)


class _Build:
    """State of one document check/build."""

    def __init__(self, doc: ast.Document, ext_sets=()):
        self.doc = doc
        self.errors: list = []
        self.custom: dict = {}
        self.ext_sets = list(ext_sets)   # opt-in non-Khronos sets (reader/extensions.py)

    def header(self) -> set:
        doc = self.doc
        if tuple(doc.version) != (1, 0):
            self.errors.append(NNEFError(f"unsupported version {_version_text(doc.version)}; "
                                         f"expected 'version 1.0;'", doc.version_pos))
        enabled = set()
        opt_in = {n for s in self.ext_sets for n in s.document_names}
        for s in self.ext_sets:
            enabled |= s.implies
        for ext in doc.extensions:
            if ext.name in KNOWN_EXTENSIONS or ext.name in opt_in:
                enabled.add(ext.name)
            elif _extensions.owning_set(ext.name) is not None:
                name = _extensions.owning_set(ext.name).name
                self.errors.append(NNEFError(
                    f"extension '{ext.name}' belongs to the opt-in '{name}' extension set, which is "
                    f"not enabled (use --extensions {name}, or extensions=('{name}',))", ext.pos))
            else:
                self.errors.append(NNEFError(f"unknown extension '{ext.name}' (known: "
                                             f"{', '.join(KNOWN_EXTENSIONS)})", ext.pos))
        return enabled

    def fragments(self, enabled) -> tuple[dict, dict]:
        std_sigs, std_plans = standard_signatures()
        sigs = dict(std_sigs)
        plans = dict(std_plans)
        mine = []
        own_names = {f.name for f in self.doc.fragments}
        for s in self.ext_sets:
            for frag in _extensions.declared_fragments(s.fragment_file):
                if frag.name not in own_names and frag.name not in self.custom:
                    sigs[frag.name] = check_prototype(frag, self.errors)
                    self.custom[frag.name] = frag
        for frag in self.doc.fragments:
            if FRAGMENTS_EXTENSION not in enabled:
                self.errors.append(NNEFError(f"fragment definition '{frag.name}' requires "
                                             f"'extension {FRAGMENTS_EXTENSION};'", frag.pos))
            if frag.name in std_sigs:
                self.errors.append(NNEFError(f"fragment '{frag.name}' redefines a standard operation",
                                             frag.pos))
                continue
            if frag.name in self.custom:
                self.errors.append(NNEFError(f"fragment '{frag.name}' is already defined", frag.pos))
                continue
            sig = check_prototype(frag, self.errors)
            sigs[frag.name] = sig
            self.custom[frag.name] = frag
            mine.append(sig)
        allow_expr = EXPRESSIONS_EXTENSION in enabled
        for sig in mine:
            if sig.has_body:
                _check_fragment_body(sig, sigs, plans, self.errors, allow_expr=allow_expr)
        return sigs, plans

    def graph(self, sigs, plans, enabled, lower) -> Optional[Graph]:
        gd = self.doc.graph
        if gd is None:
            self.errors.append(NNEFError("document has no graph definition",
                                         self.doc.version_pos))
            return None
        params = [p.name for p in gd.params]
        results = [r.name for r in gd.results]
        for group, what in ((gd.params, "parameter"), (gd.results, "result")):
            seen: set = set()
            for n in group:
                if n.name in seen:
                    self.errors.append(NNEFError(f"duplicate graph {what} '{n.name}'", n.pos))
                seen.add(n.name)
        param_set = set(params)
        graph = Graph(name=gd.name, inputs=params, outputs=results)
        reserved = set(params) | set(results)
        lvalues: list = []
        for stmt in gd.body:
            lv = stmt.lvalue
            if type(lv) is ast.Name:
                names = [lv]
            else:
                try:
                    names = lvalue_names(lv)
                except NNEFError as e:
                    names = e
            if type(names) is list:
                reserved.update(n.name for n in names)
            lvalues.append(names)
        evaluator = Evaluator(graph, plans, _lower_predicate(lower), reserved, param_set)
        checker = ExprChecker(sigs, plans, in_graph=True, generic=False)
        scope = checker.scope
        frame = Frame({})
        allow_expr = EXPRESSIONS_EXTENSION in enabled
        for stmt, names in zip(gd.body, lvalues):
            declared_here: list = []
            try:
                if type(names) is not list:
                    raise names
                declared_here = [n.name for n in names if n.name not in scope]
                if not allow_expr and flat_violation(stmt.rvalue) is not None:
                    _require_flat(stmt)     # raises the located error
                seen: set = set()
                for n in names:
                    if n.name in scope or n.name in seen:
                        raise NNEFError(f"identifier '{n.name}' is already declared", n.pos)
                    seen.add(n.name)
                rv = stmt.rvalue
                lv = stmt.lvalue
                is_invocation = type(rv) is ast.Invocation
                if is_invocation and rv.op == "external":
                    if not isinstance(lv, ast.Name) or lv.name not in param_set:
                        raise NNEFError("identifiers assigned by operation 'external' must be graph "
                                        "parameters", lv.pos or stmt.pos)
                else:
                    for n in names:
                        if n.name in param_set:
                            raise NNEFError(f"graph parameter '{n.name}' can only be assigned by "
                                            f"operation 'external'", n.pos)
                typ = checker._Invocation(rv, True) if is_invocation else checker.expr(rv, top=True)
                if type(lv) is ast.Name and type(typ) is T.TensorT:    # destructure's common case
                    if is_invocation:
                        evaluator.assign_invocation(stmt, plans[id(rv)], frame)
                    else:
                        evaluator.assign(stmt, frame, True)
                    scope[lv.name] = typ
                    continue
                out: dict = {}
                destructure(lv, typ, out, graph=True)
                evaluator.assign(stmt, frame, True)
                scope.update(out)
            except Poisoned:
                for n in declared_here:
                    scope[n] = T.UNKNOWN
            except NNEFError as e:
                self.errors.append(e)
                for n in declared_here:
                    scope.setdefault(n, T.UNKNOWN)
            except RecursionError:
                self.errors.append(NNEFError("fragment expansion recurses too deeply", stmt.pos))
                for n in declared_here:
                    scope.setdefault(n, T.UNKNOWN)
        for p in gd.params:
            if p.name not in scope:
                self.errors.append(NNEFError(f"graph parameter '{p.name}' is not assigned "
                                             f"(expected '{p.name} = external(...)')", p.pos))
        for r in gd.results:
            if r.name not in scope:
                self.errors.append(NNEFError(f"graph result '{r.name}' is not assigned", r.pos))
        return graph


def _lower_predicate(lower) -> Callable[[Signature], bool]:
    if lower is None:
        return lambda sig: not sig.standard
    if isinstance(lower, str):
        if lower == "all":
            return lambda sig: True
        raise ValueError(f"lower must be None, 'all', a set of names or a callable, not {lower!r}")
    if callable(lower):
        return lambda sig: bool(lower(sig.name))
    names = frozenset(lower)
    return lambda sig: sig.name in names


def _run(doc: ast.Document, lower, extensions=()) -> tuple[Optional[Graph], dict, list]:
    ext_sets = _extensions.resolve(extensions)
    doc = _extensions.rewrite_document(doc, ext_sets)
    build = _Build(doc, ext_sets)
    enabled = build.header()
    sigs, plans = build.fragments(enabled)
    graph = build.graph(sigs, plans, enabled, lower)
    if graph is not None and ext_sets:
        _extensions.fix_result_types(graph)
    errors = build.errors
    if doc.file:
        errors = [e.with_file(doc.file) if e.file is None else e for e in errors]
    return graph, build.custom, errors


def _run_guarded(doc, lower, extensions=()):
    # deep (but bounded, MAX_EXPANSION_DEPTH) recursive expansions need more Python frames
    # and the cyclic GC only slows down building a graph of many small acyclic objects
    old = sys.getrecursionlimit()
    if old < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(doc, lower, extensions)
    finally:
        if gc_was_enabled:
            gc.enable()
        if old < _RECURSION_LIMIT:
            sys.setrecursionlimit(old)


def build_graph(doc: ast.Document, *, lower=None, extensions=()) -> tuple[Graph, dict]:
    """Check ``doc`` and return ``(graph, custom_fragments)``; raise all errors at once.

    ``extensions``: opt-in non-Khronos extension sets (e.g. ``('tract',)``, see
    :mod:`nnef_tvm.reader.extensions`)."""
    graph, custom, errors = _run_guarded(doc, lower, extensions)
    if errors:
        raise NNEFError.collect(errors)
    return graph, custom


def check(doc: ast.Document) -> list:
    """All semantic errors of ``doc`` (empty when it is valid)."""
    return _run_guarded(doc, None)[2]
