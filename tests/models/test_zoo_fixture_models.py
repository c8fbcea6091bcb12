"""The small zoo models committed under tests/data/zoo, checked on every test run.

They are real NNEF-Tools outputs that CI could not produce itself (no torch, no
tensorflow there): two LSTMs (a recursive custom fragment; 8 steps x batch 1 and
5 steps x batch 3) whose gate blocks make_zoo reorders so that they mean the ONNX
LSTM -- compared with onnxruntime --, the bias-less LSTM the converter writes as an
invalid document (rejected with a location, like the Khronos tools do), the
float and int8 TFLite CNNs (NHWC transposes, a relu6 fragment, depthwise conv as
groups = 0, graph.quant) and the NNEF-conformant int8 variant. Regenerate with::

    python scripts/make_zoo.py tests/data/zoo --slim \\
        --models 'lstm*',tflite_float,tflite_int8,tflite_int8_conformant

Same checks as the big zoo (tests/models/test_zoo_models.py): the graph interface
after ``nnef_tvm.load``, and outputs vs the saved source-runtime reference.
"""
from __future__ import annotations

import json
import os

import pytest

from models.zoo_runner import REPO, check_interface, check_reference, load_entry, need_reader, usable_entry

ROOT = os.path.join(REPO, "tests", "data", "zoo")
with open(os.path.join(ROOT, "zoo.json")) as _f:
    INDEX = json.load(_f)
NAMES = sorted(INDEX)


@pytest.fixture(scope="module")
def loaded():
    return {}


def test_zoo_fixture_is_small_and_complete():
    total = 0
    for dirpath, _, files in os.walk(ROOT):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    assert total < 256_000, total
    assert {"lstm", "lstm_batch3", "lstm_nobias", "tflite_float", "tflite_int8",
            "tflite_int8_conformant"} <= set(INDEX)
    for name, entry in INDEX.items():
        assert entry["status"] in ("ok", "converted-mismatch"), (name, entry["status"])
        assert os.path.isfile(os.path.join(ROOT, entry["nnef"], "graph.nnef"))
        assert os.path.isfile(os.path.join(ROOT, entry["reference"]))


def test_zoo_fixture_khronos_verdicts():
    """The fixture's recorded Khronos verdicts still hold (the conformant repair really is one)."""
    nnef = pytest.importorskip("nnef")
    for name, entry in INDEX.items():
        folder = os.path.join(ROOT, entry["nnef"])
        with open(os.path.join(folder, "graph.nnef")) as f:
            fragments = [line.split()[1].split("(")[0] for line in f if line.startswith("fragment ")]
        try:
            nnef.infer_shapes(nnef.load_graph(folder, lowered=fragments))
            accepted = True
        except Exception:
            accepted = False
        assert accepted == entry["khronos_check"]["ok"], name


@pytest.mark.parametrize("name", NAMES)
def test_zoo_fixture_loads(name, loaded):
    entry = usable_entry(ROOT, name, INDEX)
    check_interface(load_entry(ROOT, name, entry, loaded), entry)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_fixture_matches_reference(name, loaded):
    entry = usable_entry(ROOT, name, INDEX)
    check_reference(ROOT, name, entry, load_entry(ROOT, name, entry, loaded))


def test_zoo_fixture_tflite_int8_realigned_matches_tflite():
    """The converter's non-conformant int8 folder, read with the opt-in ``realign_flat_quant``
    (flat [C] per-channel arrays put on the last axis, each named in a warning), computes what
    the TFLite interpreter computed: within one quantization step of its saved outputs."""
    need_reader()
    import nnef_tvm
    entry = INDEX["tflite_int8"]
    folder = os.path.join(ROOT, entry["nnef"])
    with pytest.warns(UserWarning) as caught:
        model = nnef_tvm.load(folder, realign_flat_quant=True)
    realigned = " ".join(str(w.message) for w in caught)
    for tensor in ("variable2", "variable4", "variable5", "variable6"):   # as conform_per_channel_quant
        assert f"'{tensor}'" in realigned, (tensor, realigned)
    check_reference(ROOT, "tflite_int8", entry, model)
