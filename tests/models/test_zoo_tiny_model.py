"""scripts/make_tiny_model.py: the README's model is valid NNEF and computes a CNN.

Oracles: the Khronos parser and tensor reader (validity, weights written by our
tensor writer), and a numpy forward pass written from the NNEF spec formulas
(conv with explicit padding, relu, max_pool, linear, softmax).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from models.zoo_runner import SCRIPTS, compare, reader_missing, run_model

SCRIPT = os.path.join(SCRIPTS, "make_tiny_model.py")
FILES = ["graph.nnef", "conv1/filter.dat", "conv1/bias.dat", "conv2/filter.dat", "conv2/bias.dat",
         "fc/weights.dat", "fc/bias.dat"]


def _script_module():
    spec = importlib.util.spec_from_file_location("make_tiny_model", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    model_dir, input_file = out / "tiny_cnn", out / "input.dat"
    proc = subprocess.run([sys.executable, SCRIPT, str(model_dir), "--input", str(input_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(model_dir), str(input_file)


# ---- numpy reference from the spec (NCHW, cross-correlation, explicit padding)

def np_conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))  # n,c,h,w,kh,kw
    return np.einsum("nchwij,ocij->nohw", win, w) + b.reshape(1, -1, 1, 1)


def np_max_pool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def np_forward(x, wts):
    y = np_max_pool2(np.maximum(np_conv(x, wts["conv1/filter"], wts["conv1/bias"], 1), 0))
    y = np_max_pool2(np.maximum(np_conv(y, wts["conv2/filter"], wts["conv2/bias"], 1), 0))
    logits = y.reshape(1, -1) @ wts["fc/weights"].T + wts["fc/bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_tiny_model_files(tiny):
    model_dir, input_file = tiny
    for f in FILES:
        assert os.path.isfile(os.path.join(model_dir, f)), f
    assert os.path.isfile(input_file)
    total = sum(os.path.getsize(os.path.join(model_dir, f)) for f in FILES)
    assert total < 100_000          # it is meant to stay tiny


def test_tiny_model_khronos_oracle(tiny):
    """The Khronos tools accept the folder and read back exactly the seeded weights."""
    nnef = pytest.importorskip("nnef")
    model_dir, input_file = tiny
    graph = nnef.load_graph(model_dir)
    assert [op.name for op in graph.operations if op.name not in ("external", "variable")] == \
        ["conv", "relu", "max_pool", "conv", "relu", "max_pool", "reshape", "linear", "softmax"]
    weights = _script_module().make_weights(0)
    by_label = {op.attribs["label"]: graph.tensors[op.outputs["output"]].data
                for op in graph.operations if op.name == "variable"}
    assert set(by_label) == set(weights)
    for label, w in weights.items():
        np.testing.assert_array_equal(by_label[label], w)
    with open(input_file, "rb") as f:
        np.testing.assert_array_equal(nnef.read_tensor(f), _script_module().make_input(0))


def test_tiny_model_seed_changes_weights():
    mod = _script_module()
    a, b = mod.make_weights(0), mod.make_weights(1)
    assert not np.array_equal(a["fc/weights"], b["fc/weights"])
    np.testing.assert_array_equal(a["fc/weights"], mod.make_weights(0)["fc/weights"])


def _need_reader():
    why = reader_missing()
    if why:
        pytest.skip(why)


def test_tiny_model_loads(tiny):
    _need_reader()
    import nnef_tvm
    model_dir, _ = tiny
    model = nnef_tvm.load(model_dir)
    g = model.graph
    assert g.inputs == ["input"] and g.outputs == ["output"]
    assert tuple(g.tensors["pool2"].shape) == (1, 16, 8, 8)
    assert tuple(g.tensors["output"].shape) == (1, 10)
    weights = _script_module().make_weights(0)
    for t in g.tensors.values():
        if t.label is not None:
            np.testing.assert_array_equal(np.asarray(t.data), weights[t.label])
    assert model.parameter_bytes() == sum(w.nbytes for w in weights.values())


def test_tiny_model_runs_like_numpy(tiny):
    """Compiled tiny model vs the numpy forward pass from the spec."""
    _need_reader()
    import nnef_tvm
    model_dir, _ = tiny
    mod = _script_module()
    x = mod.make_input(0)
    expected = np_forward(x.astype(np.float64), {k: v.astype(np.float64) for k, v in mod.make_weights(0).items()})
    outputs = run_model(nnef_tvm.load(model_dir), {"input": x})
    assert not compare(outputs, {"output": expected.astype(np.float32)}, rel=1e-4)
    assert abs(float(outputs["output"].sum()) - 1.0) < 1e-5
