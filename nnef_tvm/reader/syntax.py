"""NNEF text -> syntax tree (:mod:`.ast`): the parser's public entry point.

Implements the NNEF 1.0.5 grammar (spec section 3, Appendix A; ``grammar.lark``)
on lark's LALR(1) tables. The work is split by concern:

* :mod:`.syntax_builder` -- the rule callbacks that build :mod:`.ast` nodes
  during the parse (no lark tree is ever made), with the fast helpers of
  :mod:`.syntax_nodes`;
* :mod:`.syntax_tables` -- lark's tables and the lexer regex, re-packed once;
* :mod:`.syntax_driver` -- the shift/reduce loop that runs them (lark's own
  lexer and loop take about 3x the CPU time on 10,000-operation documents);
* :mod:`.syntax_errors` -- every failure as a located
  :class:`~nnef_tvm.errors.NNEFError` saying what was expected.

This module owns the process-wide parser state (lark object, tables, the one
callback object and its lock) and the entry points: :func:`parse`, and
``_parse_with_lark`` which runs lark's own loop with the same callbacks (tests
compare the two). No lark exception escapes either.
"""
from __future__ import annotations

import gc
import os
import threading
from typing import Optional

import lark
from lark.exceptions import UnexpectedInput

from ..errors import NNEFError, SourcePos
from . import ast
from .syntax_builder import _Builder
from .syntax_driver import _drive
from .syntax_errors import _end_position, _syntax_error
from .syntax_tables import KEYWORDS, _Tables

__all__ = ["parse", "KEYWORDS"]

_GRAMMAR_PATH = os.path.join(os.path.dirname(__file__), "grammar.lark")

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
        _tables = _Tables(lk, _builder.list_append)
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
            raise _syntax_error(e, text, file, _tables) from None
        finally:
            _builder.parenthesized = set()
    return _check_graph(doc, text, file, allow_no_graph)


def _check_graph(doc, text, file, allow_no_graph):
    if doc.graph is None and not allow_no_graph:
        line, column = _end_position(text)
        raise NNEFError("expected a graph definition ('graph name( inputs ) -> ( outputs ) "
                        "{ ... }'), found end of file", SourcePos(file, line, column))
    return doc

