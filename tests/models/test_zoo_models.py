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
in zoo.json), (c) compares against NNEF-Tools' own interpreter on the NNEF document
instead (``reference_nnef_tools.npz``). The LSTMs are not such models any more:
make_zoo reorders their gate blocks (``postprocess`` in zoo.json), so they are
compared with onnxruntime.

Slow: run with ``pytest -m slow tests/models``. The small models are also
committed under tests/data/zoo and checked on every run (test_zoo_fixture_models).
"""
from __future__ import annotations

import os

import pytest

from models.zoo_runner import (check_interface, check_reference, has_module, load_entry, need_reader,
                               run_cli_check, usable_entry, zoo_dir, zoo_index)

KNOWN = ["resnet18", "mobilenet_v2", "se_net", "efficientnet_b0", "transformer_encoder", "lstm",
         "lstm_batch3", "lstm_nobias", "onnx_cnn", "tflite_float", "tflite_int8",
         "tflite_int8_conformant"]
ROOT = zoo_dir()
INDEX = zoo_index()
NAMES = KNOWN + sorted(set(INDEX) - set(KNOWN))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded():
    """Loaded models by name, shared between the tests of one model."""
    return {}


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_loads(name, loaded):
    entry = usable_entry(ROOT, name, INDEX)
    check_interface(load_entry(ROOT, name, entry, loaded), entry)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_cli_check(name):
    entry = usable_entry(ROOT, name, INDEX)
    if not has_module("nnef_tvm.cli.compile"):
        pytest.skip("nnef_tvm.cli.compile (nnef-compile) is not written yet")
    need_reader()
    if not entry.get("khronos_check", {}).get("ok", True):
        pytest.skip(f"{name}: the Khronos tools reject it too; test_zoo_model_loads covers the error")
    proc = run_cli_check(os.path.join(ROOT, entry["nnef"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_matches_reference(name, loaded):
    entry = usable_entry(ROOT, name, INDEX)
    check_reference(ROOT, name, entry, load_entry(ROOT, name, entry, loaded))
