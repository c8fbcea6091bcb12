"""Local normalization converters vs the numpy spec reference (and ONNX LRN via onnxruntime).

float32 tolerance rtol/atol 1e-5 (1e-4 for the variance forms, which divide by small sigmas).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402


def _case(op, fn, shape, seed, size, tol=1e-5, **attrs):
    x = rand(shape, seed)
    extra = "".join(f", {k} = {v}" for k, v in attrs.items())
    return Case({"x": x}, f"{{o}} = {op}({{x}}, size = {list(size)}{extra});", ["o"],
                [fn(x, size, **attrs)], rtol=tol, atol=tol, label=f"{op} {size} {attrs}")


def _onnx_lrn(x, n, alpha, beta, bias):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    node = helper.make_node("LRN", ["x"], ["y"], size=n, alpha=alpha, beta=beta, bias=bias)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_local_norm_cases():
    x = rand((2, 7, 3, 4), 99)
    # ONNX LRN (odd n): alpha/n * sum over the centred channel window == NNEF alpha * mean
    lrn_onnx = _onnx_lrn(x, 5, 0.3, 0.75, 2.0)
    np.testing.assert_allclose(ref.local_response_normalization(x, [1, 5, 1, 1], alpha=0.3, beta=0.75, bias=2.0),
                               lrn_onnx, rtol=1e-5, atol=1e-6)
    cases = [
        Case({"x": x}, "{o} = local_response_normalization({x}, size = [1, 5, 1, 1], alpha = 0.3, beta = 0.75, "
                       "bias = 2.0);", ["o"], [lrn_onnx], label="LRN vs onnxruntime"),
        _case("local_response_normalization", ref.local_response_normalization, (1, 6, 4, 4), 1, [1, 4, 1, 1],
              alpha=0.5, beta=0.5, bias=1.0),
        _case("local_response_normalization", ref.local_response_normalization, (1, 3, 5, 5), 2, [1, 1, 3, 3]),
        _case("local_mean_normalization", ref.local_mean_normalization, (1, 3, 5, 6), 3, [1, 1, 3, 3]),
        _case("local_mean_normalization", ref.local_mean_normalization, (2, 5, 4), 4, [1, 3, 1]),
        _case("local_variance_normalization", ref.local_variance_normalization, (1, 3, 5, 6), 5, [1, 1, 3, 3],
              tol=1e-4, bias=0.1, epsilon=0.01),
        _case("local_contrast_normalization", ref.local_contrast_normalization, (1, 4, 5, 5), 6, [1, 3, 3, 3],
              tol=1e-4, bias=0.5, epsilon=0.001),
    ]
    run_cases(cases)
