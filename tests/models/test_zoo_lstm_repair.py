"""The committed zoo LSTMs after make_zoo's gate-order repair mean the ONNX LSTM.

NNEF-Tools 1.0.11 copies ONNX's gate blocks (i, o, f, c) into weights that its
``lstm_step`` fragment splits as (i, f, g, o); scripts/make_zoo.py's
``reorder_lstm_gates`` permutes the blocks of the .dat payloads. Checked here
without our compiler, against onnxruntime's outputs saved in reference.npz:

* a numpy forward pass written from the fragment in graph.nnef (split B into
  Wb/Rb, ``z = x W^T + Wb + h R^T + Rb``, ``[i, f, g, o] = split(z)``, ...) on the
  repaired files reproduces onnxruntime's h_n and c_n; the same pass on the files
  put back into the converter's order does not (so the check can fail);
* zoo.json records the repair and NNEF-Tools' interpreter verdicts (off before,
  within tolerance after); the slow test re-runs that interpreter on the files;
* the bias-less variant, whose converted document is invalid (literal 0.0 split
  on axis 1), is rejected by ``nnef_tvm.load`` with a location, as by Khronos.

Our compiler's outputs on the same folders are compared in test_zoo_fixture_models.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from models.zoo_runner import REPO, need_reader

ROOT = os.path.join(REPO, "tests", "data", "zoo")
with open(os.path.join(ROOT, "zoo.json")) as _f:
    INDEX = json.load(_f)
REPAIRED = ["lstm", "lstm_batch3"]
ONNX_GATES_FOR_NNEF_LSTM = (0, 2, 3, 1)     # what the repair promises (ONNX i,o,f,c -> NNEF i,f,g,o)
HEADER_BYTES = 128                          # NNEF tensor file header


def _read_float32(path: str) -> np.ndarray:
    """A float32 NNEF tensor file read with plain numpy (spec layout: 128-byte header, then
    little-endian items; payload length at byte 4, rank at 8, extents from 12, bits at 44,
    item-type code at 48)."""
    raw = open(path, "rb").read()
    head = np.frombuffer(raw[:HEADER_BYTES], dtype="<u4")
    length, rank, bits, code = int(head[1]), int(head[2]), int(head[11]), int(head[12])
    assert raw[:2] == b"\x4e\xef" and bits == 32 and code == 0, path
    assert len(raw) == HEADER_BYTES + length, path
    return np.frombuffer(raw[HEADER_BYTES:], dtype="<f4").reshape([int(e) for e in head[3:3 + rank]])


def _weights(name: str) -> dict:
    """W, R, B (as stored) by role, via the files zoo.json's repair record names."""
    changed = INDEX[name]["postprocess"]["changed"]
    return {info["role"]: _read_float32(os.path.join(ROOT, INDEX[name]["nnef"], file))
            for file, info in changed.items()}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _fragment_forward(X, W, R, B, h, c):
    """lstm_loop / lstm_step exactly as NNEF-Tools' fragments in graph.nnef say, float64."""
    W, R = W[0].astype(np.float64), R[0].astype(np.float64)
    Wb, Rb = np.split(B.astype(np.float64), 2, axis=1)
    h, c = h[0].astype(np.float64), c[0].astype(np.float64)
    for x in X.astype(np.float64):
        z = x @ W.T + Wb + h @ R.T + Rb
        i, f, g, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h[None], c[None]


def _relative_errors(name: str, weights: dict) -> dict:
    ref = np.load(os.path.join(ROOT, INDEX[name]["reference"]))
    h, c = _fragment_forward(ref["sequence"], weights["W"], weights["R"], weights["B"], ref["h0"], ref["c0"])
    return {k: float(np.max(np.abs(got - ref[k])) / np.max(np.abs(ref[k])))
            for k, got in (("h_n", h), ("c_n", c))}


def _unrepair(array: np.ndarray, axis: int, blocks: int) -> np.ndarray:
    """Undo the documented permutation (back to the converter's ONNX order)."""
    order = list(ONNX_GATES_FOR_NNEF_LSTM)
    order = order + [4 + k for k in order] if blocks == 8 else order
    parts = np.split(array, blocks, axis=axis)
    back = [None] * blocks
    for new_pos, old_pos in enumerate(order):
        back[old_pos] = parts[new_pos]
    return np.concatenate(back, axis=axis)


@pytest.mark.parametrize("name", REPAIRED)
def test_zoo_lstm_repair_recorded(name):
    entry = INDEX[name]
    assert entry["status"] == "ok", "the repaired LSTM is compared with onnxruntime, not NNEF-Tools"
    post = entry["postprocess"]
    assert post["function"] == "reorder_lstm_gates"
    assert sorted(info["role"] for info in post["changed"].values()) == ["B", "R", "W"]
    for info in post["changed"].values():
        assert info["new_order"][:4] == list(ONNX_GATES_FOR_NNEF_LSTM)
    assert post["nnef_tools_check_before"]["ran"] and not post["nnef_tools_check_before"]["ok"]
    assert entry["nnef_tools_check"]["ran"] and entry["nnef_tools_check"]["ok"]
    assert entry["khronos_check"]["ok"]
    assert "reorder_lstm_gates" in entry["converter_issue"]


@pytest.mark.parametrize("name", REPAIRED)
def test_zoo_lstm_repaired_files_match_onnxruntime(name):
    errors = _relative_errors(name, _weights(name))
    assert max(errors.values()) <= 1e-5, errors       # float64 pass vs float32 onnxruntime


@pytest.mark.parametrize("name", REPAIRED)
def test_zoo_lstm_converter_order_does_not(name):
    changed = INDEX[name]["postprocess"]["changed"]
    weights = _weights(name)
    raw = {info["role"]: _unrepair(weights[info["role"]], info["gate_axis"], info["blocks"])
           for info in changed.values()}
    errors = _relative_errors(name, raw)
    assert min(errors.values()) > 0.1, errors


def test_zoo_lstm_shapes_as_exported():
    assert INDEX["lstm"]["inputs"]["sequence"]["shape"] == [8, 1, 16]
    assert INDEX["lstm_batch3"]["inputs"]["sequence"]["shape"] == [5, 3, 8]
    assert INDEX["lstm_batch3"]["outputs"]["c_n"]["shape"] == [1, 3, 12]
    with open(os.path.join(ROOT, INDEX["lstm_batch3"]["nnef"], "graph.nnef")) as f:
        assert re.search(r"lstm_loop\(.*steps = 5, axis = 0\)", f.read())


def test_zoo_lstm_nobias_rejected_with_location():
    """The converter's bias-less document splits the literal 0.0 on axis 1: invalid NNEF."""
    need_reader()
    import nnef_tvm
    entry = INDEX["lstm_nobias"]
    assert not entry["khronos_check"]["ok"]
    folder = os.path.join(ROOT, entry["nnef"])
    with open(os.path.join(folder, "graph.nnef")) as f:
        lines = f.read().splitlines()
    call_line = next(n for n, text in enumerate(lines, 1) if "= lstm_loop(" in text and ", 0.0," in text)
    with pytest.raises(nnef_tvm.NNEFError) as info:
        nnef_tvm.load(folder)
    err = info.value
    assert err.pos is not None and err.pos.file.endswith("graph.nnef"), err
    assert err.pos.line == call_line and "split" in str(err), err


@pytest.mark.slow
@pytest.mark.parametrize("name", REPAIRED)
def test_zoo_lstm_nnef_tools_interpreter_agrees(name):
    """Independent oracle: NNEF-Tools' PyTorch interpreter on the repaired folder."""
    pytest.importorskip("torch")
    from nnef_tools.interpreter.pytorch import Interpreter
    entry = INDEX[name]
    ref = np.load(os.path.join(ROOT, entry["reference"]))
    interp = Interpreter(os.path.join(ROOT, entry["nnef"]), device="cpu",
                         decomposed=["lstm_loop", "lstm_step"])
    got = interp([ref[k] for k in entry["input_order"]])
    for k in entry["output_order"]:
        err = float(np.max(np.abs(np.asarray(got[k], dtype=np.float64) - ref[k])))
        assert err <= 1e-4 * float(np.max(np.abs(ref[k]))), (k, err)


@pytest.mark.slow
@pytest.mark.parametrize("name", REPAIRED)
def test_zoo_lstm_compiled_matches_onnxruntime_on_fresh_inputs(name):
    """Beyond the one saved input: the big zoo's repaired LSTM, compiled once by nnef-tvm,
    against onnxruntime on its source.onnx for fresh inputs, up to saturating gates (x3)."""
    from models.zoo_runner import zoo_dir, zoo_index
    ort = pytest.importorskip("onnxruntime")
    need_reader()
    root, index = zoo_dir(), zoo_index()
    entry = index.get(name)
    source = os.path.join(root, name, "source.onnx")
    if not entry or entry.get("status") != "ok" or not os.path.isfile(source):
        pytest.skip(f"{name}: no repaired model with its source.onnx in {root!r} "
                    f"(python scripts/make_zoo.py zoo --models 'lstm*')")
    import nnef_tvm
    compiled = nnef_tvm.compile(nnef_tvm.load(os.path.join(root, entry["nnef"])), target="x86")
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    for scale in (0.5, 1.0, 3.0):
        feed = {k: (scale * rng.standard_normal(info["shape"])).astype(np.float32)
                for k, info in entry["inputs"].items()}
        source_feed = {entry["inputs"][k]["source_name"]: v for k, v in feed.items()}
        want = dict(zip([o.name for o in session.get_outputs()], session.run(None, source_feed)))
        got = compiled.run(feed)
        for k, info in entry["outputs"].items():
            ref = want[info["source_name"]]
            err = float(np.max(np.abs(np.asarray(got[k], dtype=np.float64) - ref)))
            assert err <= 1e-4 * float(np.max(np.abs(ref))), (scale, k, err)
