"""lark's LALR(1) tables and the lexer, re-packed for :mod:`.syntax_driver`.

lark analyses ``grammar.lark`` once per process; its generic lexer and parser
loop then cost a few microseconds more per token than NNEF documents of 10,000
operations allow (our own loop over the same tables is about 3x faster,
see :mod:`.syntax_driver`).
So the tables are re-packed here into the shape the driver's loop wants --
each state a dict from symbol to action, the action's kind told by its class --
and the terminals become one master regular expression, ordered by how often
each token occurs.
"""
from __future__ import annotations

import re

import lark

#: Reserved words of NNEF (spec 3.1); they can never be identifiers.
KEYWORDS = frozenset(
    "version extension graph fragment tensor integer scalar logical string "
    "shape_of length_of range_of for in yield if else true false".split())


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
    """lark's LALR(1) tables and rule callbacks, re-packed for :func:`.syntax_driver._drive`.

    Each state is a dict mapping a symbol to its action: the next state (a dict)
    for a shift or goto, a :class:`_PassThrough`, or ``(size, callback, origin)``
    for any other reduction.
    """

    def __init__(self, lk: lark.Lark, list_append):
        # ``list_append``: the builder's callback for ``list: list "," item`` rules,
        # which the driver performs in place instead (:class:`_Append`)
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
                elif callbacks[arg] == list_append:
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


