"""Unit tests of the NNEF semantic layer: declaration rules, typing, identifiers, evaluation, lowering.

Expected values come from the spec text (SPEC-NOTES §2-5, §9), worked out by hand.
"""
from __future__ import annotations


import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import semantics, stdlib, syntax
from nnef_tvm.reader.graph import Identifier

BOTH = "extension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"


def doc(body, frags="", ext=BOTH, outs="y", version="1.0"):
    return (f"version {version};\n{ext}{frags}\n"
            f"graph G(x) -> ({outs}) {{\n  x = external(shape = [2, 3]);\n{body}\n}}\n")


def build(body, frags="", ext=BOTH, outs="y", lower=None, **kw):
    text = doc(body, frags, ext, outs, **kw)
    return semantics.build_graph(syntax.parse(text, "t.nnef"), lower=lower)[0]


def ops(body, **kw):
    return [(op.name, op.inputs, op.outputs, op.attribs) for op in build(body, **kw).operations[1:]]


def errors(body, **kw):
    with pytest.raises(NNEFError) as info:
        build(body, **kw)
    return info.value.errors


def error(body, text, line=None, **kw):
    errs = errors(body, **kw)
    assert any(text in e.message for e in errs), [e.message for e in errs]
    if line is not None:
        assert any(e.line == line for e in errs if text in e.message), [(e.line, e.message) for e in errs]
    return errs


# ------------------------------------------------------------- document ---
@pytest.mark.parametrize("version", ["1.1", "2.0", "0.9"])
def test_unsupported_versions(version):
    error("  y = relu(x);", "unsupported version", line=1, version=version)


def test_version_1_without_minor_rejected():
    with pytest.raises(NNEFError):
        build("  y = relu(x);", version="1")


def test_unknown_extension_reported_by_name():
    errs = error("  y = relu(x);", "unknown extension 'KHR_foo'", ext="extension KHR_foo, VENDOR_bar;\n")
    assert len(errs) == 2 and "VENDOR_bar" in errs[1].message


def test_fragment_needs_extension():
    error("  y = f(x);", "requires 'extension KHR_enable_fragment_definitions;'",
          frags="fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = relu(x); }\n",
          ext="")


# ------------------------------------------------------- flat strictness ---
@pytest.mark.parametrize("body, what", [
    ("  y = relu(sigmoid(x));", "nested invocation"),
    ("  y = add(x, x * 2.0);", "operator expression"),
    ("  y = x;", "right-hand side must be an operation invocation"),
    ("  y = 1.0;", "right-hand side must be an operation invocation"),
    ("  y = add(x, 1.0 if true else 2.0);", "if/else"),
    ("  y = neg(x) + x;", "right-hand side must be an operation invocation"),
    ("  y = sum_reduce(x, axes = [for i in [1] yield i]);", "comprehension"),
])
def test_flat_subset_without_expression_extension(body, what):
    errs = error(body, what, line=5, ext="")
    assert len(errs) == 1          # no cascade: 'y' is poisoned, not reported as unassigned


def test_flat_accepts_negative_literals_and_tuples():
    got = ops("  y = pad(x, padding = [(0, 1), (1, 0)], value = -1.5);", ext="")
    assert got[0][3] == {"padding": [(0, 1), (1, 0)], "border": "constant", "value": -1.5}


# ------------------------------------------------------------ fragments ---
@pytest.mark.parametrize("frag, text", [
    ("fragment relu(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }", "redefines a standard operation"),
    ("fragment f<?>(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }", "declared generic but no"),
    ("fragment f(x: tensor<?>) -> (y: tensor<?>) { y = x; }", "must be declared generic using <?>"),
    ("fragment f(a: integer, x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }", "must come before"),
    ("fragment f(x: tensor<scalar>, a: integer = 1.0) -> (y: tensor<scalar>) { y = x; }",
     "'scalar' cannot be cast to the type 'integer'"),
    ("fragment f(x: tensor<scalar>, x: integer) -> (y: tensor<scalar>) { y = x; }", "duplicate parameter"),
    ("fragment f(x: tensor<scalar>) -> (x: tensor<scalar>) { x = x; }", "duplicate"),
    ("fragment f(x: tensor<>) -> (y: tensor<>) { y = x; }", "unbound type 'tensor<>'"),
    ("fragment f(x: tensor<scalar>) -> (y: scalar) { y = 1.0; }", "must be of tensor type"),
    ("fragment f(x: (tensor<scalar>, integer)) -> (y: tensor<scalar>) { y = x[0]; }",
     "must be all attribute types or all tensor types"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>, z: tensor<scalar>) { y = x; }",
     "result 'z' of fragment 'f' is not assigned"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { x = relu(x); y = x; }", "cannot be assigned"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = relu(x); y = x; }", "already assigned"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { v = variable(shape = [1], label = 'v'); y = x; }",
     "not allowed inside fragments"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = update(x, x); }", "not allowed inside"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x > 0.0; }", "cannot be assigned a value"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { c = split(x, axis = 0, ratios = [1, 1]); y = c[0]; }",
     "unknown length"),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = copy<?>(x); }", "only allowed inside a generic"),
])
def test_fragment_declaration_rules(frag, text):
    error("  y = f(x);", text, frags=frag + "\n")


def test_duplicate_fragment():
    f = "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }\n"
    error("  y = f(x);", "already defined", frags=f + f)


def test_errors_in_unused_fragment_bodies_are_reported():
    error("  y = relu(x);", "undeclared identifier 'q'",
          frags="fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = add(x, q); }\n")


def test_fragment_defaults_and_generic_default():
    g = build("  y = f(x);\n  z = g(shape = [2], v = [1, 2]);", outs="y, z",
              frags="fragment f(x: tensor<scalar>, b: tensor<scalar> = 0.5, s: integer[] = [1, -2])"
                    " -> (y: tensor<scalar>) { y = pad(x + b, padding = [(s[0], s[1])]); }\n"
                    "fragment g<? = integer>(shape: integer[], v: ?[]) -> (y: tensor<?>)"
                    " { y = constant<?>(shape = shape, value = v); }\n")
    got = [(op.name, op.inputs, op.attribs, op.dtype) for op in g.operations[1:]]
    assert got[0] == ("add", {"x": "x", "y": 0.5}, {}, None)
    assert got[1][0] == "pad" and got[1][2]["padding"] == [(1, -2)]
    assert got[2] == ("constant", {}, {"shape": [2], "value": [1, 2]}, "integer")
    assert g.tensors["z"].dtype == "integer"


# ---------------------------------------------------------------- types ---
def test_no_integer_to_scalar_cast():
    error("  y = add(x, 1);", "argument of type 'integer' cannot be cast to type 'tensor<scalar>'", line=6)
    error("  y = mul(x, scalar(1) + 1);", "invalid operand types 'scalar' and 'integer'")


def test_array_literal_is_not_a_tensor():
    error("  y = add(x, [1.0, 2.0]);", "'scalar[]' cannot be cast to type 'tensor<scalar>'")


def test_generic_deduction_and_explicit_types():
    g = build("  a = copy(true);\n  b = select(true, 1, 2);\n  c = copy<integer>(3);\n"
              "  d = constant(shape = [1], value = [1.0]);\n  y = cast<scalar>(b);", outs="y")
    assert [op.dtype for op in g.operations[1:]] == ["logical", "integer", "integer", "scalar", "scalar"]
    assert {n: g.tensors[n].dtype for n in "abcdy"} == {
        "a": "logical", "b": "integer", "c": "integer", "d": "scalar", "y": "scalar"}
    # the default generic type wins over deduction: constant<? = scalar> with integers is an error
    error("  y = constant(shape = [1], value = [1]);", "'integer[]' cannot be cast to type 'scalar[]'")
    error("  y = select(true, 1, 2.0);", "ambiguous")
    error("  y = relu<scalar>(x);", "not generic")


def test_operator_typing_table():
    error("  m = x > 0.0;\n  y = select(m == m, x, x);", "cannot be cast to type 'tensor<scalar>'")
    error("  y = x + 1;", "cannot be cast to type 'tensor<scalar>'")
    error("  c = constant<integer>(shape = [1], value = [1]);\n  y = c + c;", "tensor<integer>")
    error("  y = x in [1.0];", "not defined for tensor")
    error("  y = mul(x, 1.0 + 1);", "invalid operand types")
    error("  y = mul(x, scalar(1 == 1.0));", "invalid operand types")
    error("  y = mul(x, scalar(length_of('a' - 'b')));", "invalid operand types")
    # logical tensors: && || ! map to and/or/not (spec Table 1, examples/d02)
    got = ops("  m = x > 0.0;\n  y = select(!m || m && m, x, 0.0);")
    assert [o[0] for o in got] == ["gt", "not", "or", "and", "select"]


def test_if_else_and_array_common_types():
    got = ops("  y = sum_reduce(x, axes = [1, 2] if false else []);")
    assert got[0][3]["axes"] == []
    error("  y = sum_reduce(x, axes = [1, 2] if true else 1);", "incompatible types")
    error("  y = sum_reduce(x, axes = [1, 2.0]);", "no common type")
    error("  y = relu(x) if x else x;", "condition of if/else must be a logical attribute")
    got = ops("  y = concat([x, 1.0], axis = 0);")      # tensor<scalar> and scalar: tensor<scalar>[]
    assert got[0][1] == {"values": ["x", 1.0]}


# --------------------------------------------------------- invocations ---
@pytest.mark.parametrize("body, text", [
    ("  y = copy(x, x);", "too many positional arguments"),
    ("  y = sum_reduce(x, [1]);", "expected named argument"),
    ("  y = sum_reduce(x);", "missing argument for required parameter 'axes'"),
    ("  y = sum_reduce(x, axes = [1], axes = [2]);", "duplicate argument"),
    ("  y = sum_reduce(x, axez = [1]);", "no parameter named 'axez'"),
    ("  y = add(x = x, x);", "positional argument after named argument"),
    ("  y = frobnicate(x);", "undeclared operation 'frobnicate'"),
    ("  y = copy<?>(x);", "only allowed inside a generic fragment"),
])
def test_invocation_errors(body, text):
    error(body, text, line=6)


def test_named_tensor_arguments_are_accepted():
    assert ops("  y = add(y = x, x = 1.0);")[0][1] == {"x": 1.0, "y": "x"}


# --------------------------------------------------------- identifiers ---
def test_identifier_rules():
    error("  y = relu(z);", "undeclared identifier 'z'", line=6)
    error("  y = relu(x);\n  y = relu(x);", "'y' is already declared", line=7)
    error("  y = external(shape = [1]);", "must be graph parameters")
    error("  x = relu(x);\n  y = relu(x);", "already declared")
    error("  y = relu(x);", "graph result 'q' is not assigned", outs="y, q")
    error("  a = [x, x];\n  y = add_n(a);", "must denote a single tensor")
    error("  m = moments(x, axes = [1]);\n  y = relu(x);", "must denote a single tensor")
    error("  [a, b] = moments(x, axes = [1]);\n  y = relu(x);", "array left-hand side")
    error("  a, b, c = moments(x, axes = [1]);\n  y = relu(x);", "tuple left-hand side with 3 items")


def test_graph_parameter_must_be_assigned_by_external():
    text = "version 1.0;\ngraph G(a, b) -> (y) {\n  a = external(shape = [1]);\n  b = relu(a);\n  y = relu(a);\n}\n"
    with pytest.raises(NNEFError, match="can only be assigned by operation 'external'"):
        semantics.build_graph(syntax.parse(text, "t.nnef"))
    text = "version 1.0;\ngraph G(a, b) -> (y) {\n  a = external(shape = [1]);\n  y = relu(a);\n}\n"
    with pytest.raises(NNEFError, match="graph parameter 'b' is not assigned"):
        semantics.build_graph(syntax.parse(text, "t.nnef"))


def test_variable_and_update_rules():
    got = ops("  v = variable(shape = [2, 3], label = 'v');\n  y = update(v, x);")
    assert got[1] == ("update", {"variable": "v", "value": "x"}, {"result": "y"}, {})
    error("  y = update(x, x);", "must be a variable")
    error("  v = variable(shape = [2, 3], label = 'v');\n  y = update(v, x);\n  z = update(v, x);",
          "updated more than once")


def test_graph_copy_for_identifier_and_literal_rhs():
    got = ops("  a = x;\n  b = 2.0;\n  y = add(a, b);")
    assert got[0] == ("copy", {"x": "x"}, {"y": "a"}, {})
    assert got[1] == ("copy", {"x": 2.0}, {"y": "b"}, {})


def test_all_independent_errors_reported_at_once():
    errs = errors("  a = relu(p);\n  b = relu(q);\n  c = relu(a);\n  y = add(x, 1);")
    assert [(e.line, e.message) for e in errs] == [
        (6, "undeclared identifier 'p'"),
        (7, "undeclared identifier 'q'"),
        (9, "argument of type 'integer' cannot be cast to type 'tensor<scalar>' for parameter 'y' of 'add'"),
    ]  # 'c = relu(a)' uses the poisoned 'a': no cascade


def test_errors_in_fragments_and_graph_together():
    errs = errors("  y = f(x);\n  z = relu(w);", outs="y, z",
                  frags="fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = add(x, k); }\n")
    assert [e.message for e in errs] == ["undeclared identifier 'k'", "undeclared identifier 'w'"]


# ------------------------------------------------ compile-time evaluation --
def attr(expr, op="sum_reduce", key="axes"):
    extra = "padding = [], " if op == "pad" else ""
    got = ops(f"  y = {op}(x, {extra}{key} = {expr});")
    return got[0][3][key]


def test_integer_arithmetic():
    assert attr("[7 / 2, -7 / 2, 7 / -2, 2 ^ 10, 2 * 3 + 1, 10 - 2 - 3]") == [3, -3, -3, 1024, 7, 5]
    error("  y = sum_reduce(x, axes = [1 / 0]);", "division by zero")


def test_scalar_folding_and_precedence():
    got = ops("  y = x * 2.0 + x / (1.0 + 3.0) ^ 2.0;")
    assert [o[0] for o in got] == ["mul", "div", "add"] and got[1][1] == {"x": "x", "y": 16.0}
    assert attr("-2.0 * 3.0 + 1.0", op="mul", key="y") if False else True
    assert ops("  y = mul(x, -2.0 ^ 2.0);")[0][1]["y"] == -4.0          # -(2^2), spec precedence
    assert ops("  y = mul(x, (-2.0) ^ 2.0);")[0][1]["y"] == 4.0
    assert ops("  y = mul(x, -1.0 + 3.0);")[0][1]["y"] == 2.0            # E1: Khronos gives -4


def test_arrays_strings_subscripts():
    assert attr("[1, 2] + [3] * 2") == [1, 2, 3, 3]
    assert attr("[1, 2, 3, 4][1:3]") == [2, 3]
    assert attr("[1, 2, 3, 4][3:1]") == []
    assert attr("[1, 2, 3, 4][-2:]") == [3, 4]
    assert attr("[[1, 2], [3]][0]") == [1, 2]
    assert attr("[[1, 2, 3][-1]]") == [3]
    assert attr("[length_of('ab' * 3), length_of(('abc' + 'd')[1:])]") == [6, 3]
    assert attr("'ab' + 'c'", op="pad", key="border") == "abc"
    assert attr("'abc'[1]", op="pad", key="border") == "b"
    assert attr("[(1, 4)[1]]") == [4]
    error("  y = sum_reduce(x, axes = [[1, 2][2]]);", "index 2 out of range")
    error("  y = sum_reduce(x, axes = [1, 2][0:5]);", "out of bounds")


def test_in_and_comparisons():
    assert attr("[1] if (2 in [1, 2]) && !(3 in [1, 2]) else [0]") == [1]
    assert attr("[1] if [1, 2] in [[0], [1, 2]] else [0]") == [1]
    assert attr("[1] if 'a' == 'a' && 'a' != 'b' else [0]") == [1]
    assert attr("[1] if 2 < 3 && 3 >= 3 && !(1.5 > 2.0) else [0]") == [1]


def test_comprehensions():
    assert attr("[for i in [1, 2, 3], j in [4, 5, 6] yield i * j]") == [4, 10, 18]
    assert attr("[for i in range_of([5, 6, 7]) if i != 1 yield i]") == [0, 2]
    assert attr("[for i in [] yield i]") == []
    error("  y = sum_reduce(x, axes = [for i in [1, 2], j in [1] yield i]);", "same length")


def test_casts():
    assert attr("[integer(2.7), integer(-2.7), integer(true), integer('42')]") == [2, -2, 1, 42]
    assert ops("  y = mul(x, scalar(3) + scalar(true) + scalar('1.5'));")[0][1]["y"] == 5.5
    assert attr("string(true) + string(12) + string(1.5)", op="pad", key="border") == "true121.5"
    assert attr("[1] if logical(2) && logical('a') && !logical(0.0) else [0]") == [1]
    error("  y = sum_reduce(x, axes = [integer('abc')]);", "not an integer literal")
    error("  y = sum_reduce(x, axes = [integer(x)]);", "non-tensor primitive")


def test_shape_of_is_rejected():
    error("  y = sum_reduce(x, axes = shape_of(x));", "deprecated")


def test_fresh_names_avoid_user_names():
    g = build("  mul1 = relu(x);\n  y = x * 2.0 + mul1;")
    assert g.operations[2].outputs == {"z": "mul2"}
    assert set(g.tensors) == {"x", "mul1", "mul2", "y"}


# ---------------------------------------------------------------- lowering --
LOWER_FRAG = ("fragment f(x: tensor<scalar>, k: scalar = 2.0) -> (y: tensor<scalar>, z: tensor<scalar>)"
              " { t = x * k; y = relu(t); z = t; }\n")


def test_lower_options():
    body = "  y, z = f(x);\n  w = relu(y);"
    default = build(body, frags=LOWER_FRAG, outs="y, z, w")
    assert [op.name for op in default.operations] == ["external", "mul", "relu", "copy", "relu"]
    none = build(body, frags=LOWER_FRAG, outs="y, z, w", lower=set())
    assert [op.name for op in none.operations] == ["external", "f", "relu"]
    assert none.operations[1].attribs == {"k": 2.0}
    assert none.operations[1].outputs == {"y": "y", "z": "z"}
    relu = build(body, frags=LOWER_FRAG, outs="y, z, w", lower={"f", "relu"})
    assert [op.name for op in relu.operations] == ["external", "mul", "max", "copy", "max"]
    func = build(body, frags=LOWER_FRAG, outs="y, z, w", lower=lambda name: name == "relu")
    assert [op.name for op in func.operations] == ["external", "f", "max"]
    full = build(body, frags=LOWER_FRAG, outs="y, z, w", lower="all")
    assert [op.name for op in full.operations] == ["external", "mul", "gt", "select", "copy", "gt", "select"]


def test_lowered_positions_and_origin():
    g = build("  y, z = f(x);", frags=LOWER_FRAG, outs="y, z", lower="all")
    for op in g.operations[1:]:
        assert op.pos.line == 7 and op.pos.file == "t.nnef"
        assert op.origin[0].line == 7 and len(op.origin) >= 2
    # select comes from max (stdlib) inside relu inside f: 4 levels
    select = [op for op in g.operations if op.name == "select"][0]
    assert len(select.origin) == 4 and select.origin[1].line == 3


def test_every_compound_lowers_to_primitives():
    frags = stdlib.standard_fragments()
    prims = {n for n, f in frags.items() if f.body is None}
    compounds = sorted(n for n, f in frags.items() if f.body is not None)
    assert len(compounds) == 45 and len(prims) == 73
    sigs, _ = semantics.standard_signatures()
    for name in compounds:
        sig = sigs[name]
        samples = {"tensor<scalar>": "x", "tensor<?>": "x", "tensor<scalar>[]": "[x, x]",
                   "tensor<integer>": "k", "integer[]": "[1, 1]", "integer": "2", "scalar": "0.5",
                   "logical": "true"}
        args = [f"{p.name} = {samples[str(p.type)]}" for p in sig.params if not p.has_default]
        results = ", ".join(f"r{i}" for i in range(len(sig.results)))
        lhs = "[r0, r1]" if name == "copy_n" else results
        outs = "r0, r1" if name == "copy_n" else results
        body = (f"  k = external<integer>(shape = [1]);\n  {lhs} = {name}({', '.join(args)});")
        text = (f"version 1.0;\ngraph G(x, k) -> ({outs}) {{\n  x = external(shape = [1, 2, 4, 4]);\n{body}\n}}\n")
        g = semantics.build_graph(syntax.parse(text, name + ".nnef"), lower="all")[0]
        names = {op.name for op in g.operations}
        assert names <= prims, (name, names - prims)
        assert all(op.pos.line == 5 for op in g.operations[2:]), name


def test_add_n_recursion_and_copy_n():
    g = build("  y = add_n([x, x, x]);", lower="all")
    assert [op.name for op in g.operations[1:]] == ["constant", "add", "add", "add"]
    assert g.operations[-1].outputs == {"z": "y"}
    g = build("  [a, b] = copy_n(x, times = 2);\n  y = add(a, b);", lower="all")
    assert [(op.name, op.inputs, op.outputs) for op in g.operations[1:3]] == [
        ("copy", {"x": "x"}, {"y": "a"}), ("copy", {"x": "x"}, {"y": "b"})]
    error("  [a, b] = copy_n(x, times = 3);\n  y = add(a, b);", "2 tensors expected", lower="all")


def test_compound_array_result_into_single_identifier_is_expanded():
    frag = ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) "
            "{ c = copy_n(x, times = 3); y = add_n(c); }\n")
    g = build("  y = f(x);", frags=frag)
    assert [op.name for op in g.operations[1:]] == ["add_n"]
    assert g.operations[1].inputs == {"x": ["x", "x", "x"]}


def test_primitive_array_results_need_a_list():
    error("  y = concat(split(x, axis = 0, ratios = [1, 1]), axis = 0);", "could not determine the length")
    frag = "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>[]) { y = split(x, axis = 0, ratios = [1, 1]); }\n"
    g = build("  [a, b] = f(x);\n  y = add(a, b);", frags=frag)       # the caller names the items
    assert g.operations[1].outputs == {"values": ["a", "b"]}
    error("  y = relu(f(x)[0]);", "could not determine the length", frags=frag)


def test_zero_point_linear_quantize_bounds():
    g = build("  y = zero_point_linear_quantize(x, 0, 0.5, bits = 8, signed = true, symmetric = false);",
              lower="all")
    assert sorted(op.inputs["false_value"] for op in g.operations if op.name == "select") == [-128.0, 127.0]
    g = build("  y = zero_point_linear_quantize(x, 0, 0.5, bits = 4, signed = false, symmetric = false);",
              lower="all")
    assert sorted(op.inputs["false_value"] for op in g.operations if op.name == "select") == [0.0, 15.0]


def test_unbounded_recursion_is_an_error():
    error("  y = f(x);", "deeper than", frags="fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = f(x); }\n")


def test_check_returns_errors():
    d = syntax.parse(doc("  y = relu(z);"), "t.nnef")
    errs = semantics.check(d)
    assert len(errs) == 1 and errs[0].line == 6
    assert semantics.check(syntax.parse(doc("  y = relu(x);"), "t.nnef")) == []


def test_outputs_are_identifiers_and_literals_stay_literals():
    g = build("  y = conv(x, x, 0.0);")
    op = g.operations[1]
    assert isinstance(op.inputs["input"], Identifier) and op.inputs["bias"] == 0.0
    assert not isinstance(op.inputs["bias"], Identifier)
    assert isinstance(op.outputs["output"], Identifier)
    assert op.attribs["border"] == "constant" and not isinstance(op.attribs["border"], Identifier)


def test_variable_labels_and_defaults_not_shared():
    g = build("  v = variable(shape = [2, 3], label = 'layer/v');\n  a = max_pool(v, size = [1, 1]);\n"
              "  y = max_pool(a, size = [1, 1]);")
    assert g.tensors["v"].label == "layer/v"
    a, y = g.operations[2], g.operations[3]
    assert a.attribs["padding"] == [] and a.attribs["padding"] is not y.attribs["padding"]
    a.attribs["padding"].append((0, 0))         # a later stage mutating one op must not leak
    assert build("  y = max_pool(x, size = [1, 1]);").operations[1].attribs["padding"] == []


def test_custom_fragment_bodies_follow_the_flat_rule_too():
    frag = "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x * 2.0; }\n"
    error("  y = f(x);", "operator_expressions", frags=frag, ext="extension KHR_enable_fragment_definitions;\n")
    ok = "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = mul(x, 2.0); }\n"
    g = build("  y = f(x);", frags=ok, ext="extension KHR_enable_fragment_definitions;\n")
    assert [op.name for op in g.operations] == ["external", "mul"]


def test_generic_fragment_binding_flows_into_expansion():
    frag = ("fragment pick<?>(c: tensor<logical>, a: tensor<?>, b: tensor<?>) -> (y: tensor<?>) "
            "{ t = select(c, a, b); y = copy<?>(t); }\n")
    g = build("  m = x > 0.0;\n  i = constant<integer>(shape = [1], value = [1]);\n"
              "  y = pick(m, i, 2);", frags=frag)
    assert [(op.name, op.dtype) for op in g.operations[3:]] == [("select", "integer"), ("copy", "integer")]
    assert g.tensors["y"].dtype == "integer" and g.tensors["select1"].dtype == "integer"


def test_errors_inside_expansions_point_at_the_invocation():
    frag = ("fragment f(x: tensor<scalar>, axes: integer[]) -> (y: tensor<scalar>) "
            "{ y = sum_reduce(x, axes = [axes[2]]); }\n")
    errs = error("  y = f(x, axes = [1]);", "index 2 out of range", frags=frag)
    assert errs[0].line == 7 and errs[0].file == "t.nnef"
    assert "while expanding 'f'" in errs[0].message and "t.nnef:3:" in errs[0].message


def test_empty_array_operations():
    assert attr("[] + [] + [1]") == [1]
    assert attr("[] * 3") == []
    assert attr("[1] if !(1 in []) else [0]") == [1]


def test_integer_power_edge_cases():
    assert attr("[1 ^ -3, (0 - 1) ^ -3, (0 - 1) ^ -2, 0 ^ 0]") == [1, -1, 1, 1]
    error("  y = sum_reduce(x, axes = [2 ^ -1]);", "negative integer exponent")
    error("  y = sum_reduce(x, axes = [2 ^ 100]);", "too large")


def test_scalar_arithmetic_follows_ieee():
    import math
    got = ops("  y = pad(x, padding = [], value = 1.0 / 0.0);\n  z = pad(x, padding = [], value = (0.0 - 8.0) ^ 0.5);",
              outs="y, z")
    assert got[0][3]["value"] == math.inf and math.isnan(got[1][3]["value"])


def test_graph_identifiers_cannot_hold_strings():
    error("  s = 'abc';\n  y = relu(x);", "must denote a single tensor")


def test_nested_empty_arrays():
    assert attr("[[], [1]][1]") == [1]
    error("  y = sum_reduce(x, axes = [[], 1][1]);", "no common type")
    assert attr("[[] , []][0] + [2]") == [2]


def test_errors_of_every_phase_collected_together():
    text = ("version 1.1;\nextension KHR_enable_fragment_definitions, KHR_bogus;\n"
            "fragment f(a: integer, x: tensor<scalar>) -> (y: tensor<scalar>) { y = copy(x); }\n"
            "graph G(x) -> (y, z) {\n  x = external(shape = [1]);\n  y = f(x);\n  w = relu(nope);\n"
            "  v = add(x, 1);\n}\n")
    with pytest.raises(NNEFError) as info:
        semantics.build_graph(syntax.parse(text, "all.nnef"))
    got = [(e.line, e.message.split(" ")[0]) for e in info.value.errors]
    assert [line for line, _ in got] == [1, 2, 3, 7, 8, 4]
    assert "graph result 'z' is not assigned" in info.value.errors[-1].message
    assert all(e.file == "all.nnef" for e in info.value.errors)
    assert str(info.value).count("all.nnef:") == 6


@pytest.mark.parametrize("body, text", [
    ("  y = relu(external(shape = [1]));", "must be the whole right-hand side"),
    ("  y = sum_reduce(x, axes = [for i in [1], i in [2] yield i]);", "duplicate loop variable"),
    ("  y = sum_reduce(x, axes = [for x in [1] yield x]);", "hides an identifier"),
    ("  y = sum_reduce(x, axes = [for i in [1] if i yield i]);", "condition must be logical"),
    ("  y = sum_reduce(x, axes = [length_of(3[0:1])]);", "ranges apply to arrays and strings"),
    ("  y = sum_reduce(x, axes = [(1, 2)[2]]);", "tuple index 2 out of range"),
    ("  y = sum_reduce(x, axes = [(1, 2)[length_of([])]]);", "integer literal"),
    ("  y = sum_reduce(x, axes = [1, 2][3:]);", "range begin 3 out of bounds"),
    ("  y = sum_reduce(x, axes = [integer(1.0 / 0.0)]);", "cannot convert inf"),
    ("  y = mul(x, scalar('1.5x'));", "not a numeric literal"),
    ("  y = sum_reduce(x, axes = [1] * 100000000);", "too large"),
    ("  y = sum_reduce(x, axes = [1, 2][x]);", "index must be an integer"),
    ("  y = relu(x)[0];", "subscripts apply to arrays"),
    ("  y = sum_reduce(x, axes = [1] + 1);", "invalid operand types"),
])
def test_more_expression_errors(body, text):
    error(body, text, line=6)


def test_more_expression_values():
    assert attr("[+3, -(2), [1, 2, 3][-2:-1][0]]") == [3, -2, 2]
    g = build("  a, b = (x, relu(x));\n  y = add(a, b);")
    # the right-hand side is evaluated first (relu writes b directly), then 'a' is bound by a copy
    assert [(op.name, op.outputs) for op in g.operations[1:3]] == [("relu", {"y": "b"}), ("copy", {"y": "a"})]


def test_graph_declaration_errors():
    text = "version 1.0;\ngraph G(x, x) -> (y) {\n  x = external(shape = [1]);\n  y = relu(x);\n}\n"
    with pytest.raises(NNEFError, match="duplicate graph parameter 'x'"):
        semantics.build_graph(syntax.parse(text, "t.nnef"))
    frag_only = syntax.parse("version 1.0;\nextension KHR_enable_fragment_definitions;\n"
                             "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>);\n", "f.nnef", allow_no_graph=True)
    assert [e.message for e in semantics.check(frag_only)] == ["document has no graph definition"]
    with pytest.raises(ValueError):
        build("  y = relu(x);", lower="everything")
