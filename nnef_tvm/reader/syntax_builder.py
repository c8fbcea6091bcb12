"""lark rule callbacks that turn each reduction straight into an :mod:`.ast` node.

The grammar (``grammar.lark``, NNEF 1.0.5 section 3 and Appendix A) is a
*compositional superset*: version line, extension lines (names separated by
commas or by whitespace, SPEC-NOTES E2), fragment definitions and operator
expressions are all accepted here. Whether a document may use them (flat
syntax vs. the two extensions) is the semantic checker's decision, so that it
can point at the exact offending node. The callbacks therefore only build
nodes and reject what the grammar cannot express (malformed version numbers,
``<x>`` generics, multi-index subscripts), each with a located
:class:`~nnef_tvm.errors.NNEFError`.

No lark tree is ever made: the same :class:`_Builder` methods are called by
our own LALR driver (:mod:`.syntax_driver`) and by lark's loop (the reference
used in tests).
"""
from __future__ import annotations

import re
from typing import Optional

import lark

from ..errors import NNEFError
from . import ast
from .syntax_nodes import _build_numeric, _numeric_recipe, _numeric_recipes, _pos, _pos_at, _unescape

# Binding strength of the binary operators of the flat operator chain
# (spec 3.3.3; all left-associative). `^` is parsed by the grammar itself.
_PRECEDENCE = {
    "in": 1,
    "&&": 2, "||": 2,
    "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5,
}

_VERSION_RE = re.compile(r"^([0-9]+)\.([0-9]+)$")
_GENERIC_RE = re.compile(r"[A-Za-z?]+")

class _Header:
    """Version line and extension lines, collected before the definitions."""
    __slots__ = ("version", "pos", "extensions")

    def __init__(self, version, pos):
        self.version = version
        self.pos = pos
        self.extensions = []


_Argument = ast.Argument


def _arguments(items):
    """Invocation arguments: positional ones (bare expressions) wrapped as unnamed Arguments."""
    return [a if type(a) is _Argument else _Argument(a, None, a.pos) for a in items]


class _Builder(lark.Transformer):
    """Rule callbacks turning each reduction straight into an :mod:`.ast` node.

    Each method receives the children exactly as written in ``grammar.lark``
    (tokens included). ``file`` is set by :func:`.syntax.parse` before each run (runs
    are serialised by a lock).
    """

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.file: Optional[str] = None
        self.parenthesized: set = set()

    # ------------------------------------------------------------- generic
    def list_first(self, c):
        return [c[0]]

    def list_append(self, c):
        items = c[0]
        items.append(c[-1])
        return items

    # ------------------------------------------------------------ document
    def document(self, c):
        header = c[0]
        fragments, graph = [], None
        for item in c[1:]:
            if type(item) is list:
                fragments = item
            else:
                graph = item
        return ast.Document(version=header.version, extensions=header.extensions,
                            fragments=fragments, graph=graph, file=self.file,
                            version_pos=header.pos)

    def version(self, c):
        kw, number = c[0], c[1]
        m = _VERSION_RE.match(number.value)
        if m is None:
            raise NNEFError(f"expected a version number of the form 'major.minor' (like 1.0), "
                            f"found '{number.value}'", _pos(self.file, number))
        return _Header((int(m.group(1)), int(m.group(2))), _pos(self.file, kw))

    def add_extensions(self, c):
        header = c[0]
        header.extensions.extend(c[1])
        return header

    def extension(self, c):
        return c[1]

    def extension_first(self, c):
        return [ast.Extension(c[0].value, _pos(self.file, c[0]))]

    def extension_append(self, c):
        tok = c[-1]
        c[0].append(ast.Extension(tok.value, _pos(self.file, tok)))
        return c[0]

    # ----------------------------------------------------------- fragments
    def fragment(self, c):
        # KW_FRAGMENT IDENT ( params ) -> ( results ) body
        return ast.Fragment(name=c[1].value, params=c[3], results=c[7], body=c[9],
                            pos=_pos(self.file, c[0]))

    def generic_fragment(self, c):
        # KW_FRAGMENT IDENT generic ( params ) -> ( results ) body
        return ast.Fragment(name=c[1].value, params=c[4], results=c[8], body=c[10],
                            generic=True, generic_default=c[2], pos=_pos(self.file, c[0]))

    def generic_plain(self, c):
        tok = c[0]
        (word,) = _GENERIC_RE.findall(tok.value)
        if word != "?":
            raise NNEFError(f"expected '<?>' or '<? = type>' to declare a generic fragment, "
                            f"found '<{word}>'", _pos(self.file, tok))
        return None

    def generic_default(self, c):
        type_name = c[3]
        if type_name.name == "?":
            raise NNEFError("expected a type name (integer, scalar, logical or string) as "
                            "the default of the generic type, found '?'", type_name.pos)
        return type_name.name

    def no_body(self, c):
        return None

    def param(self, c):
        return ast.Param(c[0].value, c[2], None, _pos(self.file, c[0]))

    def param_default(self, c):
        return ast.Param(c[0].value, c[2], c[4], _pos(self.file, c[0]))

    def result(self, c):
        return ast.Result(c[0].value, c[2], _pos(self.file, c[0]))

    def type_name(self, c):
        return ast.PrimitiveType(c[0].value, _pos(self.file, c[0]))

    def tensor_type(self, c):
        return ast.TensorType(c[2], _pos(self.file, c[0]))

    def unbound_tensor_type(self, c):
        return ast.TensorType(None, _pos(self.file, c[0]))

    def array_type(self, c):
        return ast.ArrayType(c[0], c[0].pos)

    def tuple_type(self, c):
        return ast.TupleType(tuple([c[1]] + c[3]), _pos(self.file, c[0]))

    def negative_number(self, c):
        lit = self.number(c[1:])
        lit.value = -lit.value
        lit.pos = _pos(self.file, c[0])
        return lit

    # --------------------------------------------------------------- graph
    def graph(self, c):
        # KW_GRAPH IDENT ( inputs ) -> ( outputs ) body
        return ast.GraphDef(c[1].value, c[3], c[7], c[9], _pos(self.file, c[0]))

    def name_list_first(self, c):
        return [ast.Name(c[0].value, _pos(self.file, c[0]))]

    def name_list_append(self, c):
        tok = c[2]
        c[0].append(ast.Name(tok.value, _pos(self.file, tok)))
        return c[0]

    def body(self, c):
        return c[1]

    def assignment(self, c):
        lvalue = c[0]
        return ast.Assignment(lvalue, c[2], lvalue.pos)

    def bare_tuple(self, c):
        first = c[0]
        return ast.TupleExpr([first] + c[2], first.pos)

    # --------------------------------------------------------- expressions
    def name(self, c):
        tok = c[0]
        return ast.Name(tok.value, _pos(self.file, tok))

    def number(self, c):
        tok = c[0]
        text = tok.value
        if "." in text or "e" in text or "E" in text:
            return ast.Literal(float(text), "scalar", _pos(self.file, tok))
        return ast.Literal(int(text), "integer", _pos(self.file, tok))

    def string(self, c):
        tok = c[0]
        body = tok.value[1:-1]
        if "\\" in body:
            body = _unescape(body)
        return ast.Literal(body, "string", _pos(self.file, tok))

    def logical(self, c):
        tok = c[0]
        return ast.Literal(tok.value == "true", "logical", _pos(self.file, tok))

    def numeric_array(self, c):
        return self._expand_numeric_array(c[0])

    def numeric_index(self, c):
        # `x[0]`: the subscript was lexed as a one-item NUMERIC_ARRAY
        base, tok = c
        array = self._expand_numeric_array(tok)
        if len(array.items) != 1:
            depth = 0
            for i, ch in enumerate(tok.value):
                depth += ch in "[(" and 1 or ch in "])" and -1 or 0
                if ch == "," and depth == 1:
                    break
            raise NNEFError("expected ']' or ':' after the subscript index, found ','",
                            _pos_at(self.file, tok.line, tok.column + i))
        return ast.Subscript(base, index=array.items[0], pos=base.pos)

    def _expand_numeric_array(self, tok):
        """The ArrayExpr of a NUMERIC_ARRAY token (same nodes as the general rules)."""
        recipe = _numeric_recipes.get(tok.value)
        if recipe is None:
            if len(_numeric_recipes) > 20_000:
                _numeric_recipes.clear()
            recipe = _numeric_recipes[tok.value] = _numeric_recipe(tok.value)
        return _build_numeric(recipe, self.file, tok.line, tok.column)

    def empty_array(self, c):
        return ast.ArrayExpr([], _pos(self.file, c[0]))

    def array(self, c):
        return ast.ArrayExpr(c[1], _pos(self.file, c[0]))

    def tuple(self, c):
        return ast.TupleExpr([c[1]] + c[3], _pos(self.file, c[0]))

    def paren(self, c):
        inner = c[1]
        if type(inner) is ast.Literal:
            self.parenthesized.add(id(inner))
        return inner

    def unary_op(self, c):
        op, operand = c
        if (op.value == "-" and type(operand) is ast.Literal
                and operand.kind in ("integer", "scalar")
                and id(operand) not in self.parenthesized):
            # flat syntax: a '-' directly before a number belongs to the literal
            return ast.Literal(-operand.value, operand.kind, _pos(self.file, op))
        return ast.UnaryOp(op.value, operand, _pos(self.file, op))

    def power_op(self, c):
        left = c[0]
        return ast.BinaryOp("^", left, c[2], left.pos)

    def chain_first(self, c):
        return c

    def chain_append(self, c):
        items = c[0]
        items.append(c[1])
        items.append(c[2])
        return items

    def operator_chain(self, c):
        """Arrange ``operand (op operand)+`` by precedence (all left-associative)."""
        items = c[0]
        prec = _PRECEDENCE
        operands = [items[0]]
        ops = []
        for i in range(1, len(items), 2):
            op = items[i].value
            p = prec[op]
            while ops and prec[ops[-1]] >= p:
                right = operands.pop()
                left = operands.pop()
                operands.append(ast.BinaryOp(ops.pop(), left, right, left.pos))
            ops.append(op)
            operands.append(items[i + 1])
        while ops:
            right = operands.pop()
            left = operands.pop()
            operands.append(ast.BinaryOp(ops.pop(), left, right, left.pos))
        return operands[0]

    def if_else(self, c):
        then = c[0]
        return ast.IfElse(c[2], then, c[4], then.pos)

    def index(self, c):
        base = c[0]
        return ast.Subscript(base, index=c[2], pos=base.pos)

    def range_index(self, c):
        base = c[0]
        return ast.Subscript(base, begin=c[2], end=c[4], is_range=True, pos=base.pos)

    def range_from(self, c):
        base = c[0]
        return ast.Subscript(base, begin=c[2], is_range=True, pos=base.pos)

    def range_to(self, c):
        base = c[0]
        return ast.Subscript(base, end=c[3], is_range=True, pos=base.pos)

    def range_all(self, c):
        base = c[0]
        return ast.Subscript(base, is_range=True, pos=base.pos)

    def builtin(self, c):
        return ast.Builtin(c[0].value, c[2], _pos(self.file, c[0]))

    def invocation(self, c):
        # IDENT ( arguments )
        name = c[0]
        return ast.Invocation(name.value, _arguments(c[2]), None, _pos(self.file, name))

    def generic_invocation(self, c):
        # IDENT GENERIC ( arguments )
        name = c[0]
        dtype = _GENERIC_RE.findall(c[1].value)[0]
        return ast.Invocation(name.value, _arguments(c[3]), dtype, _pos(self.file, name))

    def named_argument(self, c):
        name = c[0]
        return ast.Argument(c[2], name.value, _pos(self.file, name))

    def comprehension(self, c):
        # [ for iterators yield expr ]
        return ast.Comprehension(c[2], None, c[4], _pos(self.file, c[0]))

    def filtered_comprehension(self, c):
        # [ for iterators if expr yield expr ]
        return ast.Comprehension(c[2], c[4], c[6], _pos(self.file, c[0]))

    def iterator(self, c):
        return ast.Iterator(c[0].value, c[2], _pos(self.file, c[0]))

    def __default__(self, data, children, meta):  # pragma: no cover - grammar bug guard
        raise AssertionError(f"grammar rule {data!r} has no callback in syntax_builder._Builder")

