"""Syntax errors as located :class:`~nnef_tvm.errors.NNEFError` with readable expectations.

A parse failure must say where it happened and what was expected there, in
NNEF words rather than lark's terminal names: "expected ';' or ',' after
expression, found identifier 'x'". The expected set is computed exactly
(:func:`_can_shift` replays the reductions, since LALR(1) tables alone
over-approximate it) and then grouped ("an expression", "a type", "an
operator") so that messages stay short. Used both by our driver and for
lark's own exceptions (the reference parse in tests), so both report alike.
"""
from __future__ import annotations

from typing import Optional

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import NNEFError, SourcePos
from . import ast
from .syntax_builder import _Header
from .syntax_tables import KEYWORDS, _PassThrough, _Tables, _Tok

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


def _terminal_text(name: str, tables: _Tables) -> str:
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    if name[0].islower():           # a group such as "an expression"
        return name
    for text, tname in tables.punctuation.items():
        if tname == name:
            return f"'{text}'"
    for text, tname in tables.keywords.items():
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


def _describe_expected(expected, tables: _Tables) -> str:
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
    words = [_terminal_text(n, tables) for n in sorted(names, key=rank)]
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


def _can_shift(state_stack, terminal, end_state) -> bool:
    """Would ``terminal`` be shifted (or accepted) after the reductions it triggers?

    LALR(1) merges the lookaheads of states with equal cores, so the table of
    the top state alone over-approximates what may follow; replaying the
    reductions on a copy of the stack gives the exact set.
    """
    stack = list(state_stack)
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


def _token_error(tok, state_stack, value_stack, file, line, column, tables: _Tables) -> NNEFError:
    expected = [t for t in state_stack[-1]
                if t.isupper() and _can_shift(state_stack, t, tables.end_state)]
    message = (f"expected {_describe_expected(expected, tables)}{_describe_context(value_stack)}, "
               f"found {_describe_token(tok)}")
    if "IDENT" in expected and tok.type != "IDENT" and tok.value in KEYWORDS:
        message += f" ('{tok.value}' is a reserved keyword and cannot be an identifier)"
    return NNEFError(message, SourcePos(file, line, column))


def _unexpected_token(tok, state_stack, value_stack, file, tables: _Tables) -> NNEFError:
    return _token_error(tok, state_stack, value_stack, file, tok.line, tok.column, tables)


def _syntax_error(e: UnexpectedInput, text: str, file: Optional[str], tables: _Tables) -> NNEFError:
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
        state_stack = [tables.by_number[n] for n in state.state_stack]
        return _token_error(tok, state_stack, state.value_stack, file, line, column, tables)
    raise e  # pragma: no cover - LALR raises no other UnexpectedInput
