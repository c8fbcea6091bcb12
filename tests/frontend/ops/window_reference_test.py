"""Self-tests of the numpy window references against onnxruntime and numpy.pad.

The references in ``window_reference.py`` are the oracle of the frontend tests; here they
are themselves checked against a second, independent implementation where one exists
(ONNX Conv/ConvTranspose/MaxPool/AveragePool/Resize run by onnxruntime, numpy.pad).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

RNG = np.random.default_rng(1234)


def _run_onnx(op_type, inputs, attrs, out_rank=None):
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: a.astype(np.float32) for n, a in zip(names, inputs)})[0]


def _onnx_pads(padding):
    return [p for p, _ in padding] + [q for _, q in padding]


@pytest.mark.parametrize("border,np_mode", [("replicate", "edge"), ("reflect", "reflect"),
                                            ("reflect-even", "symmetric"), ("constant", "constant")])
def test_pad_matches_numpy(border, np_mode):
    x = RNG.standard_normal((2, 3, 5))
    pads = [(0, 1), (2, 2), (3, 4)]
    got, _ = ref.pad_nd(x, pads, border)
    np.testing.assert_allclose(got, np.pad(x, pads, mode=np_mode))


def test_pad_negative_crops():
    x = RNG.standard_normal((4, 6))
    got, valid = ref.pad_nd(x, [(-1, 2), (1, -2)], "constant")
    want = np.pad(x[1:, :4], [(0, 2), (1, 0)])
    np.testing.assert_allclose(got, want)
    assert valid.sum() == 3 * 4


@pytest.mark.parametrize("case", [
    dict(x=(1, 3, 7, 6), w=(4, 3, 3, 3), padding=[(1, 1), (0, 2)], stride=[2, 1], dilation=[1, 2], groups=1),
    dict(x=(2, 4, 5, 5), w=(6, 2, 2, 3), padding=[(1, 0), (1, 1)], stride=[1, 2], dilation=[1, 1], groups=2),
    dict(x=(1, 3, 9), w=(6, 1, 3), padding=[(2, 2)], stride=[3], dilation=[2], groups=3),
    dict(x=(1, 2, 4, 5, 3), w=(3, 2, 2, 2, 2), padding=[(0, 1), (1, 1), (1, 0)], stride=[1, 2, 1],
         dilation=[1, 1, 1], groups=1),
])
def test_conv_matches_onnx(case):
    x = RNG.standard_normal(case["x"])
    w = RNG.standard_normal(case["w"])
    b = RNG.standard_normal((case["w"][0],))
    got = ref.conv(x, w, b[None], padding=case["padding"], stride=case["stride"],
                   dilation=case["dilation"], groups=case["groups"])
    want = _run_onnx("Conv", [x, w, b], dict(pads=_onnx_pads(case["padding"]), strides=case["stride"],
                                              dilations=case["dilation"], group=case["groups"]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_auto_padding_is_same_upper():
    x = RNG.standard_normal((1, 2, 7, 8))
    w = RNG.standard_normal((3, 2, 4, 3))
    got = ref.conv(x, w, stride=[2, 3])
    want = _run_onnx("Conv", [x, w], dict(auto_pad="SAME_UPPER", strides=[2, 3]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [
    dict(x=(1, 4, 3, 4), w=(4, 2, 3, 3), padding=[(1, 1), (0, 1)], stride=[2, 2], dilation=[1, 1], groups=2,
         output_padding=[1, 0]),
    dict(x=(2, 3, 5), w=(3, 2, 4), padding=[(1, 2)], stride=[3], dilation=[2], groups=1, output_padding=[2]),
    dict(x=(1, 2, 2, 3, 2), w=(2, 1, 2, 3, 2), padding=[(0, 0), (1, 1), (0, 1)], stride=[2, 1, 2],
         dilation=[1, 1, 1], groups=1, output_padding=[0, 0, 1]),
])
def test_deconv_matches_onnx(case):
    x = RNG.standard_normal(case["x"])
    w = RNG.standard_normal(case["w"])
    want = _run_onnx("ConvTranspose", [x, w], dict(pads=_onnx_pads(case["padding"]), strides=case["stride"],
                                                    dilations=case["dilation"], group=case["groups"],
                                                    output_padding=case["output_padding"]))
    got = ref.deconv(x, w, padding=case["padding"], stride=case["stride"], dilation=case["dilation"],
                     output_shape=list(want.shape), groups=case["groups"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["max", "avg_include", "avg_exclude"])
@pytest.mark.parametrize("case", [
    dict(x=(1, 2, 7, 6), k=[3, 2], padding=[(1, 1), (0, 1)], stride=[2, 2], dilation=[1, 1]),
    dict(x=(2, 3, 9), k=[3], padding=[(2, 1)], stride=[2], dilation=[2]),
    dict(x=(1, 1, 4, 5, 6), k=[2, 3, 2], padding=[(1, 0), (1, 1), (0, 1)], stride=[1, 2, 2], dilation=[1, 1, 1]),
])
def test_pools_match_onnx(kind, case):
    x = RNG.standard_normal(case["x"])
    size = [1, 1] + case["k"]
    padding = [(0, 0), (0, 0)] + case["padding"]
    stride = [1, 1] + case["stride"]
    dilation = [1, 1] + case["dilation"]
    attrs = dict(kernel_shape=case["k"], pads=_onnx_pads(case["padding"]), strides=case["stride"])
    if kind == "max":
        got = ref.max_pool(x, size, "ignore", padding, stride, dilation)
        want = _run_onnx("MaxPool", [x], dict(attrs, dilations=case["dilation"]))
    else:
        if case["dilation"] != [1] * len(case["k"]):
            pytest.skip("onnxruntime AveragePool has no dilation")
        include = kind == "avg_include"
        got = ref.avg_pool(x, size, "constant" if include else "ignore", padding, stride, dilation)
        want = _run_onnx("AveragePool", [x], dict(attrs, count_include_pad=int(include)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,mode", [("symmetric", "half_pixel"), ("asymmetric", "asymmetric"),
                                         ("aligned", "align_corners")])
def test_multilinear_matches_onnx_resize(method, mode):
    x = RNG.standard_normal((1, 2, 3, 4))
    factor = [2, 3]
    got = ref.multilinear_upsample(x, factor, method, "replicate")
    scales = np.array([1, 1] + factor, dtype=np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["out"], mode="linear",
                            coordinate_transformation_mode=mode)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              initializer=[helper.make_tensor("scales", TensorProto.FLOAT, [4], scales)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_multilinear_constant_border_is_fixed_weight_deconv():
    """Spec §4.3.4: symmetric/asymmetric factor-2 upsampling = depthwise deconv with fixed weights."""
    x = RNG.standard_normal((1, 2, 5))
    w = np.tile(np.array([0.25, 0.75, 0.75, 0.25])[None, None], (2, 1, 1))
    want = ref.deconv(x, w, stride=[2], padding=[(1, 1)], groups=2)
    np.testing.assert_allclose(ref.multilinear_upsample(x, [2], "symmetric", "constant"), want, atol=1e-12)
    w = np.tile(np.array([0.5, 1.0, 0.5])[None, None], (2, 1, 1))
    want = ref.deconv(x, w, stride=[2], padding=[(1, 0)], groups=2)
    np.testing.assert_allclose(ref.multilinear_upsample(x, [2], "asymmetric", "constant"), want, atol=1e-12)


def test_argmax_sample_roundtrip_and_first_max():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [2.0, 3.0, -1.0, 5.0]]]])
    size = [1, 1, 2, 2]
    idx = ref.argmax_pool(x, size, stride=size, padding=[(0, 0)] * 4)
    np.testing.assert_array_equal(idx.reshape(-1), [1, 3])   # ties pick the first (row-major) cell
    got = ref.sample(x, idx, size, stride=size, padding=[(0, 0)] * 4)
    np.testing.assert_allclose(got, ref.max_pool(x, size, stride=size, padding=[(0, 0)] * 4))


def test_max_pool_constant_border_includes_zero():
    x = -np.ones((1, 1, 3))
    got = ref.max_pool(x, [1, 1, 3], "constant", padding=[(0, 0), (0, 0), (1, 1)])
    np.testing.assert_allclose(got.reshape(-1), [0.0, -1.0, 0.0])


def test_debox_is_transpose_of_box():
    """<box(x), y> == <x, debox(y)> for the same window (constant border, no normalize)."""
    x = RNG.standard_normal((1, 2, 7, 6))
    kw = dict(size=[1, 2, 3, 2], padding=[(0, 0), (1, 0), (1, 1), (0, 1)], stride=[1, 1, 2, 2])
    bx = ref.box(x, **kw)
    y = RNG.standard_normal(bx.shape)
    dy = ref.debox(y, output_shape=list(x.shape), **kw)
    assert abs(np.sum(bx * y) - np.sum(x * dy)) < 1e-9


def test_roi_resample_full_image_equals_upsample():
    x = RNG.standard_normal((2, 3, 4, 5))
    rois = np.array([[0.0, 0.0, 4.0, 5.0]])
    for method in ("symmetric", "asymmetric", "aligned"):
        got = ref.roi_resample(x, rois, [1], [8, 10], method)
        np.testing.assert_allclose(got[0], ref.multilinear_upsample(x, [2, 2], method)[1], atol=1e-12)


KHRONOS_GRAPH = """version 1.0;
graph G( x, w, y, v ) -> ( c, c2, d, d2, bx, bc, mp, mpi, ap, api, up )
{
    x = external(shape = [1, 2, 5, 6]);
    w = external(shape = [4, 1, 3, 3]);
    y = external(shape = [1, 2, 3, 3]);
    v = external(shape = [2, 3, 3, 3]);
    c = conv(x, w, padding = [(1, 0), (2, 1)], stride = [2, 1], dilation = [1, 2], groups = 2);
    c2 = conv(x, w, groups = 0, stride = [2, 2]);
    d = deconv(y, v, stride = [2, 2]);
    d2 = deconv(y, v, padding = [(1, 0), (0, 2)], stride = [2, 1], output_shape = [1, 3, 6, 3]);
    bx = box(x, size = [1, 1, 3, 2], border = 'ignore', normalize = true, stride = [1, 1, 2, 2]);
    bc = box(x, size = [1, 2, 2, 3], padding = [(0, 0), (1, 0), (1, 1), (0, 2)]);
    mp = max_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2]);
    mpi = max_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');
    ap = avg_pool(x, size = [1, 2, 3, 3]);
    api = avg_pool(x, size = [1, 1, 3, 3], border = 'ignore', dilation = [1, 1, 2, 1]);
    up = multilinear_upsample(y, factor = [2, 2]);
}
"""

_KHRONOS_RUN = """
import sys, numpy as np, nnef
d = sys.argv[1]
data = np.load(d + '/in.npz')
with nnef.Session(d, stdlib='', lowered=[]) as s:
    out = s(*[data[k] for k in ('x', 'w', 'y', 'v')])
np.savez(d + '/out.npz', *(out if isinstance(out, tuple) else out.values()))
"""


def test_reference_matches_khronos_runtime(tmp_path):
    """The Khronos C++ reference runtime (nnef.Session) agrees with the numpy references.

    Covers the trap semantics: zeros in 'constant' max_pool, 'ignore' averages, channel
    windows, automatic padding, deconv output_shape, groups = 0. Run in a subprocess: that
    runtime corrupts its heap on some ops (debox, argmax_pool), which must not take pytest down.
    """
    import subprocess
    pytest.importorskip("nnef")
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (1, 2, 5, 6)).astype("float32")
    w = rng.uniform(-1, 1, (4, 1, 3, 3)).astype("float32")
    y = rng.uniform(-1, 1, (1, 2, 3, 3)).astype("float32")
    v = rng.uniform(-1, 1, (2, 3, 3, 3)).astype("float32")
    (tmp_path / "graph.nnef").write_text(KHRONOS_GRAPH)
    np.savez(tmp_path / "in.npz", x=x, w=w, y=y, v=v)
    proc = subprocess.run([sys.executable, "-c", _KHRONOS_RUN, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"Khronos runtime unavailable: {proc.stderr[-300:]}")
    got = np.load(tmp_path / "out.npz")
    got = [got[f"arr_{k}"] for k in range(len(got.files))]
    want = [ref.conv(x, w, padding=[(1, 0), (2, 1)], stride=[2, 1], dilation=[1, 2], groups=2),
            ref.conv(x, w, groups=0, stride=[2, 2]),
            ref.deconv(y, v, stride=[2, 2]),
            ref.deconv(y, v, padding=[(1, 0), (0, 2)], stride=[2, 1], output_shape=[1, 3, 6, 3]),
            ref.box(x, [1, 1, 3, 2], "ignore", stride=[1, 1, 2, 2], normalize=True),
            ref.box(x, [1, 2, 2, 3], padding=[(0, 0), (1, 0), (1, 1), (0, 2)]),
            ref.max_pool(x, [1, 1, 3, 3], stride=[1, 1, 2, 2]),
            ref.max_pool(x, [1, 1, 3, 3], "ignore", stride=[1, 1, 2, 2]),
            ref.avg_pool(x, [1, 2, 3, 3]),
            ref.avg_pool(x, [1, 1, 3, 3], "ignore", dilation=[1, 1, 2, 1]),
            ref.multilinear_upsample(y, [2, 2])]
    assert len(got) == len(want)
    for k, (g, r) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=f"output {k}")
