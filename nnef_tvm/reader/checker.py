"""Static type checking of NNEF expressions and assignments (spec §3.3, SPEC-NOTES §5.2-5.8).

Types are static in NNEF (only array lengths depend on values), so fragment
bodies are checked once, at declaration, for every branch (including the one
an if/else will never take), and the graph body statement by statement. For
each invocation and each operator on tensors the checker leaves a
:class:`~.signatures.Plan` in ``plans`` (keyed by ``id(node)``) for the
evaluator.

Error handling: one located :class:`NNEFError` per offending statement. A
statement whose identifiers are poisoned by an earlier error (type
:data:`~.types.UNKNOWN`) is skipped silently, so one mistake is reported once.
"""
from __future__ import annotations

from typing import Optional

from . import ast
from . import types as T
from .signatures import Plan, Signature
from ..errors import NNEFError

# operator -> tensor fragment (spec §3.3.3 Table 1)
UNARY_FRAGMENTS = {"-": "neg", "+": "copy", "!": "not"}
BINARY_FRAGMENTS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow",
                    "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne",
                    "&&": "and", "||": "or"}
GRAPH_ONLY = ("external", "variable", "update")
_NUMERIC = (T.INTEGER, T.SCALAR)
EXPRESSIONS_EXTENSION = "KHR_enable_operator_expressions"


class Poisoned(Exception):
    """Raised when an expression depends on an identifier whose definition failed."""


def _err(msg, node):
    return NNEFError(msg, getattr(node, "pos", None))


def flat_violation(e: ast.Expr, top: bool = True) -> Optional[ast.Expr]:
    """The first node of a graph/fragment right-hand side outside the flat syntax (§3.2.1), or None.

    Flat: the right-hand side is one invocation whose arguments are identifiers,
    literals (a leading '-' on a number is part of the literal) and arrays/tuples
    of those.
    """
    if top:
        if type(e) is not ast.Invocation:
            return e
        leaves = _FLAT_LEAVES
        for a in e.args:
            v = a.value
            cls = type(v)
            if cls in leaves:
                continue
            if cls is ast.ArrayExpr or cls is ast.TupleExpr:     # inlined: arrays of leaves
                for i in v.items:
                    if type(i) not in leaves:
                        bad = flat_violation(i, False)
                        if bad is not None:
                            return bad
                continue
            bad = flat_violation(v, False)
            if bad is not None:
                return bad
        return None
    cls = type(e)
    if cls in _FLAT_LEAVES:
        return None
    if cls is ast.UnaryOp and e.op == "-" and type(e.operand) is ast.Literal \
            and e.operand.kind in ("integer", "scalar"):
        return None
    if cls is ast.ArrayExpr or cls is ast.TupleExpr:
        for i in e.items:
            if type(i) not in _FLAT_LEAVES:
                bad = flat_violation(i, False)
                if bad is not None:
                    return bad
        return None
    return e


_FLAT_LEAVES = frozenset((ast.Name, ast.Literal))


def _describe(e) -> str:
    names = {ast.Invocation: "nested invocation", ast.BinaryOp: "operator expression",
             ast.UnaryOp: "operator expression", ast.IfElse: "if/else expression",
             ast.Comprehension: "array comprehension", ast.Subscript: "subscript",
             ast.Builtin: "built-in function", ast.Name: "identifier", ast.Literal: "literal",
             ast.ArrayExpr: "array", ast.TupleExpr: "tuple"}
    return names.get(type(e), "expression")


class ExprChecker:
    """Type-checks expressions in one scope (the graph body or one fragment body)."""

    def __init__(self, sigs: dict, plans: dict, *, in_graph: bool, generic: bool):
        self._dispatch = {cls: getattr(self, "_" + cls.__name__) for cls in
                          (ast.Literal, ast.Name, ast.ArrayExpr, ast.TupleExpr, ast.UnaryOp, ast.BinaryOp,
                           ast.IfElse, ast.Comprehension, ast.Subscript, ast.Builtin)}
        self.sigs = sigs
        self.plans = plans
        self.in_graph = in_graph
        self.generic = generic          # inside a generic fragment ('<?>' may forward)
        self.scope: dict[str, T.Type] = {}

    # ---------------------------------------------------------------- entry
    def expr(self, e, top: bool = False) -> T.Type:
        cls = type(e)
        if cls is ast.Literal:
            return T.prim(e.kind)
        if cls is ast.Invocation:
            return self._Invocation(e, top)
        return self._dispatch[cls](e)

    # ------------------------------------------------------------ leaves ---
    def _Literal(self, e):
        return T.prim(e.kind)

    def _Name(self, e):
        t = self.scope.get(e.name)
        if t is None:
            raise _err(f"undeclared identifier '{e.name}'", e)
        if t is T.UNKNOWN:
            raise Poisoned()
        return t

    def _ArrayExpr(self, e):
        items = e.items
        if items and type(items[0]) is ast.Literal:
            kind = items[0].kind
            lit = ast.Literal
            for i in items:
                if type(i) is not lit or i.kind != kind:
                    break
            else:
                return T.array_of(T.prim(kind))
        if not items:
            return T.EMPTY
        typ = self.expr(items[0])
        for item in items[1:]:
            t = self.expr(item)
            if t is typ:                # common_type(a, a) is a
                continue
            c = T.common_type(typ, t)
            if c is None:
                raise _err(f"array items of types '{typ}' and '{t}' have no common type", item)
            typ = c
        return T.array_of(typ)

    def _TupleExpr(self, e):
        lit = ast.Literal
        return T.tuple_of(tuple([T.prim(i.kind) if type(i) is lit else self.expr(i) for i in e.items]))

    # --------------------------------------------------------- operators ---
    def _UnaryOp(self, e):
        t = self.expr(e.operand)
        if isinstance(t, T.TensorT):
            return self._tensor_op(e, UNARY_FRAGMENTS[e.op], [(e.operand, t)])
        if e.op in ("-", "+"):
            if t in _NUMERIC:
                return t
        elif e.op == "!":
            if t == T.LOGICAL:
                return t
        raise _err(f"invalid operand type '{t}' for operator '{e.op}'", e)

    def _BinaryOp(self, e):
        op = e.op
        lt = self.expr(e.left)
        rt = self.expr(e.right)
        if isinstance(lt, T.TensorT) or isinstance(rt, T.TensorT):
            frag = BINARY_FRAGMENTS.get(op)
            if frag is None:
                raise _err(f"operator '{op}' is not defined for tensor operands "
                           f"('{lt}' and '{rt}')", e)
            return self._tensor_op(e, frag, [(e.left, lt), (e.right, rt)])
        bad = _err(f"invalid operand types '{lt}' and '{rt}' for operator '{op}'", e)
        if op in ("+", "-", "*", "/", "^"):
            if lt == rt and lt in _NUMERIC:
                return lt
            if op == "+":
                if lt == rt and (lt == T.STRING or lt is T.EMPTY):
                    return lt
                if isinstance(lt, T.ArrayT) or isinstance(rt, T.ArrayT):
                    c = T.common_type(lt, rt)
                    if isinstance(c, T.ArrayT):
                        return c
            if op == "*":
                if (isinstance(lt, T.ArrayT) or lt == T.STRING or lt is T.EMPTY) and rt == T.INTEGER:
                    return lt
                if (isinstance(rt, T.ArrayT) or rt == T.STRING or rt is T.EMPTY) and lt == T.INTEGER:
                    return rt
            raise bad
        if op in ("<", "<=", ">", ">="):
            if lt == rt and lt in _NUMERIC:
                return T.LOGICAL
            raise bad
        if op in ("==", "!="):
            if lt == rt and isinstance(lt, T.Prim):
                return T.LOGICAL
            raise bad
        if op in ("&&", "||"):
            if lt == rt == T.LOGICAL:
                return T.LOGICAL
            raise bad
        if op == "in":
            if isinstance(rt, T.ArrayT) and T.common_type(lt, rt.item) is not None:
                return T.LOGICAL
            if rt is T.EMPTY:
                return T.LOGICAL
            raise bad
        raise _err(f"unknown operator '{op}'", e)

    def _tensor_op(self, e, frag_name, operands):
        sig = self.sigs[frag_name]
        if len(operands) > len(sig.params):
            raise _err(f"operator '{e.op}' has too many operands", e)
        args = [x for x, _ in operands] + [None] * (len(sig.params) - len(operands))
        return self._finish_call(e, sig, args, [t for _, t in operands], None)

    def _IfElse(self, e):
        ct = self.expr(e.cond)
        if ct != T.LOGICAL:
            raise _err(f"condition of if/else must be a logical attribute, found '{ct}'", e.cond)
        a = self.expr(e.then)
        b = self.expr(e.otherwise)
        c = T.common_type(a, b)
        if c is None:
            raise _err(f"branches of if/else have incompatible types '{a}' and '{b}'", e)
        return c

    def _Comprehension(self, e):
        saved = self.scope
        added: list = []
        try:
            new = {}
            for it in e.iterators:
                t = self.expr(it.iterable)
                if t is T.EMPTY:
                    item = T.EMPTY
                elif isinstance(t, T.ArrayT):
                    item = t.item
                else:
                    raise _err(f"iterable of a comprehension must be an array, found '{t}'", it.iterable)
                if it.name in new:
                    raise _err(f"duplicate loop variable '{it.name}'", it)
                if it.name in saved:
                    raise _err(f"loop variable '{it.name}' hides an identifier that is already declared", it)
                new[it.name] = item
            added = list(new)
            self.scope.update(new)
            if e.cond is not None:
                ct = self.expr(e.cond)
                if ct != T.LOGICAL:
                    raise _err(f"comprehension condition must be logical, found '{ct}'", e.cond)
            bt = self.expr(e.body)
            return T.ArrayT(bt) if bt is not T.EMPTY else T.EMPTY
        finally:
            for name in added:
                del saved[name]

    def _Subscript(self, e):
        bt = self.expr(e.base)
        if e.is_range:
            for b in (e.begin, e.end):
                if b is not None:
                    it = self.expr(b)
                    if it != T.INTEGER:
                        raise _err(f"range bound must be an integer, found '{it}'", b)
            if isinstance(bt, T.ArrayT) or bt == T.STRING or bt is T.EMPTY:
                return bt
            raise _err(f"ranges apply to arrays and strings, found '{bt}'", e.base)
        it = self.expr(e.index)
        if it != T.INTEGER:
            raise _err(f"index must be an integer, found '{it}'", e.index)
        if isinstance(bt, T.ArrayT):
            return bt.item
        if bt == T.STRING:
            return T.STRING
        if isinstance(bt, T.TupleT):
            idx = e.index
            if isinstance(idx, ast.Literal) and idx.kind == "integer":
                if 0 <= idx.value < len(bt.items):
                    return bt.items[idx.value]
                raise _err(f"tuple index {idx.value} out of range for '{bt}'", idx)
            raise _err("tuples can only be subscripted with an integer literal", e.index)
        if bt is T.EMPTY:
            raise _err("cannot subscript an empty array", e)
        raise _err(f"subscripts apply to arrays, tuples and strings, found '{bt}'", e.base)

    def _Builtin(self, e):
        if e.name == "shape_of":
            raise _err("'shape_of' is deprecated since NNEF 1.0.1 and not supported "
                       "(shapes are not known while parsing)", e)
        t = self.expr(e.arg)
        if e.name in ("length_of", "range_of"):
            if isinstance(t, T.ArrayT) or t is T.EMPTY or t == T.STRING:
                return T.INTEGER if e.name == "length_of" else T.ArrayT(T.INTEGER)
            raise _err(f"argument of {e.name}() must be an array or a string, found '{t}'", e.arg)
        if isinstance(t, T.Prim) and t.name != T.GENERIC:
            return T.prim(e.name)
        raise _err(f"argument of {e.name}() must be of non-tensor primitive type, found '{t}'", e.arg)

    # ------------------------------------------------------- invocations ---
    def _Invocation(self, e, top=False):
        sig: Optional[Signature] = self.sigs.get(e.op)
        if sig is None:
            raise _err(f"undeclared operation '{e.op}'", e)
        if sig.broken:
            raise Poisoned()
        if e.op in GRAPH_ONLY and not self.in_graph:
            raise _err(f"operation '{e.op}' is not allowed inside fragments", e)
        if e.op == "external" and not top:
            raise _err("operation 'external' must be the whole right-hand side of an assignment "
                       "to a graph parameter", e)
        params = sig.params
        n_params = len(params)
        args: list = [None] * n_params
        named_seen = False
        index = sig.index
        i = 0
        for a in e.args:
            name = a.name
            if name is None:
                if named_seen:
                    raise _err("positional argument after named argument", a)
                if i >= n_params:
                    raise _err(f"too many positional arguments; definition of '{sig.name}' has only "
                               f"{n_params} parameter(s)", a)
                if not params[i].is_tensor:
                    raise _err(f"expected named argument: attribute parameter '{params[i].name}' of "
                               f"'{sig.name}' must be passed by name", a)
                args[i] = a.value
            else:
                named_seen = True
                k = index.get(name)
                if k is None:
                    raise _err(f"operation '{sig.name}' has no parameter named '{name}'", a)
                if args[k] is not None:
                    raise _err(f"duplicate argument for parameter '{name}' of '{sig.name}'", a)
                args[k] = a.value
            i += 1
        if i < n_params:        # else every parameter got its own argument
            for p, a in zip(params, args):
                if a is None and not p.has_default:
                    raise _err(f"missing argument for required parameter '{p.name}' of '{sig.name}'", e)
        scope = self.scope
        arg_types = []
        for a in args:          # inline the common flat cases (identifiers and literals)
            cls = type(a)
            if cls is ast.Name:
                t = scope.get(a.name)
                if t is None or t is T.UNKNOWN:
                    t = self._Name(a)
            elif cls is ast.Literal:
                t = T.prim(a.kind)
            elif a is None:
                t = None
            else:
                t = self.expr(a)
            arg_types.append(t)
        return self._finish_call(e, sig, args, arg_types, e.dtype)

    def _finish_call(self, e, sig: Signature, args, arg_types, explicit):
        binding = None
        if explicit is not None:
            if not sig.generic:
                raise _err(f"operation '{sig.name}' is not generic; it takes no <{explicit}>", e)
            if explicit == T.GENERIC:
                if not self.generic:
                    raise _err("'<?>' is only allowed inside a generic fragment", e)
            binding = explicit
        elif sig.generic:
            if sig.generic_default is not None:
                binding = sig.generic_default
            else:
                cands: set = set()
                for p, t in zip(sig.params, arg_types):
                    if t is not None:
                        T.deduce(t, p.type, cands)
                if len(cands) == 1:
                    binding = next(iter(cands))
                elif not cands:
                    raise _err(f"could not deduce the generic type of '{sig.name}'; "
                               f"write {sig.name}<type>(...)", e)
                else:
                    raise _err(f"could not deduce the generic type of '{sig.name}': ambiguous "
                               f"candidates {' vs '.join(repr(c) for c in sorted(cands))}", e)
        wants, result = sig.bound_types(binding)
        can_cast = T.can_cast
        for a, t, want, p in zip(args, arg_types, wants, sig.params):
            if a is not None and t is not want and not can_cast(t, want):
                raise _err(f"argument of type '{t}' cannot be cast to type '{want}' for parameter "
                           f"'{p.name}' of '{sig.name}'", a)
        self.plans[id(e)] = Plan(sig, args, binding, e.pos)
        return result


# ------------------------------------------------------------ lvalues ------
def lvalue_names(lv) -> list:
    """The Name nodes of a left-hand side (raises NNEFError if it is not a valid lvalue)."""
    out: list = []

    def walk(n):
        if isinstance(n, ast.Name):
            out.append(n)
        elif isinstance(n, (ast.ArrayExpr, ast.TupleExpr)):
            for i in n.items:
                walk(i)
        else:
            raise _err("left-hand side must be an identifier or an array/tuple of identifiers", n)
    walk(lv)
    return out


def destructure(lv, typ: T.Type, out: dict, *, graph: bool) -> None:
    """Match a left-hand side against the value type, filling ``out[name] = type``."""
    if typ is T.UNKNOWN:
        for n in lvalue_names(lv):
            out[n.name] = T.UNKNOWN
        return
    if isinstance(lv, ast.Name):
        if graph:
            if isinstance(typ, T.Prim) and typ.name not in (T.GENERIC, "string"):
                typ = T.tensor(typ.name)      # y = 1.0 in the graph body: emitted as copy
            elif not isinstance(typ, T.TensorT):
                raise _err(f"identifier '{lv.name}' in the graph body must denote a single tensor, "
                           f"but the value has type '{typ}'; list the items on the left-hand side", lv)
        out[lv.name] = typ
        return
    if isinstance(lv, ast.ArrayExpr):
        if typ is T.EMPTY and not lv.items:
            return
        if not isinstance(typ, T.ArrayT):
            raise _err(f"array left-hand side, but the value has type '{typ}'", lv)
        for i in lv.items:
            destructure(i, typ.item, out, graph=graph)
        return
    if isinstance(lv, ast.TupleExpr):
        if not isinstance(typ, T.TupleT) or len(typ.items) != len(lv.items):
            raise _err(f"tuple left-hand side with {len(lv.items)} items, but the value has type "
                       f"'{typ}'", lv)
        for i, t in zip(lv.items, typ.items):
            destructure(i, t, out, graph=graph)
        return
    raise _err("left-hand side must be an identifier or an array/tuple of identifiers", lv)
