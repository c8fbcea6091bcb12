"""Semantic verdicts on every document of shared/nnef/examples (README verdicts) and op counts.

V and D documents must be accepted, I documents rejected for the stated reason at
the stated line. Operation lists are compared with what the README says the
Khronos parser produces (checked by hand there), not with our own earlier output.
"""
from __future__ import annotations

import pathlib

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import semantics, stdlib, syntax

EXAMPLES = pathlib.Path("/work/shared/nnef/examples")
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared examples not available")


def build(name, lower=None):
    path = EXAMPLES / name
    doc = syntax.parse(path.read_text(), name)
    return semantics.build_graph(doc, lower=lower)[0]


def names(g):
    return [op.name for op in g.operations]


def test_01_flat_counts_and_structure():
    g = build("01_flat_small_cnn.nnef")
    assert len(g.operations) == 16
    assert len(build("01_flat_small_cnn.nnef", lower="all").operations) == 26
    split = g.operations[8]
    assert split.name == "split" and split.outputs == {"values": ["left", "right"]}
    moments = g.operations[9]
    assert moments.outputs == {"mean": "stats_mean", "variance": "stats_var"}
    conv2 = g.operations[7]
    assert conv2.inputs["bias"] == 0.0 and conv2.attribs["groups"] == 0
    assert conv2.attribs["dilation"] == [] and conv2.attribs["border"] == "constant"
    assert g.operations[14].inputs == {"x": "logits", "y": -5.0}
    assert g.inputs == ["input"] and g.outputs == ["probs", "stats_mean"]
    assert all(t.dtype == "scalar" and t.shape is None for t in g.tensors.values())


def test_01_lowered_only_primitives():
    g = build("01_flat_small_cnn.nnef", lower="all")
    prims = {n for n, f in stdlib.standard_fragments().items() if f.body is None}
    assert set(names(g)) <= prims
    # relu -> max -> select(x > 0.0, x, 0.0)
    assert names(g)[4:8] == ["gt", "select", "argmax_pool", "sample"]


def test_02_generic_dtypes():
    g = build("02_flat_shape_and_logic.nnef")
    assert len(g.operations) == 23
    assert g.tensors["idx"].dtype == "integer" and g.tensors["c"].dtype == "integer"
    assert g.tensors["cf"].dtype == "scalar" and g.tensors["both"].dtype == "logical"
    assert g.tensors["mask_any"].dtype == "logical"
    ops = {name: op for op in g.operations for name in op.output_names()}
    assert ops["c"].dtype == "integer" and ops["cf"].dtype == "scalar"
    assert ops["picked"].dtype == "scalar"          # gather<?> deduced from its input
    assert ops["positive"].dtype is None            # gt is not generic
    assert ops["state_next"].name == "update" and ops["a"].outputs == {"values": ["a", "b"]}


def test_03_fragments():
    g = build("03_fragments_generics.nnef", lower=set())
    assert len(g.operations) == 7
    g = build("03_fragments_generics.nnef")
    assert names(g) == ["external", "variable", "conv", "leaky_relu", "channel_shuffle",
                        "constant", "copy", "copy", "constant"]
    assert [op.dtype for op in g.operations[5:]] == ["logical", "logical", "logical", "integer"]
    assert g.tensors["flags"].dtype == "logical" and g.tensors["ints"].dtype == "integer"
    conv = g.operations[2]
    assert conv.inputs["bias"] == 0.0 and conv.attribs["stride"] == [2, 2]
    assert g.operations[3].attribs == {"alpha": 0.1}


def test_04_operator_expressions():
    g = build("04_operator_expressions.nnef")
    assert names(g) == ["external", "external", "mul", "div", "add", "gt", "le", "not", "and",
                        "sub", "neg", "select", "sigmoid", "tanh", "mul", "relu", "add"]
    assert g.operations[3].inputs == {"x": "b", "y": 16.0}
    # fresh names never collide with user names and are unique
    outs = [o for op in g.operations for o in op.output_names()]
    assert len(outs) == len(set(outs))


def test_05_compile_time_programming():
    g = build("05_comprehension_ifelse.nnef")
    assert names(g) == ["external", "avg_pool", "mul", "copy", "add", "add"]
    pool = g.operations[1]
    assert pool.attribs["size"] == [1, 1, 2, 2] and pool.attribs["stride"] == [1, 1, 2, 2]
    assert pool.attribs["border"] == "ignore"
    assert g.operations[2].inputs == {"x": "x", "y": 1.5}
    # origin chain: lowered ops point at the user's invocation line
    assert g.operations[2].pos.line == 36 and g.operations[2].origin[0].line == 36
    assert g.operations[4].pos.line == 37 and len(g.operations[4].origin) >= 2


def test_07_array_results():
    g = build("07_tensor_array_results.nnef")
    assert names(g) == ["external", "mul", "mul", "mul"]
    assert [op.inputs["y"] for op in g.operations[1:]] == [1.0, 0.5, 0.25]
    assert [op.outputs["z"] for op in g.operations[1:]] == ["a", "b", "c"]


def test_06_quantized_graph():
    g = build("06_quantized/graph.nnef")
    assert len(g.operations) == 9


@pytest.mark.parametrize("name", ["d01_space_separated_extensions.nnef", "d02_logical_tensor_operators.nnef"])
def test_divergent_documents_accepted(name):
    g = build(name)
    if name.startswith("d02"):
        assert names(g) == ["external", "gt", "gt", "not", "and", "select"]
        assert all(g.tensors[t].dtype == "logical" for t in ("m",))


@pytest.mark.parametrize("name, line, text", [
    ("i01_undefined_identifier.nnef", 7, "undeclared identifier 'hidden'"),
    ("i02_type_mismatch.nnef", 8, "'integer' cannot be cast to type 'tensor<scalar>'"),
    ("i03_double_assignment.nnef", 8, "'hidden' is already declared"),
    ("i04_wrong_arity.nnef", 8, "too many positional arguments"),
    ("i05_missing_required_and_positional_attr.nnef", 9, "expected named argument"),
    ("i07_fragment_without_extension.nnef", 5, "KHR_enable_fragment_definitions"),
])
def test_invalid_documents_rejected(name, line, text):
    with pytest.raises(NNEFError) as info:
        build(name)
    err = info.value.errors[0]
    assert text in err.message
    assert err.line == line and err.file == name


def test_i06_structure_is_fine():
    g = build("i06_bad_dat_header/graph.nnef")
    assert g.operations


VALID = ["01_flat_small_cnn.nnef", "02_flat_shape_and_logic.nnef", "03_fragments_generics.nnef",
         "04_operator_expressions.nnef", "05_comprehension_ifelse.nnef", "07_tensor_array_results.nnef",
         "06_quantized/graph.nnef", "d01_space_separated_extensions.nnef", "d02_logical_tensor_operators.nnef"]


@pytest.mark.parametrize("name", VALID)
@pytest.mark.parametrize("lower", [None, "all", frozenset()])
def test_graph_invariants(name, lower):
    """Every tensor is declared once with a dtype, produced before use, graph I/O exist."""
    g = build(name, lower=lower)
    produced: set = set()
    for op in g.operations:
        for t in op.input_names():
            assert t in produced, (op.name, t)
        for t in op.output_names():
            assert t not in produced, t
            produced.add(t)
            assert g.tensors[t].dtype in ("scalar", "integer", "logical")
            assert g.tensors[t].shape is None
        assert op.pos is not None and op.pos.file == name
    assert set(produced) == set(g.tensors)
    assert set(g.inputs) <= produced and set(g.outputs) <= produced
