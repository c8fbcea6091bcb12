"""NNEF text -> syntax tree (:mod:`.ast`), on lark's LALR(1) tables.

Implements the NNEF 1.0.5 grammar (spec section 3, Appendix A; ``grammar.lark``)
as one *compositional superset*: version line, extension lines (names separated
by commas or by whitespace, SPEC-NOTES E2), fragment definitions and operator
expressions are all accepted here. Whether a document is allowed to use them
(flat syntax vs. the two extensions) is the semantic checker's decision, so that
it can point at the exact offending node.

lark analyses the grammar once per process and gives the LALR(1) tables and
one callback per rule (our :class:`_Builder` methods, building the
:mod:`.ast` nodes during the parse -- no lark tree is ever made). The tables
are then run by :func:`_drive`, a minimal shift/reduce loop fed by a single
master regular expression; lark's own generic lexer and loop cost a few
microseconds more per token, too slow for 10,000-operation documents.
``_parse_with_lark`` runs lark's loop with the same callbacks (tests compare
the two).

Every syntax error becomes an :class:`~nnef_tvm.errors.NNEFError` carrying the
file, line and column and saying what was expected; no lark exception escapes.
"""
from __future__ import annotations

import gc
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


def _fast_pos_at(file, line, column, _new=object.__new__, _cls=SourcePos):
    """``SourcePos(file, line, column)`` without the frozen-dataclass ``__init__``.

    Called for almost every node (a third of the callbacks' time with the
    regular constructor), so it fills the instance dict directly.
    """
    p = _new(_cls)
    d = p.__dict__
    d["file"] = file
    d["line"] = line
    d["column"] = column
    d["offset"] = None
    return p


def _fast_pos(file, tok, _new=object.__new__, _cls=SourcePos):
    """``SourcePos(file, tok.line, tok.column)``, built like :func:`_fast_pos_at`."""
    p = _new(_cls)
    d = p.__dict__
    d["file"] = file
    d["line"] = tok.line
    d["column"] = tok.column
    d["offset"] = None
    return p


def _slow_pos_at(file, line, column):
    return SourcePos(file, line, column)


def _slow_pos(file, tok):
    return SourcePos(file, tok.line, tok.column)


def _fast_positions_work() -> bool:
    try:
        fast, slow = _fast_pos_at("f", 1, 2), SourcePos("f", 1, 2)
        return fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    except (AttributeError, TypeError):  # pragma: no cover - SourcePos without __dict__
        return False


# the plain constructor only if errors.SourcePos ever stops having an instance dict
_pos_at, _pos = ((_fast_pos_at, _fast_pos) if _fast_positions_work()
                 else (_slow_pos_at, _slow_pos))


# pieces of a NUMERIC_ARRAY token
_NUMERIC_PIECE_RE = re.compile(r"-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|[\[\](),]")


# NUMERIC_ARRAY text -> its recipe: (ArrayExpr | TupleExpr, offset, [items]) with
# items either recipes or (None, offset, value, kind) for a number. The same
# lists recur all over a document (`[1, 1]`, `[(0, 0), (1, 1)]`), so each text is
# analysed once.
_numeric_recipes: dict = {}


def _numeric_recipe(text: str):
    stack = []
    node = None
    for m in _NUMERIC_PIECE_RE.finditer(text):
        piece = m.group()
        if piece == ",":
            continue
        if piece == "[" or piece == "(":
            node = (ast.ArrayExpr if piece == "[" else ast.TupleExpr, m.start(), [])
            if stack:
                stack[-1][2].append(node)
            stack.append(node)
        elif piece == "]" or piece == ")":
            node = stack.pop()
        elif "." in piece or "e" in piece or "E" in piece:
            stack[-1][2].append((None, m.start(), float(piece), "scalar"))
        else:
            stack[-1][2].append((None, m.start(), int(piece), "integer"))
    return node


def _build_numeric(recipe, file, line, column, _literal=ast.Literal):
    """Fresh nodes for a recipe, positioned relative to the token at ``line:column``."""
    cls, offset, items = recipe
    out = []
    for item in items:
        if item[0] is None:
            out.append(_literal(item[2], item[3], _pos_at(file, line, column + item[1])))
        else:
            out.append(_build_numeric(item, file, line, column))
    return cls(out, _pos_at(file, line, column + offset))


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


class _Header:
    """Version line and extension lines, collected before the definitions."""
    __slots__ = ("version", "pos", "extensions")

    def __init__(self, version, pos):
        self.version = version
        self.pos = pos
        self.extensions = []


_Argument = ast.Argument


class _Builder(lark.Transformer):
    """Rule callbacks turning each reduction straight into an :mod:`.ast` node.

    Each method receives the children exactly as written in ``grammar.lark``
    (tokens included). ``file`` is set by :func:`parse` before each run (runs
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
        args = [a if type(a) is _Argument else _Argument(a, None, a.pos) for a in c[2]]
        return ast.Invocation(name.value, args, None, _pos(self.file, name))

    def generic_invocation(self, c):
        # IDENT GENERIC ( arguments )
        name = c[0]
        dtype = _GENERIC_RE.findall(c[1].value)[0]
        args = [a if type(a) is _Argument else _Argument(a, None, a.pos) for a in c[3]]
        return ast.Invocation(name.value, args, dtype, _pos(self.file, name))

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
        raise AssertionError(f"grammar rule {data!r} has no callback in syntax._Builder")


# ------------------------------------------------------------------ parser ----
class _Tok:
    """A token as the driver hands it to the callbacks (lighter than lark.Token)."""
    __slots__ = ("type", "value", "line", "column")

    def __init__(self, type, value, line, column):
        self.type = type
        self.value = value
        self.line = line
        self.column = column

    def __repr__(self):  # pragma: no cover - debugging aid
        return f"_Tok({self.type}, {self.value!r}, {self.line}:{self.column})"


# Tokens whose value and position no callback reads: the driver pushes their
# text instead of a _Tok object.
_PLAIN_TOKENS = frozenset("SEMICOLON COMMA RPAR RSQB LBRACE RBRACE EQUAL COLON ARROW".split())


class _PassThrough(dict):
    """Parse action: reduce a one-child ``?rule`` whose value passes through unchanged.

    Such reductions come in runs (``number`` -> ``postfix`` -> ... -> ``argument``)
    that only replace the top state, and where the run ends depends only on the
    state below it; that end state is remembered per state below
    (``id(state) -> state``), so a whole run costs one lookup.
    """
    __slots__ = ("origin", "lookahead")

    def __init__(self, origin, lookahead):
        super().__init__()
        self.origin = origin
        self.lookahead = lookahead

    def resolve(self, below):
        top = below[self.origin]
        action = top.get(self.lookahead)
        while action.__class__ is _PassThrough:
            top = below[action.origin]
            action = top.get(self.lookahead)
        self[id(below)] = top
        return top


class _Append(tuple):
    """Parse action ``(size, origin)``: append the last child to the list that is the first.

    The driver does it in place (no callback) -- one per list item.
    """
    __slots__ = ()


class _Tables:
    """lark's LALR(1) tables and rule callbacks, re-packed for :func:`_drive`.

    Each state is a dict mapping a symbol to its action: the next state (a dict)
    for a shift or goto, a :class:`_PassThrough`, or ``(size, callback, origin)``
    for any other reduction.
    """

    def __init__(self, lk: lark.Lark):
        from lark.parse_tree_builder import ExpandSingleChild
        from lark.parsers.lalr_analysis import Shift

        inner = lk.parser.parser.parser
        table, callbacks = inner.parse_table, inner.callbacks
        states = {state: {} for state in table.states}
        for state, actions in table.states.items():
            packed = states[state]
            for symbol, (action, arg) in actions.items():
                if action is Shift:
                    packed[symbol] = states[arg]
                elif len(arg.expansion) == 1 and type(callbacks[arg]) is ExpandSingleChild:
                    packed[symbol] = _PassThrough(arg.origin.name, symbol)
                elif callbacks[arg] == _builder.list_append:
                    packed[symbol] = _Append((len(arg.expansion), arg.origin.name))
                else:
                    packed[symbol] = (len(arg.expansion), callbacks[arg], arg.origin.name)
        self.by_number = states
        self.start_state = states[table.start_states["start"]]
        self.end_state = states[table.end_states["start"]]

        keywords, punctuation, patterns = {}, {}, {}
        for t in lk.terminals:
            if isinstance(t.pattern, lark.lexer.PatternStr):
                if t.pattern.value.isidentifier():
                    keywords[t.pattern.value] = t.name
                else:
                    punctuation[t.pattern.value] = t.name
            else:
                patterns[t.name] = t.pattern.to_regexp()
        assert set(keywords) == KEYWORDS, set(keywords) ^ KEYWORDS
        self.keywords = keywords
        self.punctuation = punctuation
        # Alternatives ordered by how often they occur in real documents; a
        # punctuation mark that can start a longer token ('[' a NUMERIC_ARRAY,
        # '<' a GENERIC) is only tried after that token.
        by_length = sorted(punctuation, key=len, reverse=True)
        late = [p for p in by_length if p[0] in "[<"]
        early = [p for p in by_length if p[0] not in "[<"]
        # Blanks before a token are matched with it (half as many matches);
        # a line break ends a match of its own so that lines can be counted.
        self.scanner = re.compile("[ \t\f\v\r]*(?:" + "|".join([
            "(?P<P>" + "|".join(map(re.escape, early)) + ")",
            f"(?P<IDENT>{patterns['IDENT']})",
            r"(?P<N>\n[ \t\r\n\f\v]*)",
            f"(?P<NUMERIC_ARRAY>{patterns['NUMERIC_ARRAY']})",
            f"(?P<GENERIC>{patterns['GENERIC']})",
            "(?P<Q>" + "|".join(map(re.escape, late)) + ")",
            f"(?P<STRING>{patterns['STRING']})",
            f"(?P<NUMBER>{patterns['NUMBER']})",
            f"(?P<C>{patterns['COMMENT']})",
            r"(?P<E>[\s\S])",
            r"(?P<END>\Z)",
        ]) + ")")


_lock = threading.Lock()
_builder = _Builder()
_parser: Optional[lark.Lark] = None
_tables: Optional[_Tables] = None


def _get_parser() -> lark.Lark:
    """The lark object (built once; grammar analysis cached on disk by lark)."""
    global _parser, _tables
    if _parser is None:
        with open(_GRAMMAR_PATH) as f:
            grammar = f.read()
        kwargs = dict(parser="lalr", lexer="basic", transformer=_builder,
                      keep_all_tokens=True, maybe_placeholders=False)
        try:
            lk = lark.Lark(grammar, cache=True, **kwargs)
        except Exception:  # pragma: no cover - unwritable temp dir: analyse every time
            lk = lark.Lark(grammar, **kwargs)
        _tables = _Tables(lk)
        _parser = lk
    return _parser


def parse(text: str, file: Optional[str] = None, *, allow_no_graph: bool = False) -> ast.Document:
    """Parse an NNEF document into an :class:`.ast.Document`.

    ``file`` is recorded in every node position (and in error messages).
    ``allow_no_graph`` accepts a fragment-only file (the standard library prelude).
    Raises :class:`NNEFError` (located) for any syntax error.
    """
    _get_parser()
    with _lock:
        _builder.file = file
        _builder.parenthesized = set()
        # The tree is acyclic and all of it stays alive: cyclic GC passes over
        # the growing tree would only cost time (about a third of the parse).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            doc = _drive(_tables, text, file)
        finally:
            if gc_was_enabled:
                gc.enable()
            _builder.parenthesized = set()
    return _check_graph(doc, text, file, allow_no_graph)


def _parse_with_lark(text: str, file: Optional[str] = None, *,
                     allow_no_graph: bool = False) -> ast.Document:
    """The same parse through lark's own lexer and parser loop (reference for tests)."""
    parser = _get_parser()
    with _lock:
        _builder.file = file
        _builder.parenthesized = set()
        try:
            doc = parser.parse(text)
        except UnexpectedInput as e:
            raise _syntax_error(e, text, file) from None
        finally:
            _builder.parenthesized = set()
    return _check_graph(doc, text, file, allow_no_graph)


def _check_graph(doc, text, file, allow_no_graph):
    if doc.graph is None and not allow_no_graph:
        line, column = _end_position(text)
        raise NNEFError("expected a graph definition ('graph name( inputs ) -> ( outputs ) "
                        "{ ... }'), found end of file", SourcePos(file, line, column))
    return doc


def _drive(tables: _Tables, text: str, file: Optional[str]):
    """Lex ``text`` and run the LALR(1) automaton; returns the callbacks' Document."""
    keywords = tables.keywords
    punctuation = tables.punctuation
    plain = _PLAIN_TOKENS
    top = tables.start_state
    state_stack = [top]
    value_stack = []
    push_state = state_stack.append
    push_value = value_stack.append
    line, line_start = 1, 0
    Tok = _Tok
    dict_ = dict
    pass_through = _PassThrough
    tuple_ = tuple
    append = _Append

    for m in tables.scanner.finditer(text):
        kind = m.lastgroup
        if kind == "P" or kind == "Q":
            value = m.group(kind)
            ttype = punctuation[value]
            tok = (value if ttype in plain
                   else Tok(ttype, value, line, m.end() - len(value) - line_start + 1))
        elif kind == "IDENT":
            value = m.group(kind)
            tok = Tok(keywords.get(value, "IDENT"), value, line,
                      m.end() - len(value) - line_start + 1)
            ttype = tok.type
        elif kind == "N":
            value = m.group(kind)
            line += value.count("\n")
            line_start = m.end() - len(value) + value.rindex("\n") + 1
            continue
        elif kind == "C":
            continue
        elif kind == "E":
            column = m.start(kind) - line_start + 1
            raise NNEFError(_lexer_error_message(text, m.start(kind)),
                            SourcePos(file, line, column))
        elif kind == "END":
            break
        else:
            value = m.group(kind)
            ttype = kind
            tok = Tok(ttype, value, line, m.end() - len(value) - line_start + 1)
            if "\n" in value:  # a GENERIC token spanning lines
                line += value.count("\n")
                line_start = m.end() - len(value) + value.rindex("\n") + 1
        while True:
            action = top.get(ttype)
            cls = action.__class__
            if cls is dict_:
                push_state(action)
                push_value(tok)
                top = action
                break
            if cls is pass_through:
                top = action.get(id(state_stack[-2])) or action.resolve(state_stack[-2])
                state_stack[-1] = top
            elif cls is tuple_:
                size, callback, origin = action
                children = value_stack[-size:]
                del value_stack[-size:]
                del state_stack[-size:]
                top = state_stack[-1][origin]
                push_state(top)
                push_value(callback(children))
            elif cls is append:
                size, origin = action
                value_stack[-size].append(value_stack[-1])
                del value_stack[1 - size:]
                del state_stack[-size:]
                top = state_stack[-1][origin]
                push_state(top)
            else:
                if tok.__class__ is not Tok:
                    tok = Tok(ttype, tok, line, m.end() - len(value) - line_start + 1)
                raise _unexpected_token(tok, state_stack, value_stack, file)

    end_line, end_column = _end_position(text)
    end_state = tables.end_state
    while True:
        action = top.get("$END")
        cls = action.__class__
        if cls is pass_through:
            top = action.get(id(state_stack[-2])) or action.resolve(state_stack[-2])
            state_stack[-1] = top
        elif cls is tuple_:
            size, callback, origin = action
            children = value_stack[-size:]
            del value_stack[-size:]
            del state_stack[-size:]
            top = state_stack[-1][origin]
            push_state(top)
            push_value(callback(children))
        elif cls is append:
            size, origin = action
            value_stack[-size].append(value_stack[-1])
            del value_stack[1 - size:]
            del state_stack[-size:]
            top = state_stack[-1][origin]
            push_state(top)
        else:
            raise _unexpected_token(Tok("$END", "", end_line, end_column), state_stack,
                                    value_stack, file)
        if top is end_state:
            return value_stack[-1]


# ------------------------------------------------------------------ errors ----
# How terminals read in a message.
_TOKEN_WORDS = {
    "IDENT": "identifier",
    "NUMBER": "number",
    "STRING": "string literal",
    "GENERIC": "'<type>'",
    "NUMERIC_ARRAY": "'['",
    "$END": "end of file",
}
_OPERATOR_TOKENS = frozenset(
    "AND OR LT LE GT GE EQ NE PLUS MINUS STAR SLASH CARET KW_IN KW_IF".split())
# the tokens that can start an expression, and those that can start a type
_EXPRESSION_START = frozenset(
    "IDENT NUMBER STRING KW_TRUE KW_FALSE LSQB NUMERIC_ARRAY LPAR MINUS PLUS BANG "
    "KW_SHAPE_OF KW_LENGTH_OF KW_RANGE_OF KW_INTEGER KW_SCALAR KW_LOGICAL KW_STRING".split())
_TYPE_START = frozenset("KW_INTEGER KW_SCALAR KW_LOGICAL KW_STRING QMARK KW_TENSOR LPAR".split())
# Most telling expectations first: what ends or separates the construct at hand.
_ORDER = ["SEMICOLON", "COMMA", "RPAR", "RSQB", "RBRACE", "EQUAL", "COLON", "ARROW",
          "an expression", "a type", "an operator", "IDENT", "NUMBER", "STRING", "GENERIC",
          "LPAR", "LSQB", "LBRACE", "$END"]
_MAX_EXPECTED = 6


def _end_position(text: str) -> tuple[int, int]:
    """(line, column) just past the last character of ``text``."""
    line = text.count("\n") + 1
    last = text.rfind("\n")
    return line, len(text) - last


def _terminal_text(name: str) -> str:
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    if name[0].islower():           # a group such as "an expression"
        return name
    for text, tname in _tables.punctuation.items():
        if tname == name:
            return f"'{text}'"
    for text, tname in _tables.keywords.items():
        if tname == name:
            return f"'{text}'"
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
    if t == "NUMERIC_ARRAY":
        return "'['"
    if t.startswith("KW_") or tok.value in KEYWORDS:
        return f"keyword '{tok.value}'"
    return f"'{tok.value}'"


def _describe_expected(expected) -> str:
    """'a, b or c' for the expected terminals, grouped where a list would be long."""
    names = set(expected)
    names.discard("NUMERIC_ARRAY")      # reads as '[' which is listed as LSQB
    if {"IDENT", "NUMBER", "LPAR"} <= names:
        names = (names - _EXPRESSION_START) | {"an expression"}
    if len(names & _TYPE_START) >= 5:
        names = (names - _TYPE_START) | {"a type"}
    operators = names & _OPERATOR_TOKENS
    if len(operators) >= 3:
        names = (names - operators) | {"an operator"}

    def rank(name):
        return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)
    words = [_terminal_text(n) for n in sorted(names, key=rank)]
    if len(words) > _MAX_EXPECTED:
        words = words[:_MAX_EXPECTED - 1] + [f"{len(words) - _MAX_EXPECTED + 1} other tokens"]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_context(stack) -> str:
    """' after X' for what the parser had just read (top of the value stack), or ''."""
    if not stack:
        return ""
    top = stack[-1]
    if isinstance(top, (lark.Token, _Tok)):
        return " after " + _describe_token(top)
    if isinstance(top, str):
        return f" after '{top}'"
    kinds = [
        (ast.Argument, "argument"), (ast.Assignment, "statement"), (ast.Param, "parameter"),
        (ast.Result, "result"), (ast.Fragment, "fragment definition"),
        (ast.Iterator, "iterator"),
        ((ast.PrimitiveType, ast.TensorType, ast.ArrayType, ast.TupleType), "type"),
        ((ast.Literal, ast.Name, ast.ArrayExpr, ast.TupleExpr, ast.UnaryOp, ast.BinaryOp,
          ast.IfElse, ast.Comprehension, ast.Subscript, ast.Builtin, ast.Invocation),
         "expression"),
        (_Header, "version or extension line"),
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
    if ch == "." and index > 0 and text[index - 1].isdigit():
        return "invalid number: a numeric literal has at most one decimal point"
    if ch == "." and nxt.isdigit():
        return ("a number must start with a digit: write 0" + text[index:index + 2]
                + " instead of " + text[index:index + 2])
    if ch == "&" or ch == "|":
        return f"invalid character '{ch}' (did you mean '{ch}{ch}'?)"
    if ord(ch) > 126 or (ord(ch) < 32 and ch not in "\t\n\r\f\v"):
        return f"invalid character U+{ord(ch):04X} (NNEF text is printable ASCII)"
    return f"invalid character '{ch}'"


def _can_shift(state_stack, terminal) -> bool:
    """Would ``terminal`` be shifted (or accepted) after the reductions it triggers?

    LALR(1) merges the lookaheads of states with equal cores, so the table of
    the top state alone over-approximates what may follow; replaying the
    reductions on a copy of the stack gives the exact set.
    """
    stack = list(state_stack)
    end_state = _tables.end_state
    for _ in range(10_000):
        action = stack[-1].get(terminal)
        cls = action.__class__
        if action is None:
            return False
        if cls is dict:
            return True
        if cls is _PassThrough:
            stack[-1] = stack[-2][action.origin]
        else:
            size, origin = action[0], action[-1]
            del stack[-size:]
            stack.append(stack[-1][origin])
        if stack[-1] is end_state:
            return terminal == "$END"
    return False  # pragma: no cover


def _token_error(tok, state_stack, value_stack, file, line, column) -> NNEFError:
    expected = [t for t in state_stack[-1] if t.isupper() and _can_shift(state_stack, t)]
    message = (f"expected {_describe_expected(expected)}{_describe_context(value_stack)}, "
               f"found {_describe_token(tok)}")
    if "IDENT" in expected and tok.type != "IDENT" and tok.value in KEYWORDS:
        message += f" ('{tok.value}' is a reserved keyword and cannot be an identifier)"
    return NNEFError(message, SourcePos(file, line, column))


def _unexpected_token(tok, state_stack, value_stack, file) -> NNEFError:
    return _token_error(tok, state_stack, value_stack, file, tok.line, tok.column)


def _syntax_error(e: UnexpectedInput, text: str, file: Optional[str]) -> NNEFError:
    """The NNEFError for an exception of lark's own loop (``_parse_with_lark``)."""
    if isinstance(e, UnexpectedCharacters):
        return NNEFError(_lexer_error_message(text, e.pos_in_stream),
                         SourcePos(file, e.line, e.column))
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line, column = _end_position(text)
        else:
            line, column = tok.line, tok.column
        state = e.interactive_parser.parser_state
        state_stack = [_tables.by_number[n] for n in state.state_stack]
        return _token_error(tok, state_stack, state.value_stack, file, line, column)
    raise e  # pragma: no cover - LALR raises no other UnexpectedInput
