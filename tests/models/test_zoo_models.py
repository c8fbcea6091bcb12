"""Zoo models (real NNEF-Tools conversions) through nnef-tvm vs their source runtime.

The zoo is built by ``python scripts/make_zoo.py zoo`` (needs the ``zoo`` extra and
tensorflow-cpu) and found through ``$NNEF_TVM_ZOO`` or ``./zoo``. Each model is
checked three ways:

(a) ``nnef_tvm.load`` reads it and the graph interface matches the zoo index;
(b) ``nnef-compile MODEL --check`` accepts it;
(c) our compiled outputs match the SOURCE runtime's outputs saved in
    ``reference.npz`` (onnxruntime / the TFLite interpreter): float32 within
    1e-4 * max|ref|, int8 within one quantization step.

Where the Khronos tools themselves reject the converter's output (``khronos_check``
in zoo.json, e.g. tflite_int8's per-channel arrays on the wrong axis), our reader
may reject it too, but only with a located NNEFError; if it accepts, the outputs
must still match.

For a model whose conversion itself changed the meaning (``converted-mismatch``
in zoo.json, e.g. NNEF-Tools' LSTM gate order), (c) compares against NNEF-Tools'
own interpreter on the NNEF document instead (``reference_nnef_tools.npz``).

Slow: run with ``pytest -m slow tests/models``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from models.zoo_runner import (compare, dequantize, has_module, reader_missing, run_cli_check, run_model,
                               zoo_dir, zoo_index)

KNOWN = ["resnet18", "mobilenet_v2", "se_net", "efficientnet_b0", "transformer_encoder", "lstm",
         "onnx_cnn", "tflite_float", "tflite_int8", "tflite_int8_conformant"]
INDEX = zoo_index()
NAMES = KNOWN + sorted(set(INDEX) - set(KNOWN))

pytestmark = pytest.mark.slow


def _entry(name: str) -> dict:
    if not INDEX:
        pytest.skip(f"no zoo at {zoo_dir()!r}: build it with `python scripts/make_zoo.py zoo` "
                    "(or set NNEF_TVM_ZOO)")
    entry = INDEX.get(name)
    if entry is None:
        pytest.skip(f"{name} is not in {zoo_dir()}/zoo.json (rebuild with make_zoo.py --models {name})")
    if entry["status"] not in ("ok", "converted-mismatch"):
        pytest.skip(f"{name} has no NNEF model: {entry['status']}: {entry.get('reason', '')[-300:]}")
    return entry


def _need_reader():
    why = reader_missing()
    if why:
        pytest.skip(why)


def _path(entry: dict, key: str) -> str:
    return os.path.join(zoo_dir(), entry[key])


@pytest.fixture(scope="module")
def loaded():
    """Loaded models by name, shared between the tests of one model."""
    return {}


def _load(name: str, entry: dict, cache: dict):
    """The loaded model; skips when our reader rejects what the Khronos tools reject too."""
    _need_reader()
    import nnef_tvm
    if name not in cache:
        try:
            cache[name] = nnef_tvm.load(_path(entry, "nnef"))
        except nnef_tvm.NNEFError as e:
            if entry.get("khronos_check", {}).get("ok", True):
                raise
            cache[name] = e
    if isinstance(cache[name], Exception):
        err = cache[name]
        assert err.pos is not None and err.pos.file, f"rejection without a location: {err}"
        pytest.skip(f"{name}: rejected like the Khronos tools do ({entry['khronos_check'].get('error')}): {err}")
    return cache[name]


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_loads(name, loaded):
    entry = _entry(name)
    model = _load(name, entry, loaded)
    graph = model.graph
    assert list(graph.inputs) == entry["input_order"]
    assert list(graph.outputs) == entry["output_order"]
    for tname, info in entry["inputs"].items():
        assert tuple(graph.tensors[tname].shape) == tuple(info["shape"]), tname
    for tname, info in entry["outputs"].items():
        assert tuple(graph.tensors[tname].shape) == tuple(info["shape"]), tname
    # every variable got its data, with the declared shape
    for op in graph.operations:
        if op.name == "variable":
            t = graph.tensors[op.output_names()[0]]
            assert t.data is not None and tuple(t.data.shape) == tuple(t.shape), t.name


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_cli_check(name):
    entry = _entry(name)
    if not has_module("nnef_tvm.cli.compile"):
        pytest.skip("nnef_tvm.cli.compile (nnef-compile) is not written yet")
    _need_reader()
    proc = run_cli_check(_path(entry, "nnef"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_matches_reference(name, loaded):
    entry = _entry(name)
    model = _load(name, entry, loaded)
    ref = np.load(_path(entry, "reference"))
    quant = entry.get("quantization") or {}
    inputs = {}
    for tname in entry["inputs"]:
        a = ref[tname]
        inputs[tname] = dequantize(a, quant[tname]) if tname in quant else a
    expected = {tname: ref[tname] for tname in entry["outputs"]}
    if entry["status"] == "converted-mismatch":
        alt = os.path.join(zoo_dir(), name, "reference_nnef_tools.npz")
        if not os.path.isfile(alt):
            pytest.skip(f"{name}: conversion changed the model and no NNEF-Tools reference was saved")
        expected = dict(np.load(alt))
        quant = {}   # NNEF-Tools' interpreter computes in real numbers
    outputs = run_model(model, inputs)
    tol = entry.get("tolerance", {})
    rel = tol.get("value", 1e-4) if tol.get("kind") == "relative-max" else 1e-4
    steps = tol.get("value", 1) if tol.get("kind") == "lsb" else 1
    problems = compare(outputs, expected, quant, rel=rel, steps=steps)
    assert not problems, f"{name}: " + "; ".join(problems)
