"""Shared example documents through the whole path (our reader -> frontend -> llvm),
against numpy forward passes written here from the spec semantics."""
from pathlib import Path

import numpy as np
import pytest

import nnef_tvm
from nnef_tvm.frontend import from_nnef

from frontend.support_frontend import ensure_stdlib, run_module

EXAMPLES = Path("/work/shared/nnef/examples")

_READY = ensure_stdlib() and EXAMPLES.exists()

pytestmark = pytest.mark.skipif(not _READY, reason="reader stdlib.nnef or shared examples missing")


def test_example_02_shapes_logic_and_state():
    model = nnef_tvm.load(str(EXAMPLES / "02_flat_shape_and_logic.nnef"))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 2, (2, 4, 6)).astype("float32")
    idx = np.array([5, 0, 2], "int32")
    state = rng.uniform(-1, 1, (2, 4, 6)).astype("float32")
    model.graph.tensors["state"].data = state
    y, picked, mask_any, state_next = run_module(from_nnef(model), [x, idx])

    prod = x * np.array([1, 2, 3, 4], "float32").reshape(1, 4, 1)
    t = prod.transpose(0, 2, 1)                                  # [2, 6, 4]
    s = t[:, 1:5:2, 1:4]                                         # begin -3 -> 1 on extent 4
    p = np.pad(s, [(0, 0), (1, 1), (0, 2)], mode="reflect")
    tl = np.tile(p, (1, 1, 2))
    a, b = tl[0], tl[1]
    cat = np.concatenate([a, b], axis=1)
    both = (x > 0) & (x < 1)
    np.testing.assert_allclose(y, cat.reshape(4, 2, 10), rtol=1e-6)
    np.testing.assert_array_equal(picked, np.take(x, idx, axis=2))
    np.testing.assert_array_equal(mask_any, both.any(axis=(1, 2), keepdims=True))
    np.testing.assert_array_equal(state_next, np.where(both, x, state))


def test_example_04_operator_expressions():
    model = nnef_tvm.load(str(EXAMPLES / "04_operator_expressions.nnef"))
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 2, (2, 3)).astype("float32")
    b = np.array([[0.3, -0.2, 0.0]], "float32")
    r1, r2, r3 = run_module(from_nnef(model), [a, b])
    sig = 1 / (1 + np.exp(-a))
    np.testing.assert_allclose(r1, a * 2 + b / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(r2, np.where((a > 0.5) & ~(b <= 0), a - b, -a))
    np.testing.assert_allclose(r3, np.maximum(sig * np.tanh(b), 0) + 1, rtol=1e-5)


def test_example_07_array_results():
    model = nnef_tvm.load(str(EXAMPLES / "07_tensor_array_results.nnef"))
    x = np.array([1.0, -2.0, 4.0, 8.0], "float32")
    a, b, c = run_module(from_nnef(model), [x])
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, x * 0.5)
    np.testing.assert_array_equal(c, x * 0.25)
