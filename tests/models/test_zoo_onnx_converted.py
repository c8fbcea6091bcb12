"""One real converter-produced model in every CI run (no torch needed).

A small CNN is written with the ``onnx`` helper API (conv + batch-norm + relu +
max-pool, a residual add, global average pool, flatten, gemm, softmax), converted
to an NNEF folder by NNEF-Tools in a subprocess exactly as scripts/make_zoo.py
does, then:

* the Khronos parser accepts the converter's output (sanity of the oracle chain);
* ``nnef_tvm.load`` reads it with the shapes onnxruntime reports;
* nnef-tvm's outputs match onnxruntime's (max abs error <= 1e-4 * max|ref|).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from models.zoo_runner import compare, reader_missing, run_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("nnef_tools")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

INPUT_SHAPE = (1, 3, 16, 16)


def _onnx_model() -> "onnx.ModelProto":
    rng = np.random.default_rng(42)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)

    inits = [
        init("w1", (8, 3, 3, 3)), init("b1", (8,), 0.1),
        init("bn_scale", (8,), 0.2), init("bn_bias", (8,), 0.1), init("bn_mean", (8,), 0.1),
        numpy_helper.from_array((0.5 + rng.random(8)).astype(np.float32), "bn_var"),
        init("w2", (8, 8, 3, 3), 0.2), init("b2", (8,), 0.1),
        init("fc_w", (10, 8), 0.5), init("fc_b", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn1"],
                         epsilon=1e-5),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r2", "p1"], ["res"]),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "ci_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8           # readable by older onnxruntime too
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(NNEF folder, tensor mapping, input, onnxruntime outputs by ONNX name)."""
    work = tmp_path_factory.mktemp("onnx_ci")
    src, out, mapping = work / "ci_cnn.onnx", work / "ci_cnn.nnef", work / "tensor_mapping.json"
    onnx.save(_onnx_model(), str(src))
    cmd = [sys.executable, "-m", "nnef_tools.convert", "--input-format", "onnx", "--output-format", "nnef",
           "--input-model", str(src), "--output-model", str(out), "--keep-io-names",
           "--tensor-mapping", str(mapping)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(work))
    assert proc.returncode == 0, proc.stderr[-2000:]
    x = np.random.default_rng(7).standard_normal(INPUT_SHAPE).astype(np.float32)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    ref = dict(zip(["logits", "probs"], sess.run(["logits", "probs"], {"image": x})))
    with open(mapping) as f:
        names = json.load(f)
    return str(out), names, x, ref


def test_onnx_converted_khronos_accepts(converted):
    nnef = pytest.importorskip("nnef")
    folder, names, _, _ = converted
    graph = nnef.load_graph(folder)
    nnef.infer_shapes(graph)
    assert graph.inputs == [names["image"]]
    assert graph.outputs == [names["logits"], names["probs"]]
    assert list(graph.tensors[names["probs"]].shape) == [1, 10]


def test_onnx_converted_loads(converted):
    if reader_missing():
        pytest.skip(reader_missing())
    import nnef_tvm
    folder, names, _, _ = converted
    model = nnef_tvm.load(folder)
    g = model.graph
    assert g.inputs == [names["image"]]
    assert g.outputs == [names["logits"], names["probs"]]
    assert tuple(g.tensors[names["image"]].shape) == INPUT_SHAPE
    assert tuple(g.tensors[names["logits"]].shape) == (1, 10)
    ops = [op.name for op in g.operations if op.name not in ("external", "variable")]
    # what NNEF-Tools 1.0.11 writes for this graph (batch_normalization may be lowered by the reader)
    for name in ("conv", "relu", "max_pool", "add", "mean_reduce", "reshape", "linear", "softmax"):
        assert name in ops, (name, ops)


def test_onnx_converted_matches_onnxruntime(converted):
    if reader_missing():
        pytest.skip(reader_missing())
    import nnef_tvm
    folder, names, x, ref = converted
    outputs = run_model(nnef_tvm.load(folder), {names["image"]: x})
    expected = {names[k]: v for k, v in ref.items()}
    problems = compare(outputs, expected, rel=1e-4)
    assert not problems, "; ".join(problems)


def test_onnx_converted_compare_detects_errors(converted):
    """The comparison used above fails on a perturbed output (guards against a vacuous test)."""
    _, names, _, ref = converted
    expected = {names[k]: v for k, v in ref.items()}
    perturbed = {k: v * (1 + 1e-3) for k, v in expected.items()}
    assert compare(perturbed, expected, rel=1e-4)
    assert not compare(expected, expected, rel=1e-4)
