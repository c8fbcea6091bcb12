"""NNEF text -> syntax tree (:mod:`.ast`), with lark's LALR(1) parser.

Implements the NNEF 1.0.5 grammar (spec section 3, Appendix A) as one
*compositional superset*: version line, extension lines (names separated by
commas or by whitespace, SPEC-NOTES E2), fragment definitions and operator
expressions are all accepted here. Whether a document is allowed to use them
(flat syntax vs. the two extensions) is the semantic checker's decision, so that
it can point at the exact offending node.

The tree is built while parsing (lark ``transformer=`` in LALR mode): no lark
parse tree is ever materialised, which keeps a 10,000-operation flat document
well under half a second. The lark parser is built once per process (and its
grammar analysis cached on disk by lark).

Every syntax error becomes an :class:`~nnef_tvm.errors.NNEFError` carrying the
file, line and column and saying what was expected; no lark exception escapes.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Optional

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import NNEFError, SourcePos
from . import ast

__all__ = ["parse", "KEYWORDS"]

_GRAMMAR_PATH = os.path.join(os.path.dirname(__file__), "grammar.lark")

#: Reserved words of NNEF (spec 3.1); they can never be identifiers.
KEYWORDS = frozenset(
    "version extension graph fragment tensor integer scalar logical string "
    "shape_of length_of range_of for in yield if else true false".split())

# Binding strength of the binary operators handled by the flat operator chain
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


def _new_pos(file, line, column, _new=object.__new__, _set=object.__setattr__):
    """A :class:`SourcePos` without the frozen-dataclass ``__init__`` cost (hot path)."""
    p = _new(SourcePos)
    _set(p, "__dict__", {"file": file, "line": line, "column": column, "offset": None})
    return p


def _unescape(body: str) -> str:
    """Apply the spec's string escapes ``\\\\ \\' \\"``; other backslashes stay literal."""
    out = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n and body[i + 1] in "\\'\"":
            out.append(body[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Builder(lark.Transformer):
    """lark callbacks turning each reduced rule straight into an :mod:`.ast` node.

    ``file`` is set by :func:`parse` before each run (runs are serialised).
    """

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.file: Optional[str] = None
        self.parenthesized: set = set()

    def _pos(self, tok) -> SourcePos:
        return _new_pos(self.file, tok.line, tok.column)

    # ------------------------------------------------------------ document
    def start(self, c):
        version_node = c[0]
        extensions, fragments, graph = [], [], None
        for item in c[1:]:
            if isinstance(item, list):
                extensions.extend(item)
            elif isinstance(item, ast.Fragment):
                fragments.append(item)
            elif isinstance(item, ast.GraphDef):
                graph = item
        version, version_pos = version_node
        return ast.Document(version=version, extensions=extensions, fragments=fragments,
                            graph=graph, file=self.file, version_pos=version_pos)

    def version(self, c):
        kw, number = c
        m = _VERSION_RE.match(number.value)
        if m is None:
            raise NNEFError(f"expected a version number of the form 'major.minor' (like 1.0), "
                            f"found '{number.value}'", self._pos(number))
        return (int(m.group(1)), int(m.group(2))), self._pos(kw)

    def extension(self, c):
        return [ast.Extension(tok.value, self._pos(tok)) for tok in c[1:]]

    # ----------------------------------------------------------- fragments
    def fragment(self, c):
        kw, name, generic = c[0], c[1], c[2]
        params = [x for x in c[3:-1] if isinstance(x, ast.Param)]
        results = [x for x in c[3:-1] if isinstance(x, ast.Result)]
        body = c[-1]
        return ast.Fragment(name=name.value, params=params, results=results, body=body,
                            generic=generic is not None,
                            generic_default=generic[1] if generic is not None else None,
                            pos=self._pos(kw))

    def generic_plain(self, c):
        tok = c[0]
        (word,) = _GENERIC_RE.findall(tok.value)
        if word != "?":
            raise NNEFError(f"expected '<?>' or '<? = type>' to declare a generic fragment, "
                            f"found '<{word}>'", self._pos(tok))
        return (True, None)

    def generic_default(self, c):
        lt, _q, type_name = c
        if type_name.name == "?":
            raise NNEFError("expected a type name (integer, scalar, logical or string) as "
                            "the default of the generic type, found '?'", type_name.pos)
        return (True, type_name.name)

    def fragment_body(self, c):
        return c[0]

    def no_body(self, c):
        return None

    def param(self, c):
        name, type_spec, default = c
        return ast.Param(name.value, type_spec, default, self._pos(name))

    def result(self, c):
        name, type_spec = c
        return ast.Result(name.value, type_spec, self._pos(name))

    def type_name(self, c):
        tok = c[0]
        return ast.PrimitiveType(tok.value, self._pos(tok))

    def tensor_type(self, c):
        kw, _lt, item = c
        return ast.TensorType(item, self._pos(kw))

    def array_type(self, c):
        item = c[0]
        return ast.ArrayType(item, item.pos)

    def tuple_type(self, c):
        return ast.TupleType(tuple(c[1:]), self._pos(c[0]))

    def negative_number(self, c):
        minus, number = c
        lit = self._number(number)
        lit.value = -lit.value
        lit.pos = self._pos(minus)
        return lit

    # --------------------------------------------------------------- graph
    def graph(self, c):
        kw, name, inputs, outputs, body = c
        return ast.GraphDef(name.value, inputs, outputs, body, self._pos(kw))

    def ident_list(self, c):
        return [ast.Name(tok.value, self._pos(tok)) for tok in c]

    def body(self, c):
        return c

    def assignment(self, c):
        lvalue, rvalue = c
        return ast.Assignment(lvalue, rvalue, lvalue.pos)

    def lvalue_bare_tuple(self, c):
        return ast.TupleExpr(c, c[0].pos)

    # --------------------------------------------------------- expressions
    def name(self, c):
        tok = c[0]
        return ast.Name(tok.value, _new_pos(self.file, tok.line, tok.column))

    def literal(self, c):
        tok = c[0]
        t = tok.type
        if t == "NUMBER":
            return self._number(tok)
        if t == "STRING":
            body = tok.value[1:-1]
            if "\\" in body:
                body = _unescape(body)
            return ast.Literal(body, "string", _new_pos(self.file, tok.line, tok.column))
        return ast.Literal(t == "KW_TRUE", "logical", _new_pos(self.file, tok.line, tok.column))

    def _number(self, tok):
        text = tok.value
        pos = _new_pos(self.file, tok.line, tok.column)
        if "." in text or "e" in text or "E" in text:
            return ast.Literal(float(text), "scalar", pos)
        return ast.Literal(int(text), "integer", pos)

    def empty_array(self, c):
        return ast.ArrayExpr([], self._pos(c[0]))

    def array(self, c):
        return ast.ArrayExpr(c[1:], self._pos(c[0]))

    def tuple(self, c):
        return ast.TupleExpr(c[1:], self._pos(c[0]))

    def paren(self, c):
        inner = c[0]
        if type(inner) is ast.Literal:
            self.parenthesized.add(id(inner))
        return inner

    def unary_op(self, c):
        op, operand = c
        if (op.value == "-" and type(operand) is ast.Literal
                and operand.kind in ("integer", "scalar")
                and id(operand) not in self.parenthesized):
            # flat syntax: a '-' directly before a number belongs to the literal
            return ast.Literal(-operand.value, operand.kind, self._pos(op))
        return ast.UnaryOp(op.value, operand, self._pos(op))

    def power_op(self, c):
        left, _caret, right = c
        return ast.BinaryOp("^", left, right, left.pos)

    def operator_chain(self, c):
        prec = _PRECEDENCE
        operands = [c[0]]
        ops = []
        for i in range(1, len(c), 2):
            op = c[i].value
            p = prec[op]
            while ops and prec[ops[-1]] >= p:
                right = operands.pop()
                left = operands.pop()
                operands.append(ast.BinaryOp(ops.pop(), left, right, left.pos))
            ops.append(op)
            operands.append(c[i + 1])
        while ops:
            right = operands.pop()
            left = operands.pop()
            operands.append(ast.BinaryOp(ops.pop(), left, right, left.pos))
        return operands[0]

    def if_else(self, c):
        then, cond, otherwise = c
        return ast.IfElse(cond, then, otherwise, then.pos)

    def index(self, c):
        base, idx = c
        return ast.Subscript(base, index=idx, pos=base.pos)

    def range_index(self, c):
        base, begin, end = c
        return ast.Subscript(base, begin=begin, end=end, is_range=True, pos=base.pos)

    def builtin(self, c):
        kw, arg = c
        return ast.Builtin(kw.value, arg, self._pos(kw))

    def invocation(self, c):
        name, generic = c[0], c[1]
        dtype = _GENERIC_RE.findall(generic.value)[0] if generic is not None else None
        return ast.Invocation(name.value, c[2:], dtype, _new_pos(self.file, name.line, name.column))

    def argument(self, c):
        value = c[0]
        return ast.Argument(value, None, value.pos)

    def named_argument(self, c):
        name, value = c
        return ast.Argument(value, name.value, _new_pos(self.file, name.line, name.column))

    def comprehension(self, c):
        bracket, iterators, cond, body = c[0], c[1:-2], c[-2], c[-1]
        return ast.Comprehension(list(iterators), cond, body, self._pos(bracket))

    def iterator(self, c):
        name, _in, iterable = c
        return ast.Iterator(name.value, iterable, self._pos(name))


# ------------------------------------------------------------------ parser ----
_lock = threading.Lock()
_builder = _Builder()
_parser: Optional[lark.Lark] = None


def _get_parser() -> lark.Lark:
    global _parser
    if _parser is None:
        with open(_GRAMMAR_PATH) as f:
            grammar = f.read()
        kwargs = dict(parser="lalr", lexer="basic", transformer=_builder,
                      maybe_placeholders=True, propagate_positions=False)
        try:
            _parser = lark.Lark(grammar, cache=True, **kwargs)
        except Exception:  # pragma: no cover - unwritable temp dir: analyse every time
            _parser = lark.Lark(grammar, **kwargs)
    return _parser


def parse(text: str, file: Optional[str] = None, *, allow_no_graph: bool = False) -> ast.Document:
    """Parse an NNEF document into an :class:`.ast.Document`.

    ``file`` is recorded in every node position (and in error messages).
    ``allow_no_graph`` accepts a fragment-only file (the standard library prelude).
    Raises :class:`NNEFError` (located) for any syntax error.
    """
    parser = _get_parser()
    with _lock:
        _builder.file = file
        _builder.parenthesized = set()
        try:
            doc = parser.parse(text)
        except UnexpectedInput as e:
            raise _syntax_error(e, text, file, parser) from None
        except NNEFError:
            raise
        finally:
            _builder.parenthesized = set()
    if doc.graph is None and not allow_no_graph:
        line, column = _end_position(text)
        raise NNEFError("expected a graph definition ('graph name( inputs ) -> ( outputs ) "
                        "{ ... }'), found end of file", SourcePos(file, line, column))
    return doc


# ------------------------------------------------------------------ errors ----
# How lark's terminal names read in a message.
_TOKEN_WORDS = {
    "IDENT": "identifier",
    "NUMBER": "number",
    "STRING": "string literal",
    "GENERIC": "'<type>'",
    "$END": "end of file",
}
_OPERATOR_TOKENS = frozenset(
    "AND OR LT LE GT GE EQ NE PLUS MINUS STAR SLASH CARET KW_IN".split())
# Most telling expectations first: punctuation that ends or separates things.
_PUNCT_ORDER = [";", ",", ")", "]", "}", "=", ":", "->", "(", "{", "["]
_MAX_EXPECTED = 5


def _end_position(text: str) -> tuple[int, int]:
    """(line, column) just past the last character of ``text``."""
    line = text.count("\n") + 1
    last = text.rfind("\n")
    return line, len(text) - last


def _terminal_text(name: str, parser: lark.Lark) -> str:
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    for t in parser.terminals:
        if t.name == name:
            if isinstance(t.pattern, lark.lexer.PatternStr):
                return f"'{t.pattern.value}'"
            break
    return name.lower()  # pragma: no cover - every terminal is named above


def _describe_token(tok) -> str:
    t = tok.type
    if t == "$END":
        return "end of file"
    if t == "IDENT":
        return f"identifier '{tok.value}'"
    if t == "NUMBER":
        return f"number '{tok.value}'"
    if t == "STRING":
        return f"string {tok.value}"
    if t.startswith("KW_") or tok.value in KEYWORDS:
        return f"keyword '{tok.value}'"
    return f"'{tok.value}'"


def _describe_expected(expected, parser: lark.Lark) -> str:
    names = set(expected)
    words = []
    operators = names & _OPERATOR_TOKENS
    if len(operators) >= 3:
        names -= operators
    texts = [_terminal_text(n, parser) for n in names]

    def rank(text):
        bare = text.strip("'")
        if text.startswith("'") and bare in _PUNCT_ORDER:
            return (0, _PUNCT_ORDER.index(bare), text)
        if not text.startswith("'"):
            return (1, 0, text)       # identifier, number, ...
        return (2, 0, text)           # keywords and remaining symbols
    texts.sort(key=rank)
    if len(operators) >= 3:
        texts.append("an operator")
    if len(texts) > _MAX_EXPECTED:
        texts = texts[:_MAX_EXPECTED - 1] + ["..."]
    words = texts
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_context(err) -> str:
    """' after X' for what the parser had just read, or ''."""
    try:
        stack = err.interactive_parser.parser_state.value_stack
    except AttributeError:  # pragma: no cover
        return ""
    if not stack:
        return ""
    top = stack[-1]
    if isinstance(top, lark.Token):
        return " after " + _describe_token(top)
    kinds = [
        (ast.Argument, "argument"), (ast.Assignment, "statement"), (ast.Param, "parameter"),
        (ast.Result, "result"), (ast.Fragment, "fragment definition"),
        (ast.Iterator, "iterator"),
        ((ast.PrimitiveType, ast.TensorType, ast.ArrayType, ast.TupleType), "type"),
        ((ast.Literal, ast.Name, ast.ArrayExpr, ast.TupleExpr, ast.UnaryOp, ast.BinaryOp,
          ast.IfElse, ast.Comprehension, ast.Subscript, ast.Builtin, ast.Invocation),
         "expression"),
    ]
    for cls, word in kinds:
        if isinstance(top, cls):
            return " after " + word
    return ""


def _lexer_error_message(text: str, index: int) -> str:
    ch = text[index]
    nxt = text[index + 1] if index + 1 < len(text) else ""
    if ch in "'\"":
        return f"unterminated string literal: no closing {ch} on the same line"
    if ch == "." and nxt.isdigit():
        return ("a number must start with a digit: write 0" + text[index:index + 2]
                + " instead of " + text[index:index + 2])
    if ch == "&" or ch == "|":
        return f"invalid character '{ch}' (did you mean '{ch}{ch}'?)"
    if ord(ch) > 126 or (ord(ch) < 32 and ch not in "\t\n\r\f\v"):
        return f"invalid character U+{ord(ch):04X} (NNEF text is printable ASCII)"
    return f"invalid character '{ch}'"


def _syntax_error(e: UnexpectedInput, text: str, file: Optional[str],
                  parser: lark.Lark) -> NNEFError:
    if isinstance(e, UnexpectedCharacters):
        return NNEFError(_lexer_error_message(text, e.pos_in_stream),
                         SourcePos(file, e.line, e.column))
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line, column = _end_position(text)
        else:
            line, column = tok.line, tok.column
        expected = _describe_expected(e.expected, parser)
        message = f"expected {expected}{_describe_context(e)}, found {_describe_token(tok)}"
        if "IDENT" in e.expected and tok.type != "IDENT" and tok.value in KEYWORDS:
            message += f" ('{tok.value}' is a reserved keyword and cannot be an identifier)"
        return NNEFError(message, SourcePos(file, line, column))
    line = getattr(e, "line", None)  # pragma: no cover - UnexpectedEOF is not raised by LALR
    return NNEFError("unexpected end of file", SourcePos(file, line, getattr(e, "column", None)))
