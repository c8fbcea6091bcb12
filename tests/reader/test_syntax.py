"""NNEF syntax layer (text -> ast.Document): grammar coverage, precedence, positions.

Expected trees are written by hand from the NNEF 1.0.5 grammar and the
precedence rules of SPEC-NOTES 4.2 (never from earlier parser output).
"""
from __future__ import annotations

import glob
import os

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import ast, syntax

EXAMPLES = "/work/shared/nnef/examples"
EXAMPLE_FILES = sorted(glob.glob(os.path.join(EXAMPLES, "*.nnef"))) + [
    os.path.join(EXAMPLES, "06_quantized", "graph.nnef"),
    os.path.join(EXAMPLES, "i06_bad_dat_header", "graph.nnef"),
]


def _doc(body: str, head: str = "") -> ast.Document:
    return syntax.parse(f"version 1.0;\n{head}graph g( x ) -> ( y )\n{{\n{body}\n}}\n")


def expr(text: str):
    """The right-hand side of ``y = <text>;`` parsed in a graph body."""
    return _doc(f"y = {text};").graph.body[0].rvalue


def show(e) -> str:
    """Fully parenthesised rendering, to state expected trees compactly."""
    if isinstance(e, ast.BinaryOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.UnaryOp):
        return f"({e.op}{show(e.operand)})"
    if isinstance(e, ast.Literal):
        return repr(e.value)
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.IfElse):
        return f"({show(e.then)} if {show(e.cond)} else {show(e.otherwise)})"
    if isinstance(e, ast.Invocation):
        args = ", ".join((a.name + "=" if a.name else "") + show(a.value) for a in e.args)
        generic = f"<{e.dtype}>" if e.dtype else ""
        return f"{e.op}{generic}({args})"
    if isinstance(e, ast.Subscript):
        if e.is_range:
            begin = show(e.begin) if e.begin is not None else ""
            end = show(e.end) if e.end is not None else ""
            return f"{show(e.base)}[{begin}:{end}]"
        return f"{show(e.base)}[{show(e.index)}]"
    if isinstance(e, ast.ArrayExpr):
        return "[" + ", ".join(map(show, e.items)) + "]"
    if isinstance(e, ast.TupleExpr):
        return "(" + ", ".join(map(show, e.items)) + ")"
    if isinstance(e, ast.Comprehension):
        its = ", ".join(f"{i.name} in {show(i.iterable)}" for i in e.iterators)
        cond = f" if {show(e.cond)}" if e.cond is not None else ""
        return f"[for {its}{cond} yield {show(e.body)}]"
    if isinstance(e, ast.Builtin):
        return f"{e.name}({show(e.arg)})"
    raise TypeError(e)


def structure(node):
    """The tree without positions: nested (class name, field values) tuples."""
    if isinstance(node, list):
        return [structure(n) for n in node]
    if isinstance(node, tuple):
        return tuple(structure(n) for n in node)
    if hasattr(node, "__dataclass_fields__"):
        return (type(node).__name__,) + tuple(
            (name, structure(getattr(node, name)))
            for name in node.__dataclass_fields__ if name != "pos")
    return (type(node).__name__, node)


# ------------------------------------------------------------- examples ----
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=os.path.basename)
def test_every_example_parses(path):
    with open(path) as f:
        text = f.read()
    doc = syntax.parse(text, path)
    assert doc.version == (1, 0)
    assert doc.graph is not None and doc.graph.body
    assert doc.file == path and doc.graph.pos.file == path


def test_example_01_structure():
    with open(os.path.join(EXAMPLES, "01_flat_small_cnn.nnef")) as f:
        doc = syntax.parse(f.read())
    g = doc.graph
    assert g.name == "small_cnn"
    assert [n.name for n in g.params] == ["input"]
    assert [n.name for n in g.results] == ["probs", "stats_mean"]
    assert len(g.body) == 16 and doc.extensions == [] and doc.fragments == []
    split = g.body[8]
    assert show(split.lvalue) == "[left, right]"
    moments = g.body[9]
    assert isinstance(moments.lvalue, ast.TupleExpr)
    assert show(moments.lvalue) == "(stats_mean, stats_var)"
    # negative literal with exponent is one Literal (flat syntax)
    scaled = g.body[14].rvalue
    lit = scaled.args[1].value
    assert type(lit) is ast.Literal and lit.kind == "scalar" and lit.value == -5.0
    conv = g.body[3].rvalue
    assert show(conv) == ("conv(input, filter1, bias1, border='constant', padding=[(1, 1), (1, 1)], "
                          "stride=[1, 1], dilation=[1, 1], groups=1)")
    assert g.body[2].rvalue.args[1].value.value == "conv1/bias"   # double-quoted string


def test_example_03_fragments():
    with open(os.path.join(EXAMPLES, "03_fragments_generics.nnef")) as f:
        doc = syntax.parse(f.read())
    assert [e.name for e in doc.extensions] == ["KHR_enable_fragment_definitions"]
    shuffle, twice, filled, block = doc.fragments
    assert shuffle.body is None and not shuffle.generic
    assert shuffle.params[1].name == "groups" and shuffle.params[1].default.value == 2
    assert twice.generic and twice.generic_default is None
    assert [r.name for r in twice.results] == ["y", "z"]
    assert twice.results[0].type == ast.TensorType(ast.PrimitiveType("?"))
    assert show(twice.body[0].rvalue) == "copy<?>(x)"
    assert filled.generic and filled.generic_default == "scalar"
    assert filled.params[1].type == ast.ArrayType(ast.PrimitiveType("?"))
    assert block.params[2].default.value == 0.0 and block.params[2].default.kind == "scalar"
    assert show(block.params[3].default) == "[1, 1]"
    invocations = [s.rvalue for s in doc.graph.body]
    assert invocations[4].dtype == "logical" and invocations[6].dtype == "integer"


def test_both_extension_separators():
    doc = syntax.parse("version 1.0;\nextension A B, C;\nextension D;\n"
                       "graph g(x) -> (y) { y = x; }")
    assert [e.name for e in doc.extensions] == ["A", "B", "C", "D"]
    assert [(e.pos.line, e.pos.column) for e in doc.extensions] == [(2, 11), (2, 13), (2, 16),
                                                                   (3, 11)]


def test_fragment_file_without_graph():
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions;\n"
            "fragment f( x: tensor<scalar> ) -> ( y: tensor<scalar> );\n")
    doc = syntax.parse(text, "lib.nnef", allow_no_graph=True)
    assert doc.graph is None and [f.name for f in doc.fragments] == ["f"]
    with pytest.raises(NNEFError) as err:
        syntax.parse(text, "lib.nnef")
    assert "graph" in err.value.message and err.value.line == 4


# ------------------------------------------------------------ precedence ----
@pytest.mark.parametrize("text, tree", [
    ("a*2 + b/(1+3)^2", "((a * 2) + (b / ((1 + 3) ^ 2)))"),
    ("2^3^2", "((2 ^ 3) ^ 2)"),                           # left-associative
    ("a || b && c", "((a || b) && c)"),                   # same level, left to right
    ("a && b || c", "((a && b) || c)"),
    ("-a^2", "(-(a ^ 2))"),                               # ^ binds before unary minus
    ("x ^ -2.0", "(x ^ -2.0)"),                           # unary operand of ^
    ("x ^ -y", "(x ^ (-y))"),
    ("-r - 1.0", "((-r) - 1.0)"),                         # not Khronos' -(r - 1.0)
    ("-x * y", "((-x) * y)"),
    ("!a && b", "((!a) && b)"),
    ("a - b - c", "((a - b) - c)"),
    ("a / b * c", "((a / b) * c)"),
    ("a + b * c", "(a + (b * c))"),
    ("a < b + 1", "(a < (b + 1))"),
    ("a == b != c", "((a == b) != c)"),
    ("a < b && c >= d", "((a < b) && (c >= d))"),
    ("a in b && c", "(a in (b && c))"),                   # `in` lowest binary
    ("a && b in c", "((a && b) in c)"),
    ("a if c1 else b if c2 else d", "(a if c1 else (b if c2 else d))"),
    ("a + 1 if c || d else b", "((a + 1) if (c || d) else b)"),
    ("x[0] + f(x[1:]) if n > 0 else 0.0", "((x[0] + f(x[1:])) if (n > 0) else 0.0)"),
    ("0.0 if !s else -r if sym else -r - 1.0",
     "(0.0 if (!s) else ((-r) if sym else ((-r) - 1.0)))"),
    ("-1 + 3", "(-1 + 3)"),
    ("+a", "(+a)"),
    ("- - a", "(-(-a))"),
    ("(a + b) * c", "((a + b) * c)"),
    ("2 ^ (n - 1) - integer(s) if s else 0",
     "(((2 ^ (n - 1)) - integer(s)) if s else 0)"),
])
def test_precedence(text, tree):
    assert show(expr(text)) == tree


def test_negative_literal_folding():
    lit = expr("-3")
    assert type(lit) is ast.Literal and lit.value == -3 and lit.kind == "integer"
    assert (lit.pos.line, lit.pos.column) == (4, 5)
    lit = expr("-0.5e1")
    assert type(lit) is ast.Literal and lit.value == -5.0 and lit.kind == "scalar"
    neg = expr("-(3)")                       # parenthesised: a unary operator
    assert type(neg) is ast.UnaryOp and neg.operand.value == 3
    neg = expr("-x")
    assert type(neg) is ast.UnaryOp and neg.op == "-"
    assert type(expr("-2 ^ 2")) is ast.UnaryOp        # -(2 ^ 2)


def test_binary_operator_positions_are_the_left_operand():
    e = expr("a +\n  b * c")
    assert (e.pos.line, e.pos.column) == (4, 5)
    assert (e.right.pos.line, e.right.pos.column) == (5, 3)


# ---------------------------------------------------- other expressions ----
@pytest.mark.parametrize("text, tree", [
    ("[for i in xs yield i * 2]", "[for i in xs yield (i * 2)]"),
    ("[for i in xs, j in ys yield i * j]", "[for i in xs, j in ys yield (i * j)]"),
    ("[for i in xs if i > 0 yield i]", "[for i in xs if (i > 0) yield i]"),
    ("[for i in xs yield a if c else b]", "[for i in xs yield (a if c else b)]"),
    ("[for i in xs if a if c else b yield i]", "[for i in xs if (a if c else b) yield i]"),
    ("[for i in (a if c else b) yield i]", "[for i in (a if c else b) yield i]"),
    ("[for k in range_of(p) if p[k] / 2 * 2 == p[k] yield p[k]]",
     "[for k in range_of(p) if (((p[k] / 2) * 2) == p[k]) yield p[k]]"),
    ("x[i]", "x[i]"), ("x[i:j]", "x[i:j]"), ("x[:j]", "x[:j]"), ("x[i:]", "x[i:]"),
    ("x[:]", "x[:]"), ("x[1][2]", "x[1][2]"), ("x[-1]", "x[-1]"),
    ("'abc'[0:2]", "'abc'[0:2]"), ("[1, 4, 9][0:2]", "[1, 4, 9][0:2]"), ("3[0]", "3[0]"),
    ("f(x)[0]", "f(x)[0]"), ("(a, b)[1]", "(a, b)[1]"),
    ("shape_of(x)", "shape_of(x)"), ("length_of(xs)", "length_of(xs)"),
    ("range_of(xs)", "range_of(xs)"), ("integer(2.5)", "integer(2.5)"),
    ("scalar(n) / 2.0", "(scalar(n) / 2.0)"), ("logical(1)", "logical(1)"),
    ("string(3)", "string(3)"),
    ("a < b", "(a < b)"), ("a<b>(c)", "((a < b) > c)"), ("a < scalar(b)", "(a < scalar(b))"),
    ("f<scalar>(x)", "f<scalar>(x)"), ("f<?>(x)", "f<?>(x)"), ("f < integer > (x)", "f<integer>(x)"),
    ("cast<logical>(x, y = 1)", "cast<logical>(x, y=1)"),
    ("[]", "[]"), ("[x]", "[x]"), ("[[1, 2], [3]]", "[[1, 2], [3]]"),
    ("[(1, 1), (0, -1)]", "[(1, 1), (0, -1)]"), ("[1,\n 2]", "[1, 2]"),
    ("[x] * n", "([x] * n)"), ("[1, 1] + size", "([1, 1] + size)"),
    ("(a, b)", "(a, b)"), ("(a, (b, c), [d])", "(a, (b, c), [d])"), ("(a)", "a"),
    ("f(g(x), h = k(y))", "f(g(x), h=k(y))"),
    ("'ign' + 'ore'", "('ign' + 'ore')"),
])
def test_expressions(text, tree):
    assert show(expr(text)) == tree


def test_numeric_array_fast_path_matches_general_rules():
    # one-line numeric lists are lexed as one token; spreading the list over
    # lines takes the general rules: the trees must be the same (but positions)
    fast = expr("[(1, -2), (3.5, 1e3)]")
    general = expr("[(1,\n -2), (3.5,\n 1e3)]")
    assert structure(fast) == structure(general)
    assert show(fast) == "[(1, -2), (3.5, 1000.0)]"
    items = fast.items[0].items
    assert type(items[1]) is ast.Literal and items[1].value == -2
    assert [(i.pos.line, i.pos.column) for i in items] == [(4, 7), (4, 10)]
    assert (fast.items[1].pos.line, fast.items[1].pos.column) == (4, 15)
    assert type(expr("x[-1]")) is ast.Subscript


def test_builtin_and_invocation_nodes():
    b = expr("length_of(xs)")
    assert isinstance(b, ast.Builtin) and b.name == "length_of" and b.arg.name == "xs"
    inv = expr("conv(a, b, stride = [2, 2])")
    assert isinstance(inv, ast.Invocation) and inv.dtype is None
    assert [a.name for a in inv.args] == [None, None, "stride"]
    assert all(isinstance(a, ast.Argument) for a in inv.args)


# -------------------------------------------------------------- lvalues ----
@pytest.mark.parametrize("lhs, tree", [
    ("a", "a"), ("a, b", "(a, b)"), ("(a, b)", "(a, b)"), ("[a, b]", "[a, b]"),
    ("[a]", "[a]"), ("[]", "[]"), ("a, [b, c], (d, e)", "(a, [b, c], (d, e))"),
    ("([a, b], c)", "([a, b], c)"),
])
def test_lvalues(lhs, tree):
    stmt = _doc(f"{lhs} = f(x);").graph.body[0]
    assert show(stmt.lvalue) == tree
    assert (stmt.pos.line, stmt.pos.column) == (4, 1)


def test_tuple_lvalue_items_are_names():
    stmt = _doc("m, v = moments(x, axes = [1]);").graph.body[0]
    assert isinstance(stmt.lvalue, ast.TupleExpr)
    assert all(isinstance(i, ast.Name) for i in stmt.lvalue.items)
    assert [i.pos.column for i in stmt.lvalue.items] == [1, 4]


# ------------------------------------------------------------ literals ----
@pytest.mark.parametrize("text, value, kind", [
    ("3", 3, "integer"), ("3.0", 3.0, "scalar"), ("1e3", 1000.0, "scalar"),
    ("1E-2", 0.01, "scalar"), ("1.", 1.0, "scalar"), ("0.25e+1", 2.5, "scalar"),
    ("007", 7, "integer"), ("true", True, "logical"), ("false", False, "logical"),
    ("'abc'", "abc", "string"), ('"abc"', "abc", "string"), ("''", "", "string"),
    (r"'a\'b'", "a'b", "string"), (r'"a\"b"', 'a"b', "string"), (r"'a\\b'", "a\\b", "string"),
    ("\"it's\"", "it's", "string"), ("'say \"hi\"'", 'say "hi"', "string"),
    (r"'a\nb'", "a\\nb", "string"),      # not a spec escape: the backslash stays
    ("'conv1/filter'", "conv1/filter", "string"), ("'# not a comment'", "# not a comment",
                                                   "string"),
])
def test_literals(text, value, kind):
    lit = expr(text)
    assert type(lit) is ast.Literal
    assert lit.kind == kind and lit.value == value and type(lit.value) is type(value)


@pytest.mark.parametrize("text", [".5", "1.2.3", "'abc", "'abc\"", "\"abc'"])
def test_bad_literals(text):
    with pytest.raises(NNEFError):
        expr(text)


@pytest.mark.parametrize("word", sorted(syntax.KEYWORDS))
def test_keywords_are_not_identifiers(word):
    with pytest.raises(NNEFError) as err:
        _doc(f"{word} = relu(x);")
    assert err.value.line == 4 and err.value.column == 1
    with pytest.raises(NNEFError):
        syntax.parse(f"version 1.0;\ngraph g( {word} ) -> ( y ) {{ y = x; }}")
    # an identifier merely starting with a keyword is fine
    assert _doc(f"{word}2 = relu(x);").graph.body[0].lvalue.name == f"{word}2"


def test_comments_and_whitespace_anywhere():
    doc = syntax.parse("# head\nversion 1.0; # v\n\textension\tA\x0b;\r\n"
                       "graph g( # in\n x ) -> ( y ) # out\n{ y = # rhs\n f(x, # a\n 1); }#end")
    assert doc.graph.body[0].rvalue.args[1].value.value == 1
    assert [e.name for e in doc.extensions] == ["A"]


# ------------------------------------------------------ types, fragments ----
def test_type_specs():
    text = ("version 1.0;\nfragment f<?>( a: tensor<>, b: scalar[][], c: (integer, integer)[],"
            " d: tensor<?>[], e: (tensor<scalar>, tensor<integer>), g: string = 'x',"
            " h: logical = true, k: (integer, scalar)[] = [(1, 2.0)], m: integer = -1,"
            " n: scalar[] = [] )\n -> ( y: tensor<?>, z: tensor<scalar>[] );\n"
            "graph g(x) -> (y) { y = x; }")
    frag = syntax.parse(text).fragments[0]
    P, T, A, U = ast.PrimitiveType, ast.TensorType, ast.ArrayType, ast.TupleType
    types = [p.type for p in frag.params]
    assert types == [
        T(None), A(A(P("scalar"))), A(U((P("integer"), P("integer")))), A(T(P("?"))),
        U((T(P("scalar")), T(P("integer")))), P("string"), P("logical"),
        A(U((P("integer"), P("scalar")))), P("integer"), A(P("scalar")),
    ]
    defaults = [p.default for p in frag.params]
    assert defaults[:5] == [None] * 5
    assert defaults[5].value == "x" and defaults[6].value is True
    assert show(defaults[7]) == "[(1, 2.0)]"
    assert type(defaults[8]) is ast.Literal and defaults[8].value == -1
    assert show(defaults[9]) == "[]"
    assert [r.type for r in frag.results] == [T(P("?")), A(T(P("scalar")))]
    assert (frag.pos.line, frag.pos.column) == (2, 1)
    assert (frag.params[1].pos.line, frag.params[1].pos.column) == (2, 29)


@pytest.mark.parametrize("default", ["x", "1 + 2", "f(1)", "-x", "[for i in a yield i]"])
def test_parameter_defaults_are_literals(default):
    with pytest.raises(NNEFError):
        syntax.parse(f"version 1.0;\nfragment f( a: integer = {default} ) -> ( y: tensor<> );\n"
                     "graph g(x) -> (y) { y = x; }")


def test_generic_declarations():
    doc = syntax.parse("version 1.0;\nfragment a<?>( x: tensor<?> ) -> ( y: tensor<?> );\n"
                       "fragment b< ? = integer >( x: tensor<?> ) -> ( y: tensor<?> );\n"
                       "fragment c( x: tensor<scalar> ) -> ( y: tensor<scalar> );\n"
                       "graph g(x) -> (y) { y = x; }")
    a, b, c = doc.fragments
    assert (a.generic, a.generic_default) == (True, None)
    assert (b.generic, b.generic_default) == (True, "integer")
    assert (c.generic, c.generic_default) == (False, None)
    for bad in ["<scalar>", "<? = ?>", "<?=>", "<>"]:
        with pytest.raises(NNEFError):
            syntax.parse(f"version 1.0;\nfragment a{bad}( x: tensor<?> ) -> ( y: tensor<?> );\n"
                         "graph g(x) -> (y) { y = x; }")


# ------------------------------------------------------------ positions ----
def test_node_positions():
    text = ("version 1.0;\n"
            "extension KHR_enable_operator_expressions;\n"
            "graph net( a, b ) -> ( c )\n"
            "{\n"
            "    c = add(a, [1.0, 2.0], y = -b) + (a, b)[0];\n"
            "}\n")
    doc = syntax.parse(text, "net.nnef")
    at = lambda node: (node.pos.file, node.pos.line, node.pos.column)  # noqa: E731
    assert doc.version_pos.line == 1 and doc.version_pos.column == 1
    g = doc.graph
    assert at(g) == ("net.nnef", 3, 1)
    assert [at(n) for n in g.params] == [("net.nnef", 3, 12), ("net.nnef", 3, 15)]
    assert at(g.results[0]) == ("net.nnef", 3, 24)
    stmt = g.body[0]
    assert at(stmt) == at(stmt.lvalue) == ("net.nnef", 5, 5)
    plus = stmt.rvalue
    assert isinstance(plus, ast.BinaryOp) and at(plus) == ("net.nnef", 5, 9)
    inv = plus.left
    assert at(inv) == ("net.nnef", 5, 9)
    a0, a1, a2 = inv.args
    assert at(a0) == at(a0.value) == ("net.nnef", 5, 13)
    assert at(a1.value) == ("net.nnef", 5, 16)
    assert at(a1.value.items[1]) == ("net.nnef", 5, 22)
    assert at(a2) == ("net.nnef", 5, 28)
    assert at(a2.value) == ("net.nnef", 5, 32)
    sub = plus.right
    assert isinstance(sub, ast.Subscript) and at(sub) == ("net.nnef", 5, 38)
    assert at(sub.index) == ("net.nnef", 5, 45)


def test_positions_after_multiline_generic_token():
    text = "version 1.0;\ngraph g(x) -> (y)\n{\n  x = external<\n scalar\n >(shape = [1]);\n  y = x;\n}"
    doc = syntax.parse(text)
    assert doc.graph.body[0].rvalue.dtype == "scalar"
    assert (doc.graph.body[1].pos.line, doc.graph.body[1].pos.column) == (7, 3)


# ------------------------------------------- driver vs lark's own loop ----
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=os.path.basename)
def test_table_driver_matches_lark_loop(path):
    with open(path) as f:
        text = f.read()
    assert syntax.parse(text, path) == syntax._parse_with_lark(text, path)


def test_table_driver_matches_lark_on_stdlib():
    path = os.path.join(os.path.dirname(syntax.__file__), "stdlib.nnef")
    with open(path) as f:
        text = f.read()
    assert (syntax.parse(text, path, allow_no_graph=True)
            == syntax._parse_with_lark(text, path, allow_no_graph=True))


def test_positions_equal_between_driver_and_lark():
    with open(os.path.join(EXAMPLES, "05_comprehension_ifelse.nnef")) as f:
        text = f.read()
    ours, theirs = [], []
    for doc, out in ((syntax.parse(text), ours), (syntax._parse_with_lark(text), theirs)):
        def walk(node):
            pos = getattr(node, "pos", None)
            if pos is not None:
                out.append((type(node).__name__, pos.line, pos.column))
            if isinstance(node, list):
                for item in node:
                    walk(item)
            elif hasattr(node, "__dataclass_fields__"):
                for name in node.__dataclass_fields__:
                    if name != "pos":
                        walk(getattr(node, name))
        walk(doc)
    assert ours == theirs and len(ours) > 100


def test_large_flat_document_parses_linearly():
    from importlib import util
    spec = util.spec_from_file_location(
        "bench_parser", os.path.join(os.path.dirname(__file__), "..", "..", "scripts",
                                     "bench_parser.py"))
    bench = util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    doc = syntax.parse(bench.generate(500))
    assert len(doc.graph.body) == 500
    assert doc.graph.body[-1].rvalue.op == "copy"


# ----------------------------------------- precedence, property-based ----
from hypothesis import given, settings, strategies as st  # noqa: E402

_LEVEL = {"in": 1, "&&": 2, "||": 2, "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3,
          "+": 4, "-": 4, "*": 5, "/": 5}
_UNARY, _POWER, _ATOM = 6, 7, 8


def _level(node) -> int:
    if isinstance(node, ast.IfElse):
        return 0
    if isinstance(node, ast.BinaryOp):
        return _POWER if node.op == "^" else _LEVEL[node.op]
    if isinstance(node, ast.UnaryOp):
        return _UNARY
    return _ATOM


def _power_rhs(node) -> bool:
    """May ``node`` stand unparenthesised right of '^' (an atom or unary ops on one)?"""
    while isinstance(node, ast.UnaryOp):
        node = node.operand
    return _level(node) == _ATOM


def _render(node, need: int) -> str:
    """Source text with the fewest parentheses the spec's precedence rules allow."""
    if isinstance(node, ast.IfElse):
        text = f"{_render(node.then, 1)} if {_render(node.cond, 1)} else {_render(node.otherwise, 0)}"
    elif isinstance(node, ast.BinaryOp) and node.op == "^":
        right = node.right
        rhs = _render(right, _ATOM) if not _power_rhs(right) else _render_unary_chain(right)
        text = f"{_render(node.left, _POWER)} ^ {rhs}"
    elif isinstance(node, ast.BinaryOp):
        level = _LEVEL[node.op]
        text = f"{_render(node.left, level)} {node.op} {_render(node.right, level + 1)}"
    elif isinstance(node, ast.UnaryOp):
        text = f"{node.op}{_render(node.operand, _UNARY)}"
    else:
        text = node.name
    return f"({text})" if _level(node) < need else text


def _render_unary_chain(node) -> str:
    if isinstance(node, ast.UnaryOp):
        return node.op + _render_unary_chain(node.operand)
    return node.name


_OPERATOR_LEVELS = [["in"], ["&&", "||"], ["<", "<=", ">", ">=", "==", "!="], ["+", "-"],
                    ["*", "/"], ["^"]]


@st.composite
def _trees(draw, depth=4):
    """Expression trees over names; levels drawn first so same-level mixes are common."""
    if depth == 0 or draw(st.integers(0, 5)) == 0:
        return ast.Name(draw(st.sampled_from(["a", "b", "c", "d"])))
    kind = draw(st.sampled_from(["binary"] * 5 + ["unary", "if"]))
    if kind == "binary":
        op = draw(st.sampled_from(draw(st.sampled_from(_OPERATOR_LEVELS))))
        return ast.BinaryOp(op, draw(_trees(depth - 1)), draw(_trees(depth - 1)))
    if kind == "unary":
        return ast.UnaryOp(draw(st.sampled_from(["-", "+", "!"])), draw(_trees(depth - 1)))
    return ast.IfElse(draw(_trees(depth - 1)), draw(_trees(depth - 1)), draw(_trees(depth - 1)))


@settings(max_examples=100, deadline=None)
@given(_trees())
def test_minimal_parentheses_round_trip(tree):
    """Printing with the fewest parentheses the precedence table allows parses back to the tree."""
    text = _render(tree, 0)
    assert show(expr(text)) == show(tree), text


def test_minimal_parentheses_exhaustive_pairs():
    """Every pair of operators (and unary/if-else placements) in both nestings, one document."""
    N = ast.Name
    a, b, c, d, e = (N(x) for x in "abcde")
    ops = [op for level in _OPERATOR_LEVELS for op in level]
    trees = []
    for op1 in ops:
        for op2 in ops:
            trees.append(ast.BinaryOp(op2, ast.BinaryOp(op1, a, b), c))
            trees.append(ast.BinaryOp(op1, a, ast.BinaryOp(op2, b, c)))
        for u in "-+!":
            trees.append(ast.UnaryOp(u, ast.BinaryOp(op1, a, b)))
            trees.append(ast.BinaryOp(op1, ast.UnaryOp(u, a), b))
            trees.append(ast.BinaryOp(op1, a, ast.UnaryOp(u, b)))
            trees.append(ast.BinaryOp(op1, a, ast.UnaryOp(u, ast.UnaryOp("-", b))))
        trees.append(ast.IfElse(c, ast.BinaryOp(op1, a, b), d))
        trees.append(ast.IfElse(ast.BinaryOp(op1, b, c), a, d))
        trees.append(ast.IfElse(b, a, ast.BinaryOp(op1, c, d)))
        trees.append(ast.BinaryOp(op1, a, ast.IfElse(c, b, d)))
        trees.append(ast.BinaryOp(op1, ast.IfElse(b, a, c), d))
    trees.append(ast.IfElse(b, a, ast.IfElse(d, c, e)))
    trees.append(ast.IfElse(d, ast.IfElse(b, a, c), e))
    trees.append(ast.IfElse(ast.IfElse(c, b, d), a, e))
    texts = [_render(t, 0) for t in trees]
    body = "\n".join(f"y{i} = {text};" for i, text in enumerate(texts))
    parsed = [s.rvalue for s in _doc(body).graph.body]
    for tree, text, got in zip(trees, texts, parsed):
        assert show(got) == show(tree), text
    assert len(trees) > 500
    assert "a || b && c" in texts and "a ^ b ^ c" in texts and "-a ^ b" in texts
