"""The shift/reduce loop that parses NNEF text on the re-packed tables of :mod:`.syntax_tables`.

Why not lark's own loop: it wraps every token in a ``lark.Token`` and every
action in generic dispatch. With the same callbacks, ``_parse_with_lark`` takes
about 3x the CPU time of :func:`.syntax.parse` on the 10,000-operation document
of ``scripts/bench_parser.py`` (1.34-1.50 s vs 0.46-0.50 s, measured 2026-11;
``parse`` also pauses the cyclic GC). Here one master regular expression yields
the tokens, tokens no callback reads travel as plain strings, runs of
pass-through reductions cost one dict lookup, and list appends are done in
place. Everything the loop needs is bound to locals first: it is the hot spot
of loading a model. Failures become located errors via :mod:`.syntax_errors`.
"""
from __future__ import annotations

from typing import Optional

from ..errors import NNEFError, SourcePos
from .syntax_errors import _end_position, _lexer_error_message, _unexpected_token
from .syntax_tables import _Append, _PassThrough, _Tables, _Tok


# Tokens whose value and position no callback reads: the driver pushes their
# text instead of a _Tok object.
_PLAIN_TOKENS = frozenset("SEMICOLON COMMA RPAR RSQB LBRACE RBRACE EQUAL COLON ARROW".split())


def _drive(tables: _Tables, text: str, file: Optional[str]):
    """Lex ``text`` and run the LALR(1) automaton; returns the callbacks' Document."""
    keywords = tables.keywords
    punctuation = tables.punctuation
    plain = _PLAIN_TOKENS
    top = tables.start_state
    end_state = tables.end_state
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
            # $END runs through the same loop: it is never shifted, only
            # reduces until the start rule lands in the (empty) end state
            ttype = "$END"
            tok = Tok(ttype, "", *_end_position(text))
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
                if top is end_state:      # only reached on $END: the document is complete
                    return value_stack[-1]
                if tok.__class__ is not Tok:
                    tok = Tok(ttype, tok, line, m.end() - len(value) - line_start + 1)
                raise _unexpected_token(tok, state_stack, value_stack, file, tables)

    raise AssertionError("the scanner always ends with an END match")  # pragma: no cover
