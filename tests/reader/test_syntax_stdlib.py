"""stdlib.nnef: the 118 standard operations, checked against shared/nnef/ops.json.

ops.json was compiled independently from the NNEF 1.0.5 specification, so every
signature parsed from stdlib.nnef must render back to ops.json's parameter
names, types and defaults, and result names and types.
"""
from __future__ import annotations

import json
import os

import pytest

from nnef_tvm.reader import ast, syntax

OPS_JSON = "/work/shared/nnef/ops.json"
STDLIB = os.path.join(os.path.dirname(syntax.__file__), "stdlib.nnef")


def _load():
    with open(OPS_JSON) as f:
        ops = {o["name"]: o for o in json.load(f)["operations"]}
    with open(STDLIB) as f:
        doc = syntax.parse(f.read(), STDLIB, allow_no_graph=True)
    return ops, doc


OPS, DOC = _load()
FRAGMENTS = {f.name: f for f in DOC.fragments}


def type_text(t) -> str:
    """ops.json's spelling of a type (without blanks)."""
    if isinstance(t, ast.PrimitiveType):
        return t.name
    if isinstance(t, ast.TensorType):
        return f"tensor<{t.item.name if t.item else ''}>"
    if isinstance(t, ast.ArrayType):
        return type_text(t.item) + "[]"
    if isinstance(t, ast.TupleType):
        return "(" + ",".join(type_text(i) for i in t.items) + ")"
    raise TypeError(t)


def literal_value(e):
    """ops.json's JSON rendering of a default value (tuples as lists)."""
    if isinstance(e, ast.Literal):
        return e.value
    if isinstance(e, (ast.ArrayExpr, ast.TupleExpr)):
        return [literal_value(i) for i in e.items]
    raise TypeError(e)


def test_counts_and_names():
    assert len(DOC.fragments) == 118 == len(FRAGMENTS)
    assert set(FRAGMENTS) == set(OPS)
    primitives = {n for n, f in FRAGMENTS.items() if f.body is None}
    compounds = {n for n, f in FRAGMENTS.items() if f.body is not None}
    assert (len(primitives), len(compounds)) == (73, 45)
    assert primitives == {n for n, o in OPS.items() if o["kind"] == "primitive"}
    assert compounds == {n for n, o in OPS.items() if o["kind"] == "compound"}


def test_header():
    assert DOC.version == (1, 0) and DOC.graph is None
    assert [e.name for e in DOC.extensions] == ["KHR_enable_fragment_definitions",
                                               "KHR_enable_operator_expressions"]
    with open(STDLIB) as f:
        head = f.read(600)
    assert "1.0.5" in head and "specification" in head


@pytest.mark.parametrize("name", sorted(OPS))
def test_signature_matches_ops_json(name):
    op, frag = OPS[name], FRAGMENTS[name]
    assert frag.generic == op["generic"]
    assert frag.generic_default == op["generic_default"]
    assert [p.name for p in frag.params] == [p["name"] for p in op["params"]]
    for param, spec in zip(frag.params, op["params"]):
        assert type_text(param.type) == spec["type"].replace(" ", ""), param.name
        if spec["has_default"]:
            assert param.default is not None, param.name
            value = literal_value(param.default)
            assert value == spec["default"] and type(value) is type(spec["default"]), param.name
        else:
            assert param.default is None, param.name
    assert [(r.name, type_text(r.type)) for r in frag.results] == \
        [(r["name"], r["type"].replace(" ", "")) for r in op["results"]]


@pytest.mark.parametrize("name", sorted(n for n, o in OPS.items() if o["kind"] == "compound"))
def test_compound_bodies_follow_ops_json(name):
    """Same statements as ops.json's body (the two O4 errata aside), same invocations."""
    with open(STDLIB) as f:
        text = f.read()
    spec = syntax.parse("version 1.0;\n" + OPS[name]["signature"] + "\n{\n" + OPS[name]["body"]
                        + "\n}\n", allow_no_graph=True).fragments[0]
    ours = FRAGMENTS[name]
    assert len(ours.body) == len(spec.body)
    invoked = lambda frag: sorted(_invocations(frag.body))  # noqa: E731
    assert invoked(ours) == invoked(spec)
    assert set(invoked(ours)) <= set(OPS) | {name}
    assert set(invoked(ours)) - {name} <= set(OPS[name]["lowering_direct"])
    if name not in ("avg_roi_align", "max_roi_align"):
        assert _structure(ours.body) == _structure(spec.body)
    assert text  # the file was read


def _structure(node):
    """The tree without positions."""
    if isinstance(node, list):
        return [_structure(n) for n in node]
    if hasattr(node, "__dataclass_fields__"):
        return (type(node).__name__,) + tuple(
            (name, _structure(getattr(node, name)))
            for name in node.__dataclass_fields__ if name != "pos")
    return (type(node).__name__, node)


def _invocations(node):
    if isinstance(node, ast.Invocation):
        yield node.op
    if isinstance(node, list):
        for item in node:
            yield from _invocations(item)
    elif hasattr(node, "__dataclass_fields__"):
        for field in node.__dataclass_fields__:
            if field != "pos":
                yield from _invocations(getattr(node, field))


def test_errata_applied():
    for name, pool in (("avg_roi_align", "avg_pool"), ("max_roi_align", "max_pool")):
        last = FRAGMENTS[name].body[-1].rvalue
        assert last.op == pool
        args = {a.name: a.value for a in last.args if a.name}
        for key in ("size", "stride"):
            value = args[key]
            assert isinstance(value, ast.BinaryOp) and value.op == "+"
            assert literal_value(value.left) == [1, 1] and value.right.name == "sampling_rate"
    add_n = FRAGMENTS["add_n"].body[0].rvalue
    assert isinstance(add_n, ast.IfElse)
    assert add_n.otherwise.op == "constant"
    # zero_point_linear_quantize: lower bound -r - 1.0 is (-r) - 1.0 (SPEC-NOTES E1)
    q = FRAGMENTS["zero_point_linear_quantize"].body[3].rvalue
    lower = q.args[1].value.otherwise.otherwise
    assert isinstance(lower, ast.BinaryOp) and lower.op == "-"
    assert isinstance(lower.left, ast.UnaryOp) and lower.left.operand.name == "r"
    rsqr = FRAGMENTS["rsqr"].body[0].rvalue
    assert rsqr.op == "^" and rsqr.right.value == -2.0


def test_compounds_come_after_what_they_invoke():
    seen = set()
    for frag in DOC.fragments:
        if frag.body is not None:
            assert set(_invocations(frag.body)) - {frag.name} <= seen, frag.name
        seen.add(frag.name)


def test_khronos_type_checks_our_fragments():
    """The Khronos parser (oracle) accepts every declaration and compound body of stdlib.nnef.

    Each fragment is renamed (``my_<name>``, recursive uses too) because the
    standard names are predefined there; Khronos type-checks fragment bodies
    when it reads their definitions.
    """
    import re
    nnef = pytest.importorskip("nnef")
    with open(STDLIB) as f:
        text = f.read()
    start = text.index("fragment ")
    body = text[start:]
    for name in FRAGMENTS:
        body = re.sub(rf"\bfragment {name}\b", f"fragment my_{name}", body)
    body = re.sub(r"\badd_n\(x\[1:\]\)", "my_add_n(x[1:])", body)
    document = ("version 1.0;\nextension KHR_enable_fragment_definitions, "
                "KHR_enable_operator_expressions;\n" + body
                + "\ngraph g( x ) -> ( y ) { x = external(shape = [1]); y = copy(x); }\n")
    assert document.count("fragment my_") == 118
    nnef.parse_string(document)          # raises nnef.Error on any problem
