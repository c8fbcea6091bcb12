"""Shared fixtures for target/compiler tests: tiny hand-built Relax modules.

They are built with the BlockBuilder (not through the NNEF frontend) so these
tests exercise targets, compilation, artifacts and runtime on their own. Each
fixture also returns an independent numpy reference of what ``main`` computes.
"""
import numpy as np
import pytest


def _small_module():
    """main(x, y) = relu(x + y) * x, variables named like NNEF tensors."""
    from tvm import relax
    from tvm.relax import op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "float32"))
    y = relax.Var("y", relax.TensorType((2, 3), "float32"))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            s = bb.emit(op.add(x, y), name_hint="sum")
            a = bb.emit(op.nn.relu(s), name_hint="act")
            o = bb.emit(op.multiply(a, x), name_hint="prod")
            out = bb.emit_output(o)
        bb.emit_func_output(out)
    return bb.get()


def _small_reference(x, y):
    return np.maximum(x + y, 0) * x


def _two_output_module(weights):
    """main(x) = (softmax(x @ W), x * 2): a constant, a tuple result, two kernels."""
    from tvm import relax
    from tvm.relax import op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            m = bb.emit(op.matmul(x, relax.const(weights)), name_hint="logits")
            p = bb.emit(op.nn.softmax(m, axis=-1), name_hint="probs")
            d = bb.emit(op.multiply(x, relax.const(np.float32(2.0))), name_hint="twice")
            out = bb.emit_output(relax.Tuple([p, d]))
        bb.emit_func_output(out)
    return bb.get()


def _two_output_reference(x, weights):
    m = x.astype(np.float64) @ weights.astype(np.float64)
    e = np.exp(m - m.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), x * 2


@pytest.fixture
def small_module():
    return _small_module()


@pytest.fixture
def small_reference():
    return _small_reference


@pytest.fixture
def two_output():
    w = np.random.default_rng(7).standard_normal((8, 5)).astype("float32")
    return _two_output_module(w), (lambda x: _two_output_reference(x, w))
