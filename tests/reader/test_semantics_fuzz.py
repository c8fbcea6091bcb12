"""Robustness: randomly typed expressions must give a graph or located NNEFErrors, never a Python crash.

The generator mixes every kind of value (tensors, integers, scalars, logicals,
strings, arrays, tuples, tensor arrays) under every operator, subscript,
built-in and invocation form, so most documents are ill-typed on purpose.
"""
from __future__ import annotations

import random

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import semantics, syntax



LEAVES = ["x", "m", "k", "ts", "1", "0", "2.5", "-1.0", "true", "'ab'", "[1, 2]", "[]", "[x, x]", "(1, 2.0)",
          "[[1], [2, 3]]", "n", "s", "q", "undefined_name"]
BINOPS = ["+", "-", "*", "/", "^", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "in"]
CALLS = ["relu({})", "add({}, {})", "select({}, {}, {})", "sum_reduce({}, axes = {})", "concat({}, axis = {})",
         "copy<integer>({})", "constant(shape = {}, value = {})", "add_n({})", "copy_n({}, times = {})",
         "split({}, axis = 0, ratios = {})", "f({})", "g({}, {})", "cast<scalar>({})", "moments({}, axes = {})"]
BUILTINS = ["length_of", "range_of", "integer", "scalar", "logical", "string", "shape_of"]


def rand_expr(r, depth):
    if depth <= 0 or r.random() < 0.2:
        return r.choice(LEAVES)
    k = r.randrange(9)
    a = lambda: rand_expr(r, depth - 1)  # noqa: E731
    if k < 3:
        return f"({a()} {r.choice(BINOPS)} {a()})"
    if k == 3:
        return f"{r.choice(['-', '!', '+'])}{a()}" if r.random() < 0.5 else f"({r.choice(['-', '!'])}{a()})"
    if k == 4:
        return f"({a()} if {a()} else {a()})"
    if k == 5:
        return f"[for i in {a()}, j in {a()} if {a()} yield {a()}]" if r.random() < 0.3 else \
            f"[for i in {a()} yield i]"
    if k == 6:
        return f"{a()}[{a()}]" if r.random() < 0.5 else f"{a()}[{a()}:{a()}]"
    if k == 7:
        return f"{r.choice(BUILTINS)}({a()})"
    call = r.choice(CALLS)
    return call.format(*[a() for _ in range(call.count("{}"))])


FRAGS = ("fragment f(x: tensor<scalar>, n: integer = 2) -> (y: tensor<scalar>) { y = x * scalar(n); }\n"
         "fragment g<?>(a: tensor<?>, b: ?[]) -> (y: tensor<?>[]) { y = [a, a]; }\n")


@pytest.mark.parametrize("seed", range(60))
def test_random_expressions_never_crash(seed):
    r = random.Random(seed)
    lines = ["  x = external(shape = [2, 3]);", "  m = x > 0.0;", "  k = constant<integer>(shape = [1], value = [1]);"]
    for i in range(6):
        lhs = r.choice([f"t{i}", f"[t{i}, u{i}]", f"t{i}, u{i}"])
        lines.append(f"  {lhs} = {rand_expr(r, 3)};")
    frag_body = rand_expr(r, 3)
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"
            + FRAGS + f"fragment h(x: tensor<scalar>, ts: tensor<scalar>[], n: integer, s: string, q: (integer, scalar))"
            f" -> (y: tensor<scalar>) {{ z = {frag_body}; y = x; }}\n"
            "graph G(x) -> (x) {\n" + "\n".join(lines) + "\n}\n")
    try:
        doc = syntax.parse(text, "fuzz.nnef")
    except NNEFError:
        return
    for lower in (None, "all"):
        try:
            semantics.build_graph(doc, lower=lower)
        except NNEFError as e:
            for err in e.errors:
                assert err.file == "fuzz.nnef" and err.line is not None, err
