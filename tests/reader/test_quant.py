"""graph.quant: parsing (vs the Khronos parser), located errors, attaching, dequantizing stored codes."""
import os
import warnings

import numpy as np
import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import ast
from nnef_tvm.reader import tensorfile as tf
from nnef_tvm.reader.graph import Graph, Tensor
from nnef_tvm.reader.quant import attach_quantization, dequantize, parse_quant

EXAMPLES = "/work/shared/nnef/examples"
_here = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "nnef", "examples"))
if os.path.isdir(_here):
    EXAMPLES = _here
needs_examples = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="shared NNEF examples not available")

GRAPH = """version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [1, 3, 2, 2]);
    w = variable(shape = [3, 3, 1, 1], label = 'w');
    c = conv(x, w);
    y = relu(c);
}
"""


def assert_entries_equal(ours, theirs):
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        got = ours[key]
        if isinstance(value, np.ndarray):
            assert isinstance(got, np.ndarray), key
            assert got.dtype == value.dtype and got.shape == value.shape, key
            assert np.array_equal(got, value), key
        else:
            assert type(got) is type(value) and got == value, key


# ---------------------------------------------------------------- parsing ----
@needs_examples
def test_quant_example_file_expected_entries():
    text = open(os.path.join(EXAMPLES, "06_quantized", "graph.quant")).read()
    q = parse_quant(text)
    assert list(q) == ["input", "filter", "act", "pooled", "output"]
    assert q["filter"]["op-name"] == "zero_point_linear_quantize"
    np.testing.assert_array_equal(q["filter"]["scale"], np.array([0.25, 0.125, 0.0625], np.float32))
    assert q["filter"]["zero_point"].dtype == np.int32 and q["filter"]["zero_point"].shape == (3,)
    assert q["pooled"]["max"].shape == (1, 3) and q["pooled"]["max"].dtype == np.float32
    assert q["act"] == {**q["act"], "bits": 8, "signed": False, "symmetric": False}
    assert q["output"]["bits"] == 5 and q["output"]["max"].shape == ()
    assert q.positions["act"].line == 7 and q.positions["act"].column == 1


@needs_examples
def test_quant_example_file_matches_khronos():
    nnef = pytest.importorskip("nnef")
    folder = os.path.join(EXAMPLES, "06_quantized")
    g = nnef.load_graph(folder, load_variables=False)
    theirs = {k: t.quantization for k, t in g.tensors.items() if t.quantization}
    ours = parse_quant(open(os.path.join(folder, "graph.quant")).read())
    assert set(ours) == set(theirs)
    for k in theirs:
        assert_entries_equal(ours[k], theirs[k])


KHRONOS_CASES = [
    '"x": zero_point_linear_quantize(zero_point = [1, 2, 3], scale = [[0.5, 0.25, 1.0]], bits = 8, '
    'signed = false, symmetric = false);',
    "'y': logarithmic_quantize(max = 1.0, bits = 4); # trailing comment",
    '"c"  :  min_max_linear_quantize( min = -1.5e0, max = 2.,\n bits = 4, signed = true, symmetric = true ) ;',
    '"w": linear_quantize(min = [[[[-1.0]]], [[[-2.0]]], [[[-3.0]]]], max = [[[[1.0]]], [[[2.0]]], [[[3.0]]]], bits = 16);',
    '"x": zero_point_linear_quantize(zero_point = -3, scale = 1e-3, bits = 8, signed = true, symmetric = false);',
    "",
]


@pytest.mark.parametrize("text", KHRONOS_CASES)
def test_quant_matches_khronos_parser(text):
    nnef = pytest.importorskip("nnef")
    g = nnef.parse_string(GRAPH, text)
    theirs = {k: t.quantization for k, t in g.tensors.items() if t.quantization}
    ours = parse_quant(text)
    assert set(ours) == set(theirs)
    for k in theirs:
        assert_entries_equal(ours[k], theirs[k])


# ----------------------------------------------------------------- errors ----
ERRORS = [
    # text, line, column, words
    ('"x": linear_quantize(min = -1, max = 1.0, bits = 8);', 1, 28, "integer literal -1 cannot be cast"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8);\n"x": linear_quantize(min = -1.0, max = 1.0, '
     'bits = 8);', 2, 1, "duplicate quantization entries for tensor 'x'"),
    ('"x": leaky_relu(alpha = 0.1);', 1, 6, "not a quantization operation"),
    ('"x": linear_quantize(x = 1.0, min = -1.0, max = 1.0, bits = 8);', 1, 22, "must not be provided"),
    ('"x": linear_quantize(min = -1.0, bits = 8);', 1, 6, "missing required argument 'max'"),
    ('"x": linear_quantize(min = y, max = 1.0, bits = 8);', 1, 28, "identifier 'y' not allowed"),
    ('"x": linear_quantize(min = -1.0 * 2.0, max = 1.0, bits = 8);', 1, 33, "no expressions"),
    ('"x": linear_quantize(min = 1.0, max = 2.0, bits = 8 - 1);', 1, 53, "no expressions"),
    ('"x": linear_quantize(min = [[1.0], [2.0, 3.0]], max = 1.0, bits = 8);', 1, 36, "jagged"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8)', 1, 54, "expected ';'"),
    ('x: linear_quantize(min = -1.0, max = 1.0, bits = 8);', 1, 1, "quoted tensor name"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8.0);', 1, 52, "expects integer"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8, bits = 8);', 1, 55, "given twice"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8, sign = true);', 1, 55, "no parameter 'sign'"),
    ('"x": zero_point_linear_quantize(zero_point = 0.0, scale = 1.0, bits = 8, signed = true, '
     'symmetric = true);', 1, 46, "tensor<integer>"),
    ('"x": min_max_linear_quantize(min = 0.0, max = 1.0, bits = 8, signed = 1, symmetric = false);',
     1, 71, "expects logical"),
    ('"x": linear_quantize(min = [], max = 1.0, bits = 8);', 1, 28, "empty array"),
    ('"x": linear_quantize(min = (1.0, 2.0), max = 1.0, bits = 8);', 1, 28, "tuple"),
    ('"x": linear_quantize(min = \'a\', max = 1.0, bits = 8);', 1, 28, "string"),
    ('"x": linear_quantize(min = -1.0, max = 1.0, bits = 8); @', 1, 56, "unexpected character"),
    ('"": linear_quantize(min = -1.0, max = 1.0, bits = 8);', 1, 1, "empty tensor name"),
    ('"x": linear_quantize(min = 1.0, max = 1.0, bits = 99999999999);', 1, 1, None),
]


@pytest.mark.parametrize("text,line,column,words", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_quant_errors_are_located(text, line, column, words):
    if words is None:
        parse_quant(text)          # large integer attribute: fine at this level (no range in the spec)
        return
    with pytest.raises(NNEFError) as e:
        parse_quant(text, file="m/graph.quant")
    err = e.value.errors[0]
    assert err.file == "m/graph.quant"
    assert (err.line, err.column) == (line, column), str(e.value)
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("text", [
    '"x": linear_quantize(min = -1, max = 1.0, bits = 8);',
    '"x": linear_quantize(min = x, max = 1.0, bits = 8);',
    '"x": linear_quantize(min = -1.0 * 2.0, max = 1.0, bits = 8);',
    '"x": linear_quantize(x = 1.0, min = -1.0, max = 1.0, bits = 8);',
    '"x": linear_quantize(min = [[1.0], [2.0, 3.0]], max = 1.0, bits = 8);',
    '"x": linear_quantize(min = -1.0, max = 1.0, bits = 8); "x": linear_quantize(min = -1.0, max = 1.0, bits = 8);',
    '"x": linear_quantize(min = -1.0, bits = 8);',
])
def test_quant_khronos_also_rejects(text):
    nnef = pytest.importorskip("nnef")
    with pytest.raises(NNEFError):
        parse_quant(text)
    with pytest.raises(nnef.Error):
        nnef.parse_string(GRAPH, text)


def test_quant_several_errors_reported_together():
    text = ('"a": linear_quantize(min = -1, max = 1.0, bits = 8);\n'
            '"b": linear_quantize(min = -1.0, max = 1, bits = 8);\n')
    with pytest.raises(NNEFError) as e:
        parse_quant(text)
    assert [(x.line, x.column) for x in e.value.errors] == [(1, 28), (2, 40)]


# ---------------------------------------------------------- custom fragments ----
def test_quant_custom_fragment_light_spec_with_defaults():
    frags = {"my_quant": [("input", "tensor<scalar>", None), ("scale", "tensor<scalar>", None),
                          ("bits", "integer", 8), ("mode", "string", "round"), ("axes", "integer[]", [0])]}
    q = parse_quant('"x": my_quant(scale = [0.5, 0.25]);', fragments=frags)
    entry = q["x"]
    assert entry["op-name"] == "my_quant" and entry["bits"] == 8 and entry["mode"] == "round"
    assert entry["axes"] == [0] and entry["scale"].dtype == np.float32
    with pytest.raises(NNEFError, match="missing required argument 'scale'"):
        parse_quant('"x": my_quant();', fragments=frags)


def test_quant_custom_fragment_from_ast():
    frag = ast.Fragment(
        name="clip_quantize",
        params=[ast.Param("x", ast.TensorType(ast.PrimitiveType("scalar"))),
                ast.Param("lo", ast.TensorType(ast.PrimitiveType("scalar")),
                          ast.UnaryOp("-", ast.Literal(1.0, "scalar"))),
                ast.Param("levels", ast.PrimitiveType("integer"), ast.Literal(16, "integer"))],
        results=[ast.Result("y", ast.TensorType(ast.PrimitiveType("scalar")))])
    not_quant = ast.Fragment(name="helper", params=[ast.Param("n", ast.PrimitiveType("integer"))], results=[])
    q = parse_quant('"x": clip_quantize(levels = 4);', fragments={"clip_quantize": frag, "helper": not_quant})
    assert q["x"]["lo"].tolist() == -1.0 and q["x"]["levels"] == 4
    with pytest.raises(NNEFError, match="not a quantization operation"):
        parse_quant('"x": helper(n = 1);', fragments={"helper": not_quant})


# --------------------------------------------------------------- attaching ----
def _graph():
    return Graph(name="G", inputs=["x"], outputs=["y"],
                 tensors={"x": Tensor("x", shape=(1, 3, 2, 2)), "w": Tensor("w", shape=(3, 3, 1, 1)),
                          "y": Tensor("y", shape=None)})


def test_quant_attach_sets_entries_and_warns_on_unknown_keys():
    g = _graph()
    q = parse_quant('"x": linear_quantize(min = [[0.0, 0.0, 0.0]], max = 1.0, bits = 8);\n'
                    '"w": linear_quantize(min = [0.0, 0.0, 0.0], max = 1.0, bits = 8);\n'
                    '"nope": linear_quantize(min = 0.0, max = 1.0, bits = 8);\n')
    with pytest.warns(UserWarning, match="'nope' matches no tensor") as rec:
        attach_quantization(g, q)
    assert "graph.quant:3:1" in str(rec[0].message)
    assert g.tensors["x"].quantization["op-name"] == "linear_quantize"
    assert g.tensors["w"].quantization["min"].shape == (3,)
    assert g.tensors["y"].quantization is None


def test_quant_attach_rejects_parameters_that_do_not_broadcast():
    g = _graph()
    # [3] varies along axis 0 (left-aligned): x has extent 1 there
    q = parse_quant('\n"x": linear_quantize(min = [0.0, 0.0, 0.0], max = 1.0, bits = 8);')
    with pytest.raises(NNEFError) as e:
        attach_quantization(g, q)
    assert (e.value.line, e.value.column) == (2, 1) and "left-aligned" in e.value.message


# ------------------------------------------------------------- dequantizing ----
def spec_zero_point(q, zp, scale):
    """§7.13 inverse of zero_point_linear_quantize, channels along axis 0, written per element."""
    out = np.empty(q.shape, np.float64)
    for idx in np.ndindex(q.shape):
        c = idx[0]
        out[idx] = (int(q[idx]) - zp[c]) * scale[c]
    return out


@needs_examples
def test_quant_dequantize_example_filter():
    folder = os.path.join(EXAMPLES, "06_quantized")
    codes, header = tf.read_tensor_file(os.path.join(folder, "conv1", "filter.dat"))
    q = parse_quant(open(os.path.join(folder, "graph.quant")).read())
    values = dequantize(codes, header, q["filter"])
    assert values.dtype == np.float32 and values.shape == (3, 2, 1, 1)
    assert values.ravel().tolist() == [1, -2, 1.5, -2, 1.25, -1.5]


def test_quant_dequantize_zero_point_per_channel_vs_spec():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 255, (4, 3, 2), dtype=np.uint8)
    _, header = tf.read_tensor(tf.tensor_bytes(codes, item_type="quint"))
    entry = parse_quant('"w": zero_point_linear_quantize(zero_point = [128, 0, 7, 255], '
                        'scale = [0.5, 0.25, 2.0, 1e-2], bits = 8, signed = false, symmetric = false);')["w"]
    got = dequantize(codes, header, entry)
    want = spec_zero_point(codes, [128, 0, 7, 255], [0.5, 0.25, 2.0, 1e-2])
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("signed,symmetric", [(False, False), (True, False), (True, True)])
def test_quant_dequantize_min_max_vs_quantize_formula(signed, symmetric):
    """Codes produced by the spec's quantizer (§7.13) map back to the fake-quantized reals."""
    bits, lo, hi = 4, -1.0, 3.0
    r = 2 ** bits - 1 - (1 if signed and symmetric else 0)
    x = np.linspace(lo, hi, 13)
    steps = np.floor((np.clip(x, lo, hi) - lo) / (hi - lo) * r + 0.5)     # 0..r
    fake = steps / r * (hi - lo) + lo                                       # the op's output
    offset = 2 ** (bits - 1) - (1 if symmetric else 0) if signed else 0
    codes = (steps - offset).astype(np.int8 if signed else np.uint8)
    _, header = tf.read_tensor(tf.tensor_bytes(codes, item_type="qint" if signed else "quint", bits=bits))
    entry = parse_quant(f'"t": min_max_linear_quantize(min = {lo}, max = {hi}, bits = {bits}, '
                        f'signed = {str(signed).lower()}, symmetric = {str(symmetric).lower()});')["t"]
    np.testing.assert_allclose(dequantize(codes, header, entry), fake, rtol=1e-6, atol=1e-6)


def test_quant_dequantize_errors():
    codes = np.zeros((2, 3), np.int8)
    _, header = tf.read_tensor(tf.tensor_bytes(codes, item_type="qint"))
    with pytest.raises(NNEFError, match="no quantization entry"):
        dequantize(codes, header, None, file="w.dat")
    unsigned_entry = parse_quant('"w": min_max_linear_quantize(min = 0.0, max = 1.0, bits = 8, signed = false, '
                                 'symmetric = false);')["w"]
    with pytest.raises(NNEFError, match="signed codes") as e:
        dequantize(codes, header, unsigned_entry, file="w.dat")
    assert e.value.file == "w.dat" and e.value.offset == 48
    log_entry = parse_quant('"w": logarithmic_quantize(max = 1.0, bits = 8);')["w"]
    with pytest.raises(NNEFError, match="cannot dequantize"):
        dequantize(codes, header, log_entry)
    bad = parse_quant('"w": zero_point_linear_quantize(zero_point = 0, scale = [1.0, 2.0, 3.0], bits = 8, '
                      'signed = true, symmetric = false);')["w"]
    with pytest.raises(NNEFError, match="does not broadcast"):
        dequantize(codes, header, bad)


def test_quant_dequantize_legacy_header_params():
    import struct
    lo, hi = struct.unpack("<2I", struct.pack("<2f", -1.0, 1.0))
    head = bytearray(tf.encode_header((3,), 8, tf.ItemType.QUINT))
    head[52:60] = struct.pack("<2I", lo, hi)
    codes, header = tf.read_tensor(bytes(head) + bytes([0, 51, 255]))
    # legacy linear decode: q / (2^b - 1) * (max - min) + min
    np.testing.assert_allclose(dequantize(codes, header, None), [-1.0, -0.6, 1.0], rtol=1e-6)
