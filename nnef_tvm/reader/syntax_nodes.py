"""Small, fast helpers the syntax-tree callbacks (:mod:`.syntax_builder`) lean on.

They exist apart from the callbacks because each is a measured hot spot of
parsing large documents rather than grammar logic: node positions are made
without the frozen dataclass constructor, and the literal number lists that fill
NNEF documents (``[1, 1]``, ``[(0, 0), (1, 1)]``, lexed as one NUMERIC_ARRAY
token) are analysed once per distinct text and then only re-instantiated.
String literals get the spec's escapes (section 3.1) applied here too.
"""
from __future__ import annotations

import re

from ..errors import SourcePos
from . import ast

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
