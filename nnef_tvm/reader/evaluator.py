"""Compile-time evaluation and expansion of checked NNEF statements into graph operations.

Implements SPEC-NOTES §5.7-5.10 on top of the checker's plans:

* attribute expressions are folded to Python values (integer ``/`` truncates
  toward zero, ``^`` is a power, ``+``/``*`` concatenate/repeat arrays and
  strings, ``in`` is deep equality, subscripts/ranges with Python-style negative
  indices and ``i >= j -> []``, comprehensions iterate in parallel, if/else and
  ``&&``/``||`` are lazy);
* tensor sub-expressions become operations; intermediate tensors get fresh
  names ``<op><n>`` that avoid every user identifier (the Khronos convention,
  so that outputs are comparable);
* an invocation is either emitted as one operation or, when the ``lower``
  predicate asks for it (or a compound's array result length is only known
  after expansion), expanded through the fragment body. Expanded operations keep
  ``pos`` of the user's invocation and record the chain of invocations in
  ``origin``.

Values: ``int``/``float``/``bool``/``str``/``list``/``tuple`` for attributes,
:class:`~.graph.Identifier` for tensors.
"""
from __future__ import annotations

import math
import re
from typing import Callable

from . import ast
from . import types as T
from .graph import Identifier, Operation, Tensor
from .signatures import Plan, Signature
from ..errors import NNEFError

MAX_EXPANSION_DEPTH = 200
_MAX_ITEMS = 10_000_000
_INT_LITERAL = re.compile(r"^[+-]?\d+$")
_REAL_LITERAL = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")


def _err(msg, node):
    return NNEFError(msg, getattr(node, "pos", None))


class Frame:
    """One scope being evaluated: the graph body or one expansion of a fragment."""
    __slots__ = ("env", "binding", "origin", "targets", "sig")

    def __init__(self, env, binding=None, origin=(), targets=None, sig=None):
        self.env = env
        self.binding = binding
        self.origin = origin            # positions of the invocations being expanded (outermost first)
        self.targets = targets or {}    # result name -> target name structure
        self.sig = sig


class Evaluator:
    def __init__(self, graph, plans: dict, lower: Callable[[Signature], bool],
                 reserved: set, graph_params: set):
        self.graph = graph
        self.ops = graph.operations
        self.tensors = graph.tensors
        self.plans = plans
        self.lower = lower
        self.reserved = reserved
        self.graph_params = graph_params
        self._dispatch = {cls: getattr(self, "_" + cls.__name__) for cls in
                          (ast.Literal, ast.Name, ast.ArrayExpr, ast.TupleExpr, ast.UnaryOp, ast.BinaryOp,
                           ast.IfElse, ast.Comprehension, ast.Subscript, ast.Builtin, ast.Invocation)}
        self.counters: dict = {}
        self.variables: set = set()
        self.updated: set = set()

    # ---------------------------------------------------------------- names
    def fresh(self, op: str, suffix: str = "") -> Identifier:
        """``<op><n><suffix>`` with a per-operation counter, avoiding every user and earlier name."""
        n = self.counters.get(op, 0)
        while True:
            n += 1
            name = f"{op}{n}{suffix}"
            if name not in self.reserved and name not in self.tensors:
                break
        self.counters[op] = n
        return Identifier(name)

    def dtype_of(self, name) -> str:
        return self.tensors[name].dtype

    def declare(self, name, dtype) -> Identifier:
        ident = Identifier(name)
        self.tensors[ident] = Tensor(ident, dtype)
        return ident

    # ------------------------------------------------------- statements ---
    def assign(self, stmt: ast.Assignment, frame: Frame, graph_level: bool) -> None:
        lv = stmt.lvalue
        if graph_level and type(lv) is ast.Name:       # the common flat case
            value = self.eval(stmt.rvalue, frame, lv.name)
            if type(value) is not Identifier or value != lv.name:
                value = self.materialize(value, lv.name, stmt, frame)
            frame.env[lv.name] = value
            return
        target = self._target_of(lv, frame, graph_level)
        value = self.eval(stmt.rvalue, frame, target)
        self._bind(lv, value, frame, graph_level, stmt)

    def assign_invocation(self, stmt: ast.Assignment, plan: Plan, frame: Frame) -> None:
        """``assign(stmt, frame, True)`` for ``name = op(...)`` whose checked plan is at hand."""
        name = stmt.lvalue.name
        value = self.call(plan, plan.args, frame, name)
        if type(value) is not Identifier or value != name:
            value = self.materialize(value, name, stmt, frame)
        frame.env[name] = value

    def _target_of(self, lv, frame, graph_level):
        if isinstance(lv, ast.Name):
            if graph_level:
                return lv.name
            return frame.targets.get(lv.name)
        items = [self._target_of(i, frame, graph_level) for i in lv.items]
        return items if isinstance(lv, ast.ArrayExpr) else tuple(items)

    def _bind(self, lv, value, frame, graph_level, node):
        if isinstance(lv, ast.Name):
            if graph_level:
                frame.env[lv.name] = self.materialize(value, lv.name, node, frame)
            elif lv.name in frame.targets:
                frame.env[lv.name] = self.materialize(value, frame.targets[lv.name], node, frame)
            else:
                frame.env[lv.name] = value
            return
        is_array = isinstance(lv, ast.ArrayExpr)
        if not isinstance(value, list if is_array else tuple) or len(value) != len(lv.items):
            n = len(value) if isinstance(value, (list, tuple)) else 1
            raise _err(f"left-hand side has {len(lv.items)} items but the value has {n}", lv)
        for i, v in zip(lv.items, value):
            self._bind(i, v, frame, graph_level, node)

    def materialize(self, value, target, node, frame):
        """Make ``value`` live under the ``target`` name(s), inserting ``copy`` where needed (§5.10)."""
        if target is None:
            return value
        if isinstance(target, str):
            if isinstance(value, Identifier):
                if value == target:
                    return value
                dtype = self.dtype_of(value)
            elif isinstance(value, bool):
                dtype = "logical"
            elif isinstance(value, int):
                dtype = "integer"
            elif isinstance(value, float):
                dtype = "scalar"
            else:
                raise _err(f"cannot assign the non-numeric value {value!r} to tensor '{target}'", node)
            out = self.declare(target, dtype)
            self._emit_op("copy", {"x": value}, {"y": out}, {}, dtype, node.pos, frame)
            return out
        if isinstance(target, list):
            if not isinstance(value, list) or len(value) != len(target):
                n = len(value) if isinstance(value, list) else 1
                raise _err(f"array of {len(target)} tensors expected, but the value has {n} item(s)", node)
            return [self.materialize(v, t, node, frame) for v, t in zip(value, target)]
        if isinstance(target, tuple):
            return tuple(self.materialize(v, t, node, frame) for v, t in zip(value, target))
        return value

    # ------------------------------------------------------ expressions ---
    def eval(self, e, frame: Frame, target=None):
        cls = type(e)
        if cls is ast.Literal:
            return e.value
        return self._dispatch[cls](e, frame, target)

    def _Literal(self, e, frame, target):
        return e.value

    def _Name(self, e, frame, target):
        return frame.env[e.name]

    def _ArrayExpr(self, e, frame, target):
        if isinstance(target, list) and len(target) == len(e.items):
            return [self.eval(i, frame, t) for i, t in zip(e.items, target)]
        lit = ast.Literal
        return [i.value if type(i) is lit else self.eval(i, frame) for i in e.items]

    def _TupleExpr(self, e, frame, target):
        if isinstance(target, tuple) and len(target) == len(e.items):
            return tuple([self.eval(i, frame, t) for i, t in zip(e.items, target)])
        lit = ast.Literal
        return tuple([i.value if type(i) is lit else self.eval(i, frame) for i in e.items])

    def _UnaryOp(self, e, frame, target):
        plan = self.plans.get(id(e))
        if plan is not None:
            return self.call(plan, [e.operand], frame, target)
        v = self.eval(e.operand, frame)
        if e.op == "-":
            return -v
        if e.op == "!":
            return not v
        return v

    def _BinaryOp(self, e, frame, target):
        plan = self.plans.get(id(e))
        if plan is not None:
            return self.call(plan, plan.args, frame, target)
        op = e.op
        if op == "&&":
            return bool(self.eval(e.left, frame)) and bool(self.eval(e.right, frame))
        if op == "||":
            return bool(self.eval(e.left, frame)) or bool(self.eval(e.right, frame))
        a = self.eval(e.left, frame)
        b = self.eval(e.right, frame)
        return binary_attribute(op, a, b, e)

    def _IfElse(self, e, frame, target):
        if self.eval(e.cond, frame):
            return self.eval(e.then, frame, target)
        return self.eval(e.otherwise, frame, target)

    def _Comprehension(self, e, frame, target):
        iterables = []
        for it in e.iterators:
            v = self.eval(it.iterable, frame)
            iterables.append(v)
        n = len(iterables[0])
        for it, v in zip(e.iterators, iterables):
            if len(v) != n:
                raise _err(f"iterables of a comprehension must have the same length "
                           f"({n} vs {len(v)})", it)
        out = []
        env = dict(frame.env)
        inner = Frame(env, frame.binding, frame.origin, frame.targets, frame.sig)
        items_target = target if isinstance(target, list) else None
        for k in range(n):
            for it, v in zip(e.iterators, iterables):
                env[it.name] = v[k]
            if e.cond is not None and not self.eval(e.cond, inner):
                continue
            t = items_target[len(out)] if items_target is not None and len(out) < len(items_target) else None
            out.append(self.eval(e.body, inner, t))
        return out

    def _Subscript(self, e, frame, target):
        base = self.eval(e.base, frame)
        n = len(base)
        if e.is_range:
            begin = self.eval(e.begin, frame) if e.begin is not None else 0
            end = self.eval(e.end, frame) if e.end is not None else n
            if begin < 0:
                begin += n
            if end < 0:
                end += n
            if not (0 <= begin <= n):
                raise _err(f"range begin {begin} out of bounds for length {n}", e.begin)
            if not (0 <= end <= n):
                raise _err(f"range end {end} out of bounds for length {n}", e.end)
            return base[begin:end] if begin < end else base[0:0]
        i = self.eval(e.index, frame)
        if not (-n <= i < n):
            raise _err(f"index {i} out of range for length {n}", e.index)
        return base[i]

    def _Builtin(self, e, frame, target):
        v = self.eval(e.arg, frame)
        return builtin(e.name, v, e)

    def _Invocation(self, e, frame, target):
        plan = self.plans[id(e)]
        return self.call(plan, plan.args, frame, target)

    # ------------------------------------------------------- invocations ---
    def call(self, plan: Plan, arg_exprs, frame: Frame, target):
        sig = plan.sig
        values = []
        env = frame.env
        for p, a in zip(sig.params, arg_exprs):
            cls = type(a)
            if cls is ast.Name:
                values.append(env[a.name])
            elif cls is ast.Literal:
                values.append(a.value)
            elif a is not None:
                values.append(self.eval(a, frame))
            else:   # never share the signature's default objects with the graph
                d = p.default
                values.append(_copy_lists(d) if type(d) is list else d)
        binding = plan.binding
        if binding == T.GENERIC:
            binding = frame.binding
        fragment = sig.fragment
        if fragment is not None and fragment.body is not None \
                and (self.lower(sig) or self._needs_expansion(sig, target)):
            return self.expand(sig, values, binding, frame, target, plan.pos)
        return self.emit(sig, values, binding, frame, target, plan.pos)

    @staticmethod
    def _needs_expansion(sig, target):
        """A compound with array results assigned to single identifiers: only expansion knows the length."""
        if len(sig.results) == 1:
            if type(target) is str:         # a single name never holds an array result's items
                return isinstance(sig.results[0][1], T.ArrayT)
            targets = [target]
        else:
            targets = list(target) if isinstance(target, tuple) else [None] * len(sig.results)
        return any(isinstance(t, T.ArrayT) and not isinstance(tg, list)
                   for (_, t), tg in zip(sig.results, targets))

    def _result_targets(self, sig, target):
        if len(sig.results) == 1:
            return [target]
        if isinstance(target, tuple) and len(target) == len(sig.results):
            return list(target)
        return [None] * len(sig.results)

    def _outputs(self, typ, target, op_name, pos, fresh_ok=True):
        if isinstance(typ, T.TensorT):
            if isinstance(target, str):
                return self.declare(target, typ.item)
            return self.declare(self.fresh(op_name), typ.item)
        if isinstance(typ, T.ArrayT):
            if isinstance(target, list):
                if isinstance(typ.item, T.TensorT):   # unnamed items: <op><n>_<k> (Khronos convention)
                    return [self.declare(t if isinstance(t, str) else self.fresh(op_name, f"_{k + 1}"),
                                         typ.item.item) for k, t in enumerate(target)]
                return [self._outputs(typ.item, t, op_name, pos) for t in target]
            raise NNEFError(f"could not determine the length of the array result of '{op_name}'; "
                            f"list the items on the left-hand side ([a, b] = {op_name}(...))", pos)
        if isinstance(typ, T.TupleT):
            ts = target if isinstance(target, tuple) else [None] * len(typ.items)
            return tuple(self._outputs(i, t, op_name, pos) for i, t in zip(typ.items, ts))
        raise NNEFError(f"result of type '{typ}' cannot be an operation output", pos)

    def emit(self, sig: Signature, values, binding, frame, target, pos):
        inputs, attribs = {}, {}
        for p, v in zip(sig.params, values):
            if p.is_tensor:
                inputs[p.name] = v
            else:
                attribs[p.name] = v
        results = sig.results
        rname, rtype = results[0]
        if len(results) == 1 and type(rtype) is T.TensorT:     # the common case: one tensor
            item = rtype.item if rtype.item != T.GENERIC else binding
            out = self.declare(target if isinstance(target, str) else self.fresh(sig.name), item)
            outputs = {rname: out}
            results = [out]
        else:
            outputs = {}
            results = []
            for (rname, rtype), tg in zip(sig.results, self._result_targets(sig, target)):
                out = self._outputs(T.bind(rtype, binding), tg, sig.name, pos)
                outputs[rname] = out
                results.append(out)
        if sig.name not in _CHECKED_OPS:
            pass
        elif sig.name == "external":
            out = outputs["output"]
            if out not in self.graph_params:
                raise NNEFError(f"identifiers assigned by operation 'external' must be graph parameters; "
                                f"'{out}' is not", pos)
        elif sig.name == "variable":
            self.variables.add(outputs["output"])
            label = attribs.get("label")
            if isinstance(label, str):
                self.tensors[outputs["output"]].label = label
        elif sig.name == "update":
            var = inputs.get("variable")
            if not isinstance(var, Identifier) or var not in self.variables:
                raise NNEFError("first argument of operation 'update' must be a variable "
                                "(an identifier assigned by 'variable')", pos)
            if var in self.updated:
                raise NNEFError(f"variable '{var}' is updated more than once", pos)
            self.updated.add(var)
        self._emit_op(sig.name, inputs, outputs, attribs, binding if sig.generic else None, pos, frame)
        return results[0] if len(results) == 1 else tuple(results)

    def _emit_op(self, name, inputs, outputs, attribs, dtype, pos, frame):
        if frame.origin:
            op = Operation(name, inputs, outputs, attribs, dtype, frame.origin[0], frame.origin + (pos,))
        else:
            op = Operation(name, inputs, outputs, attribs, dtype, pos)
        self.ops.append(op)

    def expand(self, sig: Signature, values, binding, frame, target, pos):
        if len(frame.origin) >= MAX_EXPANSION_DEPTH:
            raise NNEFError(f"expansion of '{sig.name}' nests deeper than {MAX_EXPANSION_DEPTH} levels "
                            f"(unbounded recursion?)", pos)
        targets = {}
        for (rname, rtype), tg in zip(sig.results, self._result_targets(sig, target)):
            if tg is None and isinstance(rtype, T.TensorT):
                tg = str(self.fresh(sig.name))
                self.reserved.add(tg)
            targets[rname] = tg
        env = {p.name: v for p, v in zip(sig.params, values)}
        inner = Frame(env, binding, frame.origin + (pos,), targets, sig)
        for stmt in sig.fragment.body:
            try:
                self.assign(stmt, inner, False)
            except NNEFError as e:
                if frame.origin:
                    raise
                # report at the user's invocation, citing where inside the fragment it failed
                msgs = [f"{x.message} (at {x.pos}, while expanding '{sig.name}')" for x in e.errors]
                raise NNEFError.collect(NNEFError(m, pos) for m in msgs) from None
        results = [env[r] for r, _ in sig.results]
        return results[0] if len(results) == 1 else tuple(results)


_CHECKED_OPS = frozenset(("external", "variable", "update"))


# ------------------------------------------------------------ attributes ---
def _copy_lists(v):
    return [_copy_lists(x) if type(x) is list else x for x in v]


def _deep_eq(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_deep_eq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def binary_attribute(op, a, b, node):
    """Fold one binary operator on attribute values (types already checked)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        if isinstance(a, (list, str)) or isinstance(b, (list, str)):
            seq, count = (a, b) if isinstance(a, (list, str)) else (b, a)
            if count * len(seq) > _MAX_ITEMS:
                raise _err(f"repetition by {count} is too large", node)
            return seq * max(count, 0)
        return a * b
    if op == "/":
        if isinstance(a, int) and isinstance(b, int):
            if b == 0:
                raise _err("integer division by zero in a compile-time expression", node)
            q = abs(a) // abs(b)
            return q if (a >= 0) == (b >= 0) else -q
        if b == 0.0:      # scalars follow IEEE 754 (as the Khronos parser's float arithmetic)
            if a == 0.0 or math.isnan(a):
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    if op == "^":
        if isinstance(a, int) and isinstance(b, int):
            if b < 0:
                if a in (1, -1):
                    return 1 if a == 1 or b % 2 == 0 else -1
                raise _err(f"negative integer exponent {b} (result is not an integer)", node)
            if b > 64 and a not in (0, 1, -1):
                raise _err(f"integer power {a} ^ {b} is too large", node)
            return a ** b
        try:
            return math.pow(a, b)
        except ValueError:          # negative base, fractional exponent: NaN as in C pow()
            return math.nan
        except (OverflowError, ZeroDivisionError):
            return math.inf
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "==":
        return _deep_eq(a, b)
    if op == "!=":
        return not _deep_eq(a, b)
    if op == "in":
        return any(_deep_eq(a, x) for x in b)
    raise _err(f"unknown operator '{op}'", node)


def format_scalar(v: float) -> str:
    """NNEF literal spelling of a scalar (``1.5``, ``2.0``, ``1e-05``): Python's shortest repr.

    The spec intends the literal form; Khronos prints C++ ``to_string`` ("1.500000"), SPEC-NOTES E7.
    """
    return repr(float(v))


def builtin(name, v, node):
    """Evaluate ``length_of range_of integer scalar logical string`` (§5.8)."""
    if name == "length_of":
        return len(v)
    if name == "range_of":
        return list(range(len(v)))
    if name == "integer":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            if math.isnan(v) or math.isinf(v):
                raise _err(f"cannot convert {v} to integer", node)
            return int(v)         # truncation toward zero, as the Khronos parser (SPEC-NOTES E6)
        if isinstance(v, str):
            if _INT_LITERAL.match(v.strip()):
                return int(v.strip())
            raise _err(f"string '{v}' is not an integer literal", node)
    if name == "scalar":
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            if _REAL_LITERAL.match(v.strip()):
                return float(v.strip())
            raise _err(f"string '{v}' is not a numeric literal", node)
    if name == "logical":
        if isinstance(v, str):
            return len(v) > 0
        return bool(v)
    if name == "string":
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return format_scalar(v)
        if isinstance(v, str):
            return v
    raise _err(f"invalid argument for {name}()", node)
