"""Shape rules where the spec and the Khronos oracle part ways, error reporting, and the API.

Expected shapes here are written out by hand from the spec (SPEC-NOTES §7, §8, §9),
not taken from our own output. Documents are parsed by the Khronos parser
(unshaped) so the tests do not depend on our own parser.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.khronos import khronos_graph

from nnef_tvm.errors import NNEFError, SourcePos
from nnef_tvm.reader.graph import Graph, Identifier, Operation, Tensor
from nnef_tvm.reader.shapes import SHAPE_FUNCTIONS, infer_shapes

OPS_JSON = Path("/work/shared/nnef/ops.json")
if not OPS_JSON.exists():
    OPS_JSON = Path(__file__).resolve().parents[2] / "shared" / "nnef" / "ops.json"


def doc(inputs: dict, body: str, extensions: str = "", fragments: str = "") -> str:
    decls = []
    for name, spec in inputs.items():
        dtype, shape = spec if isinstance(spec[0], str) else ("scalar", spec)
        decls.append(f"{name} = external<{dtype}>(shape = {list(shape)});")
    statements = [s.strip() for s in body.split(";") if s.strip()]
    outputs = []
    for s in statements:
        outputs += [n for n in re.findall(r"[A-Za-z_]\w*", s.split("=", 1)[0]) if n not in outputs]
    ext = f"extension {extensions};\n" if extensions else ""
    return (f"version 1.0;\n{ext}{fragments}graph G( {', '.join(inputs)} ) -> ( {', '.join(outputs)} )\n"
            "{\n    " + "\n    ".join(decls + [s + ";" for s in statements]) + "\n}\n")


def shapes(inputs, body, lowered=(), **kw):
    g = khronos_graph(doc(inputs, body), lowered=lowered, infer_shapes=False)
    infer_shapes(g, **kw)
    return {name: t.shape for name, t in g.tensors.items()}


def error(inputs, body, **kw) -> str:
    with pytest.raises(NNEFError) as info:
        shapes(inputs, body, **kw)
    return info.value.message


def test_one_shape_function_per_standard_op():
    standard = {op["name"] for op in json.loads(OPS_JSON.read_text())["operations"]}
    assert set(SHAPE_FUNCTIONS) == standard
    assert len(SHAPE_FUNCTIONS) == 118


# ---------------------------------------------------------------------------
# spec answers where the Khronos shape functions are wrong or stricter

def test_sample_index_has_the_output_shape():
    # O3: spec says index has the output shape; Khronos demands the input shape.
    s = shapes({"x": [1, 2, 8, 6], "i": ("integer", [1, 2, 4, 3])},
               "y = sample(x, i, size = [1, 1, 2, 2], stride = [1, 1, 2, 2])")
    assert s["y"] == (1, 2, 4, 3)
    msg = error({"x": [1, 2, 8, 6], "i": ("integer", [1, 2, 8, 6])},
                "y = sample(x, i, size = [1, 1, 2, 2], stride = [1, 1, 2, 2])")
    assert msg == "sample: index shape [1,2,8,6] must equal the output shape [1,2,4,3]"


def test_desample_index_has_the_input_shape_and_output_is_upscaled():
    s = shapes({"x": [1, 2, 4, 3], "i": ("integer", [1, 2, 4, 3])},
               "y = desample(x, i, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], output_shape = [1, 2, 7, 6])")
    assert s["y"] == (1, 2, 7, 6)
    assert "desample" in error({"x": [1, 2, 4, 3], "i": ("integer", [1, 2, 4, 3])},
                               "y = desample(x, i, size = [1, 1, 2, 2], border = 'ignore')")


def test_lowered_strided_max_pool_with_index():
    # Khronos' infer_shapes fails on this lowered graph (O3); the spec shapes are clear.
    s = shapes({"x": [1, 3, 8, 8]},
               "y, i = max_pool_with_index(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2])",
               lowered=["max_pool_with_index"])
    assert s["y"] == (1, 3, 4, 4) and s["i"] == (1, 3, 4, 4)


def test_unsqueeze_axes_index_the_output_in_any_order():
    # Khronos inserts in the listed order, giving [1,3,4,1] for axes [2, 0].
    assert shapes({"x": [3, 4]}, "y = unsqueeze(x, axes = [2, 0])")["y"] == (1, 3, 1, 4)
    assert shapes({"x": [3, 4]}, "y = unsqueeze(x, axes = [3, 1])")["y"] == (3, 1, 4, 1)


def test_slice_legacy_end_zero_applies_per_axis_with_stride_one():
    # Khronos Python applies the legacy rule only when every stride is 1; C++ per axis.
    s = shapes({"x": [2, 3, 8, 6]},
               "y = slice(x, axes = [1, 3], begin = [1, 0], end = [0, 6], stride = [1, 2])")
    assert s["y"] == (2, 2, 8, 3)


def test_slice_extent_rounds_up():
    # O2: ceil((end - begin) / stride)
    assert shapes({"x": [10]}, "y = slice(x, axes = [0], begin = [0], end = [10], stride = [3])")["y"] == (4,)
    assert shapes({"x": [10]}, "y = slice(x, axes = [0], begin = [9], end = [-11], stride = [-4])")["y"] == (3,)


def test_bias_broadcasts_left_aligned_to_the_output():
    assert shapes({"x": [3, 8], "w": [1, 8], "b": [1, 1]}, "y = linear(x, w, b)")["y"] == (3, 1)
    assert shapes({"x": [1, 2, 5], "w": [4, 2, 3], "b": [1, 1]}, "y = conv(x, w, b)")["y"] == (1, 4, 5)
    # a rank-1 [C] bias would broadcast along the batch axis (Khronos accepts it)
    msg = error({"x": [1, 2, 5], "w": [4, 2, 3], "b": [4]}, "y = conv(x, w, b)")
    assert msg.startswith("conv: bias shape [4] cannot be broadcast to output shape [1,4,5]")
    assert msg.endswith("(left-aligned): extent 4 at axis 0 must be 1")


def test_separable_conv_groups_follow_the_compound_body():
    # depthwise conv with plane_filter [C*m,1,k..] then 1x1 conv(point_filter, groups)
    s = shapes({"x": [1, 4, 8, 8], "p": [8, 1, 3, 3], "q": [6, 4, 1, 1]},
               "y = separable_conv(x, p, q, groups = 2, padding = [(0, 0), (0, 0)])")
    assert s["y"] == (1, 6, 6, 6)
    msg = error({"x": [1, 4, 8, 8], "p": [4, 1, 3, 3], "q": [6, 3, 1, 1]}, "y = separable_conv(x, p, q)")
    assert msg.startswith("separable_conv: input has 4 channels but point_filter expects 3 x groups 1")


def test_separable_deconv_output_shape():
    s = shapes({"x": [1, 2, 4, 4], "p": [3, 1, 3, 3], "q": [2, 3, 1, 1]},
               "y = separable_deconv(x, p, q, stride = [2, 2], output_shape = [1, 3, 7, 8])")
    assert s["y"] == (1, 3, 7, 8)


def test_reverse_automatic_padding_uses_x_times_s():
    # O11: with fd < s the formula would give (x-1)*s + fd; spec tools use x*s.
    assert shapes({"x": [1, 1, 4]}, "y = debox(x, size = [1, 1, 1], stride = [1, 1, 3])")["y"] == (1, 1, 12)
    assert shapes({"x": [1, 2, 4], "w": [2, 1, 1]}, "y = deconv(x, w, stride = [3])")["y"] == (1, 1, 12)


def test_deconv_groups_zero_uses_output_shape_channels():
    s = shapes({"x": [1, 4, 5], "w": [4, 1, 3]},
               "y = deconv(x, w, groups = 0, output_shape = [1, 2, 5])")
    assert s["y"] == (1, 2, 5)
    assert shapes({"x": [1, 4, 5], "w": [4, 1, 3]}, "y = deconv(x, w, groups = 0)")["y"] == (1, 4, 5)


def test_roi_batch_index_may_be_n_by_1_and_rois_follow_the_spatial_rank():
    # O5: spec [N,1], Khronos [N]; spec rois [N, 2*M] for M spatial axes
    s = shapes({"x": [2, 3, 8, 8], "r": [5, 4], "b": ("integer", [5, 1])},
               "y = avg_roi_pool(x, r, b, output_size = [2, 2])")
    assert s["y"] == (5, 3, 2, 2)
    s = shapes({"x": [2, 3, 8, 8, 8], "r": [5, 6], "b": ("integer", [5])},
               "y = roi_resample(x, r, b, output_size = [2, 2, 2])")
    assert s["y"] == (5, 3, 2, 2, 2)
    msg = error({"x": [2, 3, 8, 8, 8], "r": [5, 4], "b": ("integer", [5])},
                "y = roi_resample(x, r, b, output_size = [2, 2, 2])")
    assert msg.startswith("roi_resample: rois [5,4] must be [N, 6]")


def test_rejections_the_khronos_shapes_miss():
    # E8: zero extents; O12: constant value count, squeeze of a non-unit axis
    assert "external: 'shape' extents must be positive, found 0 at axis 1 of [2,0]" == \
        error({"x": [2, 0]}, "y = copy(x)")
    assert error({"x": [2]}, "c = constant(shape = [2, 3], value = [1.0, 2.0])") == \
        "constant: 'value' has 2 items but shape [2,3] needs 6 (or a single item to fill it)"
    assert error({"x": [2, 3]}, "y = squeeze(x, axes = [1])") == \
        "squeeze: cannot squeeze axis 1 of input [2,3]: its extent is 3, not 1"
    # O9: 'ignore' has no meaning for pad
    assert error({"x": [2, 3]}, "y = pad(x, padding = [(1, 1), (0, 0)], border = 'ignore')").startswith(
        "pad: border 'ignore' is meaningless for pad")
    # an empty slice has no valid NNEF shape
    assert "is empty" in error({"x": [4]}, "y = slice(x, axes = [0], begin = [2], end = [2])")


def test_add_n_literals_broadcast():
    assert shapes({"a": [2, 3], "b": [2, 3]}, "y = add_n([a, 1.0, b])")["y"] == (2, 3)


# ---------------------------------------------------------------------------
# error messages: operation name and the extents that disagree

ERRORS = [
    ({"a": [2, 3], "b": [4, 3]}, "y = add(a, b)",
     r"^add: cannot broadcast \[2,3\] with \[4,3\] \(left-aligned\): extents 2 and 4 differ at axis 0$"),
    ({"a": [2, 3], "b": [3]}, "y = mul(a, b)", r"^mul: cannot broadcast \[2,3\] with \[3\].*axis 0"),
    ({"x": [1, 4, 8, 8], "w": [5, 3, 3, 3]}, "y = conv(x, w)",
     r"^conv: input has 4 channels but filter expects 3 x groups 1"),
    ({"x": [1, 4, 8, 8], "w": [5, 2, 3, 3]}, "y = conv(x, w, groups = 2)",
     r"^conv: groups 2 does not divide the 5 output channels of filter \[5,2,3,3\]$"),
    ({"x": [1, 4, 8, 8], "w": [8, 2, 3, 3]}, "y = conv(x, w, groups = 0)",
     r"^conv: depthwise \(groups = 0\) needs filter \[C_out, 1, ...\] but filter \[8,2,3,3\] has 2 input channels per group"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3]}, "y = conv(x, w)",
     r"^conv: filter \[5,4,3\] has rank 3 but input \[1,4,8,8\] has rank 4$"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, padding = [(1, 1)])",
     r"^conv: 'padding' must have 2 pairs \(one per spatial axis\), found 1$"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, stride = [1, 1, 2, 2])",
     r"^conv: 'stride' must have 2 entries \(one per spatial axis\), found 4"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, stride = [0, 1])",
     r"^conv: 'stride' entries must be positive, found 0 at index 0"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, dilation = [1, -2])",
     r"^conv: 'dilation' entries must be positive, found -2 at index 1"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, groups = -1)",
     r"^conv: 'groups' must be non-negative, found -1$"),
    ({"x": [1, 4, 4, 8], "w": [5, 4, 5, 3]}, "y = conv(x, w, padding = [(0, 0), (0, 0)])",
     r"^conv: window of extent 5 \(size 5, dilation 1\) does not fit axis 2: padded extent is 0 \+ 4 \+ 0 = 4$"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3], "b": [1, 4]}, "y = conv(x, w, b)",
     r"^conv: bias shape \[1,4\] cannot be broadcast to output shape \[1,5,8,8\].*axis 1"),
    ({"x": [1, 4, 8, 8], "w": [5, 4, 3, 3]}, "y = conv(x, w, border = 'ignore')",
     r"^conv: 'border' = 'ignore' is not supported here"),
    ({"x": [1, 4, 8], "w": [3, 2, 3]}, "y = deconv(x, w)",
     r"^deconv: input has 4 channels but filter \[3,2,3\] expects 3"),
    ({"x": [1, 4, 8], "w": [4, 2, 3]}, "y = deconv(x, w, stride = [2], output_shape = [1, 2, 20])",
     r"^deconv: 'output_shape' \[1,2,20\] is inconsistent with input \[1,4,8\]: down-scaling it gives \[1,4,10\]$"),
    ({"x": [1, 4, 8], "w": [4, 2, 3]}, "y = deconv(x, w, output_shape = [8])",
     r"^deconv: 'output_shape' must have 3 entries \(one per input axis, batch and channel included\)"),
    ({"x": [1, 4, 8], "w": [4, 2, 3]}, "y = deconv(x, w, output_shape = [1, 3, 8])",
     r"^deconv: 'output_shape' \[1,3,8\] has 3 channels but filter \[4,2,3\] gives 2 x groups 1 = 2$"),
    ({"x": [1, 4, 8], "w": [4, 2, 3]}, "y = deconv(x, w, output_shape = [2, 2, 8])",
     r"^deconv: 'output_shape' \[2,2,8\] has batch 2 but input \[1,4,8\] has batch 1$"),
    ({"x": [1, 4, 8], "w": [4, 2, 3]}, "y = deconv(x, w, padding = [(5, 5)])",
     r"^deconv: up-scaled extent of axis 2 is \(8 - 1\) \* 1 \+ 3 - \(5 \+ 5\) = 0, not positive$"),
    ({"x": [1, 4, 8, 8]}, "y = max_pool(x, size = [2, 2])",
     r"^max_pool: 'size' must have 4 entries \(one per input axis, batch and channel included\), found 2"),
    ({"x": [1, 4, 8, 8]}, "y = avg_pool(x, size = [1, 1, 2, 2], stride = [2, 2])",
     r"^avg_pool: 'stride' must have 4 entries"),
    ({"x": [1, 4, 8, 8]}, "y = box(x, size = [1, 1, 0, 2])",
     r"^box: 'size' entries must be positive, found 0 at index 2"),
    ({"x": [1, 4, 8, 8]}, "y = debox(x, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], output_shape = [1, 4, 18, 16])",
     r"^debox: 'output_shape' \[1,4,18,16\] is inconsistent with input \[1,4,8,8\]: down-scaling it gives \[1,4,9,8\]$"),
    ({"x": [1, 4, 8, 8]}, "y = rms_pool(x, size = [1, 1, 2, 2], border = 'wrap')",
     r"^rms_pool: 'border' = 'wrap' is not supported here; expected one of 'constant', "),
    ({"x": [2, 3, 8, 6]}, "y = reshape(x, shape = [5, -1])",
     r"^reshape: cannot infer the -1 in 'shape' \[5,-1\]: volume 5 of the known extents does not divide volume 288 of input \[2,3,8,6\]$"),
    ({"x": [2, 3, 8, 6]}, "y = reshape(x, shape = [4, 3])",
     r"^reshape: 'shape' \[4,3\] has volume 12 but input \[2,3,8,6\] has volume 288$"),
    ({"x": [2, 3, 8, 6]}, "y = reshape(x, shape = [5], axis_start = 1, axis_count = 2)",
     r"^reshape: 'shape' \[5\] has volume 5 but input \[2,3,8,6\] axes \[1,3\) \[3,8\] has volume 24$"),
    ({"x": [2, 3]}, "y = reshape(x, shape = [-1, -1])", r"^reshape: 'shape' \[-1,-1\] has more than one -1$"),
    ({"x": [2, 3]}, "y = reshape(x, shape = [6], axis_start = 3)", r"^reshape: 'axis_start' = 3 is out of range \[0,2\]"),
    ({"x": [2, 3]}, "y = reshape(x, shape = [2], axis_count = 3)", r"^reshape: 'axis_start' \+ 'axis_count' = 0 \+ 3 exceeds the rank 2"),
    ({"x": [2, 3]}, "y = reshape(x, shape = [0, 0, 0])", r"^reshape: 'shape' entry 0 at index 2 copies input axis 2, but input \[2,3\] has rank 2$"),
    ({"x": [2, 3]}, "y = reshape(x, shape = [-2, -3])", r"^reshape: 'shape' entries must be positive, 0 or -1"),
    ({"x": [2, 3, 4]}, "y = transpose(x, axes = [0, 2])", r"^transpose: 'axes' \[0,2\] must be a permutation of 0..1$"),
    ({"x": [2, 3]}, "y = transpose(x, axes = [2, 0, 1])", r"^transpose: 'axes' \[2,0,1\] has 3 entries but input \[2,3\] has rank 2$"),
    ({"x": [1, 3]}, "y = squeeze(x, axes = [2])", r"^squeeze: 'axes' entry 2 is out of range \[0,2\) for input of rank 2$"),
    ({"x": [1, 3]}, "y = squeeze(x, axes = [0, 0])", r"^squeeze: 'axes' lists axis 0 twice"),
    ({"x": [1, 3]}, "y = unsqueeze(x, axes = [3])", r"^unsqueeze: 'axes' entry 3 is out of range \[0,3\) for output of rank 3$"),
    ({"a": [2, 3], "b": [2, 3, 1]}, "y = concat([a, b], axis = 1)",
     r"^concat: values\[1\] \[2,3,1\] has rank 3 but values\[0\] \[2,3\] has rank 2$"),
    ({"a": [2, 3], "b": [4, 5]}, "y = concat([a, b], axis = 1)",
     r"^concat: values\[1\] \[4,5\] and values\[0\] \[2,3\] differ at axis 0 \(4 vs 2\); only axis 1 may differ$"),
    ({"a": [2, 3]}, "y = concat([a, a], axis = 2)", r"^concat: 'axis' = 2 is out of range \[0,2\) for rank 2$"),
    ({"a": [2, 3]}, "y = concat([a, a], axis = -1)", r"^concat: 'axis' = -1 is out of range"),
    ({"x": [2, 5]}, "[a, b] = split(x, axis = 1, ratios = [1, 1])",
     r"^split: sum of 'ratios' \[1,1\] = 2 does not divide extent 5 of axis 1 of \[2,5\]$"),
    ({"x": [2, 6]}, "[a, b] = split(x, axis = 1, ratios = [1, 1, 1])",
     r"^split: result 'values' is an array of 3 tensors but 2 identifiers are assigned$"),
    ({"x": [2, 6]}, "[a, b] = split(x, axis = 1, ratios = [0, 2])", r"^split: 'ratios' entries must be positive"),
    ({"a": [2, 3], "b": [3, 2]}, "y = stack([a, b], axis = 0)",
     r"^stack: all values must have the same shape: values\[0\] is \[2,3\] but values\[1\] is \[3,2\]$"),
    ({"a": [2, 3]}, "y = stack([a, a], axis = 3)", r"^stack: 'axis' = 3 is out of range \[0,3\) for rank 2$"),
    ({"x": [2, 3]}, "[a, b] = unstack(x, axis = 1)", r"^unstack: result 'values' is an array of 3 tensors but 2 identifiers are assigned$"),
    ({"x": [2, 3]}, "y = slice(x, axes = [0, 1], begin = [0], end = [1, 1])",
     r"^slice: 'begin' must have 2 entries \(one per entry of 'axes'\), found 1"),
    ({"x": [2, 3]}, "y = slice(x, axes = [1], begin = [0], end = [2], stride = [0])", r"^slice: 'stride' must be non-zero \(axis 1\)$"),
    ({"x": [2, 3]}, "y = slice(x, axes = [1], begin = [2], end = [1])",
     r"^slice: range 2:1:1 of axis 1 \(extent 3\) is invalid: after normalization begin 2 and end 1 need 0 <= begin <= end$"),
    ({"x": [2, 3]}, "y = slice(x, axes = [1], begin = [0], end = [2], stride = [-1])",
     r"^slice: range 0:2:-1 of axis 1 \(extent 3\) is invalid.*negative stride$"),
    ({"x": [2, 3]}, "y = slice(x, axes = [5], begin = [0], end = [1])", r"^slice: 'axes' entry 5 is out of range"),
    ({"x": [2, 3]}, "y = pad(x, padding = [(1, 1)])", r"^pad: 'padding' must have 2 pairs \(one \(before, after\) pair per input axis\), found 1$"),
    ({"x": [2, 3]}, "y = pad(x, padding = [(0, 0), (-2, -1)])", r"^pad: padding \(-2,-1\) crops away all of axis 1 \(extent 3\)$"),
    ({"x": [2, 3]}, "y = tile(x, repeats = [2])", r"^tile: 'repeats' must have 2 entries \(one per input axis\), found 1"),
    ({"x": [2, 3]}, "y = tile(x, repeats = [2, 0])", r"^tile: 'repeats' entries must be positive, found 0 at index 1"),
    ({"x": [2, 3], "i": ("integer", [4])}, "y = gather(x, i, axis = 2)", r"^gather: 'axis' = 2 is out of range \[0,2\)"),
    ({"a": [3, 4], "b": [5, 6]}, "y = matmul(a, b)",
     r"^matmul: inner extents differ: A\[-1\] = 4 but B\[-2\] = 5 \(A \[3,4\], B \[5,6\]\)$"),
    ({"a": [4, 3], "b": [5, 6]}, "y = matmul(a, b, transposeA = true, transposeB = true)",
     r"^matmul: inner extents differ: A\[-2\] \(transposed\) = 4 but B\[-1\] \(transposed\) = 6"),
    ({"a": [2, 3, 4], "b": [4, 5]}, "y = matmul(a, b)", r"^matmul: A \[2,3,4\] and B \[4,5\] must have the same rank"),
    ({"a": [2, 3, 4], "b": [3, 4, 5]}, "y = matmul(a, b)",
     r"^matmul: batch axes of A and B: cannot broadcast \[2\] with \[3\] \(left-aligned\): extents 2 and 3 differ at axis 0$"),
    ({"a": [4]}, "y = matmul(a, a)", r"^matmul: A must have rank at least 2, found \[4\] \(rank 1\)$"),
    ({"x": [2, 8], "w": [4, 6]}, "y = linear(x, w)", r"^linear: input has 8 channels but filter \[4,6\] expects 6"),
    ({"x": [2, 8, 1], "w": [4, 8]}, "y = linear(x, w)", r"^linear: input must have rank 2, found \[2,8,1\]"),
    ({"x": [2, 3]}, "y = sum_reduce(x, axes = [2])", r"^sum_reduce: 'axes' entry 2 is out of range \[0,2\) for input of rank 2$"),
    ({"x": [2, 3]}, "y = argmax_reduce(x, axes = [-1])", r"^argmax_reduce: 'axes' entry -1 is out of range"),
    ({"x": [2, 3]}, "m, v = moments(x, axes = [1, 1])", r"^moments: 'axes' lists axis 1 twice"),
    ({"x": [2, 3]}, "y = softmax(x, axes = [2])", r"^softmax: 'axes' entry 2 is out of range"),
    ({"x": [2, 3]}, "y = l2_normalization(x, axes = [3])", r"^l2_normalization: 'axes' entry 3 is out of range"),
    ({"x": [2, 3, 4, 4]}, "y = local_response_normalization(x, size = [3])",
     r"^local_response_normalization: 'size' must have 4 entries"),
    ({"x": [1, 3, 9, 8]}, "y = area_downsample(x, factor = [2, 2])",
     r"^area_downsample: factor 2 does not divide extent 9 of axis 2 of input \[1,3,9,8\]$"),
    ({"x": [1, 3, 8, 8]}, "y = nearest_upsample(x, factor = [2])",
     r"^nearest_upsample: 'factor' must have 2 entries \(one per spatial axis\), found 1"),
    ({"x": [1, 3, 8, 8]}, "y = multilinear_upsample(x, factor = [2, 2], method = 'cubic')",
     r"^multilinear_upsample: 'method' = 'cubic' is not supported here"),
    ({"x": [2, 3, 8, 8], "r": [5, 4], "b": ("integer", [4])}, "y = max_roi_pool(x, r, b, output_size = [2, 2])",
     r"^max_roi_pool: batch_index \[4\] must be \[5\] or \[5,1\] to match rois \[5,4\]$"),
    ({"x": [2, 3, 8, 8], "r": [5, 4], "b": ("integer", [5])}, "y = max_roi_align(x, r, b, output_size = [2, 2], sampling_rate = [2])",
     r"^max_roi_align: 'sampling_rate' must have 2 entries"),
    ({"x": [2, 3, 8, 8], "r": [5, 4], "b": ("integer", [5])}, "y = avg_roi_pool(x, r, b, output_size = [2, 0])",
     r"^avg_roi_pool: 'output_size' entries must be positive, found 0 at index 1"),
    ({"x": [2, 3, 4], "a": [1, 4]}, "y = prelu(x, a)",
     r"^prelu: alpha shape \[1,4\] cannot be broadcast to x shape \[2,3,4\] \(left-aligned\): extent 4 at axis 1 must be 3 or 1$"),
    ({"x": [2, 3, 4], "m": [1, 3], "v": [3]}, "y = batch_normalization(x, m, v, 0.0, 1.0, epsilon = 0.1)",
     r"^batch_normalization: variance shape \[3\] cannot be broadcast to input shape \[2,3,4\].*extent 3 at axis 0 must be 2 or 1$"),
    ({"x": [2, 3, 4], "m": [2, 3, 4, 2]}, "y = linear_quantize(x, 0.0, m, bits = 8)",
     r"^linear_quantize: max shape \[2,3,4,2\] cannot be broadcast to x shape \[2,3,4\].*axis 3 must be 1$"),
    ({"x": [2, 3]}, "y = logarithmic_quantize(x, 1.0, bits = 0)", r"^logarithmic_quantize: 'bits' must be positive, found 0$"),
    ({"x": [2, 3]}, "v = variable(shape = [3, 2], label = 'v'); u = update(v, x)",
     r"^update: value shape \[2,3\] differs from variable shape \[3,2\]$"),
    ({"x": [2, 3]}, "[a, b] = copy_n(x, times = 3)", r"^copy_n: result 'y' is an array of 3 tensors but 2 identifiers are assigned$"),
    ({"a": [2, 3], "b": [3, 2]}, "y = add_n([a, b])",
     r"^add_n: all operands must have the same shape: x\[0\] is \[2,3\] but x\[1\] is \[3,2\]$"),
    ({"c": ("logical", [2, 3]), "t": [3]}, "y = select(c, t, 0.0)",
     r"^select: condition and values: cannot broadcast \[2,3\] with \[3\]"),
    ({"x": [2, 3], "a": [2, 2]}, "y = clamp(x, a, 1.0)", r"^clamp: x and a: cannot broadcast \[2,3\] with \[2,2\].*axis 1$"),
    ({"x": [2]}, "c = constant(shape = [2, -1], value = [1.0])", r"^constant: 'shape' extents must be positive, found -1 at axis 1"),
    ({"x": [2]}, "v = variable(shape = [0], label = 'v')", r"^variable: 'shape' extents must be positive"),
]


@pytest.mark.parametrize("inputs, body, pattern", ERRORS, ids=[f"{i}-{e[1].split('(')[0].split('=')[-1].strip()}"
                                                               for i, e in enumerate(ERRORS)])
def test_error_names_op_and_extents(inputs, body, pattern):
    assert re.search(pattern, error(inputs, body)), error(inputs, body)


def test_error_covers_many_ops():
    ops = {re.match(r"\^(\w+):", p).group(1) for _, _, p in ERRORS}
    assert len(ops) >= 45


# ---------------------------------------------------------------------------
# positions, overrides, custom operations

def _graph(*ops, tensors):
    return Graph(name="G", inputs=["x"], outputs=[str(ops[-1].outputs[next(iter(ops[-1].outputs))])],
                 operations=list(ops), tensors={n: Tensor(n) for n in tensors})


def _external(name, shape, pos=None):
    return Operation("external", outputs={"output": Identifier(name)}, attribs={"shape": shape}, pos=pos)


def test_error_is_located_at_the_operation():
    pos = SourcePos("graph.nnef", 7, 9)
    op = Operation("add", inputs={"x": Identifier("x"), "y": Identifier("z")},
                   outputs={"z": Identifier("y")}, pos=pos)
    g = _graph(_external("x", [2, 3]), _external("z", [4, 3]), op, tensors=["x", "y", "z"])
    with pytest.raises(NNEFError) as info:
        infer_shapes(g)
    assert info.value.pos == pos
    assert str(info.value) == ("graph.nnef:7:9: error: add: cannot broadcast [2,3] with [4,3] "
                               "(left-aligned): extents 2 and 4 differ at axis 0")


def test_error_in_lowered_op_points_at_the_users_invocation():
    user = SourcePos("graph.nnef", 3, 5)
    op = Operation("box", inputs={"input": Identifier("x")}, outputs={"output": Identifier("y")},
                   attribs={"size": [1, 1]}, pos=SourcePos("<stdlib>", 100, 1), origin=(user,))
    with pytest.raises(NNEFError) as info:
        infer_shapes(_graph(_external("x", [2, 3, 4]), op, tensors=["x", "y"]))
    assert info.value.pos == user
    assert info.value.message.startswith("box: 'size' must have 3 entries")


def test_input_shapes_override_and_repropagate():
    text = doc({"x": [1, 3, 8, 8], "w": [4, 3, 3, 3]},
               "y = conv(x, w, stride = [2, 2]); z = reshape(y, shape = [0, -1])")
    g = khronos_graph(text, infer_shapes=False)
    infer_shapes(g)
    assert g.tensors["z"].shape == (1, 64)
    infer_shapes(g, input_shapes={"x": (2, 3, 32, 20)})
    assert g.tensors["x"].shape == (2, 3, 32, 20)
    assert g.tensors["y"].shape == (2, 4, 16, 10)
    assert g.tensors["z"].shape == (2, 640)
    with pytest.raises(NNEFError, match=r"input shape \[2,3,32\] for 'x' has rank 3 but the external declares rank 4"):
        infer_shapes(g, input_shapes={"x": [2, 3, 32]})
    with pytest.raises(NNEFError, match=r"input_shapes names 'y', which is not an external input"):
        infer_shapes(g, input_shapes={"y": [1, 4, 4, 4]})
    with pytest.raises(NNEFError, match=r"must hold positive integers"):
        infer_shapes(g, input_shapes={"x": [1, 3, 0, 8]})
    with pytest.raises(NNEFError, match=r"^.*conv: input has 5 channels but filter expects 3 x groups 1"):
        infer_shapes(g, input_shapes={"x": [1, 5, 8, 8]})
    # a failed re-propagation leaves the previous shapes in place
    assert g.tensors["x"].shape == (2, 3, 32, 20) and g.tensors["z"].shape == (2, 640)


FRAGMENT = "fragment shuffle( input: tensor<scalar>, groups: integer ) -> ( output: tensor<scalar>, extra: tensor<scalar>[] );\n"


def _custom_graph():
    text = doc({"x": [1, 6, 4, 4]}, "y, [e1, e2] = shuffle(x, groups = 2); z = relu(y)",
               extensions="KHR_enable_fragment_definitions", fragments=FRAGMENT)
    return khronos_graph(text, infer_shapes=False)


def test_custom_op_needs_a_shape_function():
    with pytest.raises(NNEFError, match=r"shuffle: no shape function for custom operation 'shuffle'"):
        infer_shapes(_custom_graph())


def test_custom_shape_function_is_used():
    def shuffle(op, shape_of):
        x = shape_of(op.inputs["input"])
        assert op.attribs["groups"] == 2
        return [x, [x[:2], x[2:]]]
    g = _custom_graph()
    infer_shapes(g, custom_shapes={"shuffle": shuffle})
    assert g.tensors["z"].shape == (1, 6, 4, 4)
    assert g.tensors["e1"].shape == (1, 6) and g.tensors["e2"].shape == (4, 4)


@pytest.mark.parametrize("bad, pattern", [
    (lambda op, s: [(1, 0, 2), [(1,), (1,)]], r"returned \(1, 0, 2\), expected a sequence of positive integers"),
    (lambda op, s: [(1, 6, 4, 4)], r"returned 1 shapes for 2 results"),
    (lambda op, s: [(1,), (2,)], r"must return a list of shapes for the array result"),
    (lambda op, s: None, r"must return a list with one shape per result"),
    (lambda op, s: [(1,), [(1,)]], r"result 'extra' is an array of 1 tensors but 2 identifiers are assigned"),
])
def test_custom_shape_function_results_are_checked(bad, pattern):
    with pytest.raises(NNEFError, match=pattern):
        infer_shapes(_custom_graph(), custom_shapes={"shuffle": bad})


def test_custom_shape_function_failures_become_located_errors():
    def failing(op, shape_of):
        raise AssertionError("groups must divide channels")
    with pytest.raises(NNEFError, match=r"shuffle: custom shape function failed: groups must divide channels"):
        infer_shapes(_custom_graph(), custom_shapes={"shuffle": failing})


def test_quantization_parameters_must_broadcast_to_their_tensor():
    # graph.quant per-channel arrays: [C] varies along axis 0, [[...]] along axis 1 (left-aligned)
    g = khronos_graph(doc({"x": [1, 3, 4, 4], "w": [2, 3, 1, 1]}, "y = conv(x, w)"), infer_shapes=False)
    g.tensors["w"].quantization = {"op-name": "zero_point_linear_quantize", "scale": [0.5, 0.25],
                                   "zero_point": 0, "bits": 8}
    g.tensors["y"].quantization = {"op-name": "min_max_linear_quantize", "min": [[-1.0, -2.0]], "max": 1.0}
    infer_shapes(g)
    assert g.tensors["y"].shape == (1, 2, 4, 4)
    g.tensors["x"].quantization = {"op-name": "zero_point_linear_quantize", "scale": [0.5, 0.25, 0.1]}
    with pytest.raises(NNEFError) as info:
        infer_shapes(g)
    assert info.value.message == (
        "zero_point_linear_quantize of 'x': scale shape [3] cannot be broadcast to tensor 'x' shape "
        "[1,3,4,4] (left-aligned): extent 3 at axis 0 must be 1")
    assert info.value.file == "graph.quant"


def test_numpy_integers_are_accepted_from_consumers():
    import numpy as np
    g = _custom_graph()
    infer_shapes(g, input_shapes={"x": np.array([2, 6, 4, 4])},
                 custom_shapes={"shuffle": lambda op, s: [np.array(s(op.inputs["input"])),
                                                          [np.array([1, 2]), (np.int64(3),)]]})
    assert g.tensors["z"].shape == (2, 6, 4, 4) and g.tensors["e2"].shape == (3,)
    assert all(type(e) is int for t in g.tensors.values() for e in t.shape)
