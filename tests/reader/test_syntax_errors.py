"""Syntax errors: every broken document gives a located NNEFError saying what was expected.

Also a property test: truncations and random edits of valid documents either
parse or raise NNEFError -- no lark (or other) exception escapes, nothing hangs.
"""
from __future__ import annotations

import glob
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import syntax

HEAD = "version 1.0;\ngraph g( x ) -> ( y )\n{\n"      # the body starts on line 4

# (document, line, column, fragments the message must contain)
CASES = [
    ("missing semicolon", HEAD + "    x = external(shape = [1])\n    y = relu(x);\n}\n",
     5, 5, ["expected ';'", "found identifier 'y'"]),
    ("junk in arguments", HEAD + "    y = relu(x foo);\n}\n",
     4, 16, ["expected ','", "')'", "after identifier 'x'", "found identifier 'foo'"]),
    ("unterminated string", HEAD + "    x = variable(shape = [1], label = 'abc);\n}\n",
     4, 39, ["unterminated string"]),
    ("string across lines", HEAD + "    x = variable(shape = [1], label = \"ab\nc\");\n}\n",
     4, 39, ["unterminated string"]),
    ("invalid character", HEAD + "    y = relu(x) $;\n}\n", 4, 17, ["invalid character '$'"]),
    ("non-ascii character", HEAD + "    y = relu(\u00e9);\n}\n", 4, 14, ["U+00E9"]),
    ("number starting with a dot", HEAD + "    y = mul(x, .5);\n}\n", 4, 16, ["0.5", ".5"]),
    ("single ampersand", HEAD + "    y = a & b;\n}\n", 4, 11, ["'&&'"]),
    ("keyword as lvalue", HEAD + "    graph = relu(x);\n}\n", 4, 5,
     ["expected identifier", "found keyword 'graph'", "reserved keyword"]),
    ("keyword as argument name", HEAD + "    y = f(x, in = 1);\n}\n", 4, 14,
     ["expected an expression", "found keyword 'in'"]),
    ("keyword as graph parameter", "version 1.0;\ngraph g( for ) -> ( y ) { y = x; }", 2, 10,
     ["expected identifier", "found keyword 'for'"]),
    ("end of file in body", HEAD + "    y = relu(x);\n", 5, 1,
     ["expected '}'", "found end of file"]),
    ("end of file in array", HEAD + "    y = f(shape = [1", 4, 21, ["']'", "found end of file"]),
    ("no graph", "version 1.0;\n", 2, 1, ["graph definition", "end of file"]),
    ("empty document", "", 1, 1, ["expected 'version'", "end of file"]),
    ("no version", "graph g( x ) -> ( y ) { y = x; }", 1, 1,
     ["expected 'version'", "found keyword 'graph'"]),
    ("integer version", "version 1;\ngraph g( x ) -> ( y ) { y = x; }", 1, 9,
     ["major.minor", "'1'"]),
    ("three-part version", "version 1.0.5;\ngraph g( x ) -> ( y ) { y = x; }", 1, 12,
     ["at most one decimal point"]),
    ("empty graph body", "version 1.0;\ngraph g( x ) -> ( y ) { }", 2, 25,
     ["expected identifier", "found '}'"]),
    ("empty parameter list", "version 1.0;\ngraph g( ) -> ( y ) { y = x; }", 2, 10,
     ["expected identifier", "found ')'"]),
    ("text after the graph", HEAD + "    y = x;\n}\ny = x;\n", 6, 1,
     ["expected end of file", "found identifier 'y'"]),
    ("fragment after graph", HEAD + "    y = x;\n}\nfragment f( a: integer ) -> ( b: tensor<> );",
     6, 1, ["expected end of file", "found keyword 'fragment'"]),
    ("extension after fragment",
     "version 1.0;\nfragment f( a: integer ) -> ( b: tensor<scalar> );\nextension A;\n", 3, 1,
     ["found keyword 'extension'"]),
    ("empty invocation", HEAD + "    y = f();\n}\n", 4, 11,
     ["expected an expression", "found ')'"]),
    ("missing right-hand side", HEAD + "    y = ;\n}\n", 4, 9, ["expected an expression"]),
    ("statement without assignment", HEAD + "    relu(x);\n}\n", 4, 9,
     ["expected ',' or '='", "found '('"]),
    ("literal as lvalue", HEAD + "    1 = x;\n}\n", 4, 5, ["found number '1'"]),
    ("one-item tuple type",
     "version 1.0;\nfragment f( a: (integer) ) -> ( b: tensor<scalar> );\n", 2, 24,
     ["expected ','", "found ')'"]),
    ("generic declared with a type", "version 1.0;\nfragment f<scalar>( a: integer ) -> "
     "( b: tensor<scalar> );\n", 2, 11, ["'<?>'", "'<scalar>'"]),
    ("generic default ?", "version 1.0;\nfragment f<? = ?>( a: tensor<?> ) -> "
     "( b: tensor<?> );\n", 2, 16, ["type name"]),
    ("two subscripts", HEAD + "    y = x[1, 2];\n}\n", 4, 12, ["']'", "found ','"]),
    ("two subscripts, general path", HEAD + "    y = x[a, b];\n}\n", 4, 12,
     ["']'", "found ','"]),
    ("unclosed comprehension", HEAD + "    y = [for i in a yield i;\n}\n", 4, 28,
     ["']'", "found ';'"]),
    ("comprehension without yield", HEAD + "    y = [for i in a i];\n}\n", 4, 21,
     ["'yield'", "found identifier 'i'"]),
    ("missing arrow", "version 1.0;\ngraph g( x ) ( y ) { y = x; }", 2, 14,
     ["expected '->'", "found '('"]),
    ("non-literal default", "version 1.0;\nfragment f( a: integer = x ) -> "
     "( b: tensor<scalar> );\n", 2, 26, ["found identifier 'x'"]),
]


@pytest.mark.parametrize("name, text, line, column, fragments", CASES,
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("parse", [syntax.parse, syntax._parse_with_lark],
                         ids=["driver", "lark"])
def test_syntax_error_location_and_message(parse, name, text, line, column, fragments):
    with pytest.raises(NNEFError) as err:
        parse(text, "broken.nnef")
    e = err.value
    assert (e.file, e.line, e.column) == ("broken.nnef", line, column), e.message
    for fragment in fragments:
        assert fragment in e.message, e.message
    assert str(e).startswith(f"broken.nnef:{line}:{column}: error: ")


def test_expected_list_is_short():
    # LALR merges lookaheads; the message lists only tokens that really fit
    with pytest.raises(NNEFError) as err:
        syntax.parse(HEAD + "    x = external(shape = [1])\n    y = relu(x);\n}\n")
    assert err.value.message == ("expected ';', an operator or '[' after ')', "
                                 "found identifier 'y'")


# --------------------------------------------------------------- fuzzing ----
_EXAMPLES = sorted(glob.glob("/work/shared/nnef/examples/*.nnef"))
_STDLIB = os.path.join(os.path.dirname(syntax.__file__), "stdlib.nnef")
_TEXTS = []
for _path in _EXAMPLES:
    with open(_path) as _f:
        _TEXTS.append(_f.read())

_PIECES = list("()[]{}<>,;:=-+*/^!?#'\"._ \n\t0123456789") + [
    "->", "&&", "||", "<=", ">=", "==", "!=", "graph", "fragment", "in", "if", "else", "for",
    "yield", "tensor<", "<?>", "1.", "1e", "[1, 2]", "[(1, 1)]", "x", "\\", "\u00e9", "\x00"]


def _check(text: str):
    try:
        syntax.parse(text, "fuzz.nnef", allow_no_graph=True)
    except NNEFError as e:
        assert e.file == "fuzz.nnef" and e.line is not None and e.column is not None
        assert e.line >= 1 and e.column >= 1


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.sampled_from(_TEXTS), data=st.data())
def test_truncations_and_edits_parse_or_raise_nnef_error(doc, data):
    n = len(doc)
    kind = data.draw(st.sampled_from(["truncate", "delete", "insert", "replace", "swap"]))
    i = data.draw(st.integers(0, n))
    if kind == "truncate":
        text = doc[:i]
    elif kind == "delete":
        j = data.draw(st.integers(i, min(n, i + 20)))
        text = doc[:i] + doc[j:]
    elif kind == "insert":
        text = doc[:i] + data.draw(st.sampled_from(_PIECES)) + doc[i:]
    elif kind == "replace":
        j = data.draw(st.integers(i, min(n, i + 5)))
        text = doc[:i] + data.draw(st.sampled_from(_PIECES)) + doc[j:]
    else:
        j = data.draw(st.integers(0, n))
        a, b = sorted((i, j))
        text = doc[b:] + doc[a:b] + doc[:a]
    _check(text)


@settings(max_examples=200, deadline=2000)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_token_soup_parses_or_raises_nnef_error(pieces):
    _check("version 1.0;\n" + " ".join(pieces))
    _check("version 1.0;\ngraph g( x ) -> ( y ) {\n y = " + "".join(pieces))


def test_every_truncation_of_an_example():
    with open("/work/shared/nnef/examples/05_comprehension_ifelse.nnef") as f:
        doc = f.read()
    for i in range(0, len(doc), 7):
        _check(doc[:i])
