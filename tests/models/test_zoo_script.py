"""scripts/make_zoo.py itself: index, files, name mapping and failure records.

Runs the torch-free ``onnx_cnn`` model end to end (ONNX helper -> onnxruntime
reference -> NNEF-Tools conversion -> zoo.json), so CI exercises the same code
path that builds the big models.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from models.zoo_runner import SCRIPTS

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("nnef_tools")


def _make_zoo():
    name = "nnef_tvm_scripts_make_zoo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, "make_zoo.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def zoo_script():
    return _make_zoo()


@pytest.fixture(scope="module")
def onnx_cnn_zoo(zoo_script, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    assert zoo_script.main([str(out), "--models", "onnx_cnn"]) == 0
    with open(out / "zoo.json") as f:
        return str(out), json.load(f)


def test_zoo_script_list(zoo_script, capsys):
    assert zoo_script.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("resnet18", "mobilenet_v2", "se_net", "transformer_encoder", "lstm", "lstm_batch3",
                 "tflite_float", "tflite_int8", "onnx_cnn"):
        assert name in listed


def test_zoo_script_unknown_model(zoo_script, tmp_path):
    with pytest.raises(SystemExit):
        zoo_script.main([str(tmp_path), "--models", "no_such_model"])


def test_zoo_script_onnx_cnn_entry(onnx_cnn_zoo):
    root, index = onnx_cnn_zoo
    entry = index["onnx_cnn"]
    assert entry["status"] == "ok", entry
    assert entry["input_order"] == ["image"] and entry["output_order"] == ["scores", "gates"]
    assert entry["inputs"]["image"]["shape"] == [1, 3, 16, 16]
    assert entry["khronos_check"]["ok"], entry["khronos_check"]
    assert "--input-format onnx --output-format nnef" in entry["converter_command"]
    assert {"conv", "avg_pool", "concat", "linear"} <= set(entry["operations"])
    assert os.path.isfile(os.path.join(root, entry["nnef"], "graph.nnef"))
    ref = np.load(os.path.join(root, entry["reference"]))
    assert sorted(ref.files) == ["gates", "image", "scores"]
    assert ref["scores"].shape == (1, 10)
    # gates = sigmoid(scores) in the source model: the saved pair is consistent
    np.testing.assert_allclose(ref["gates"], 1 / (1 + np.exp(-ref["scores"])), rtol=1e-5, atol=1e-6)


def test_zoo_script_merges_index(zoo_script, onnx_cnn_zoo, monkeypatch):
    """Re-running for one model keeps the other entries; a missing library is a 'skipped' entry."""
    root, _ = onnx_cnn_zoo

    def needs_missing_library(path):
        raise ImportError("No module named 'not_installed_anywhere'")

    monkeypatch.setitem(zoo_script.MODELS, "fake", ("onnx", needs_missing_library, "test only"))
    assert zoo_script.main([root, "--models", "fake"]) == 1        # every requested model failed
    with open(os.path.join(root, "zoo.json")) as f:
        index = json.load(f)
    assert index["onnx_cnn"]["status"] == "ok"
    assert index["fake"]["status"] == "skipped"
    assert "not_installed_anywhere" in index["fake"]["reason"]


def test_zoo_script_records_converter_errors(zoo_script, tmp_path, monkeypatch):
    """An op NNEF-Tools cannot convert ends as 'converter-failed' with its error text."""
    import onnx
    from onnx import TensorProto, helper

    def unsupported(path):
        node = helper.make_node("Hardmax", ["x"], ["y"], axis=1)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, path)
        x = np.arange(10, dtype=np.float32).reshape(2, 5)
        return zoo_script.Source("onnx", path, "unsupported op", {"x": x}, {"y": x})

    monkeypatch.setitem(zoo_script.MODELS, "bad", ("onnx", unsupported, "test only"))
    monkeypatch.setattr(zoo_script, "ONNX_ATTEMPTS", [[]])
    zoo_script.main([str(tmp_path), "--models", "bad"])
    with open(tmp_path / "zoo.json") as f:
        entry = json.load(f)["bad"]
    assert entry["status"] == "converter-failed"
    assert "Hardmax" in entry["reason"]
    assert entry["converter_failures"][0]["options"] == []


def test_zoo_script_map_names(zoo_script):
    mapped, how = zoo_script.map_names(["a:0", "b"], ["a_0", "b"], {"a:0": "a_0", "b": "b"})
    assert mapped == {"a:0": "a_0", "b": "b"} and how == "tensor-mapping"
    mapped, how = zoo_script.map_names(["x", "y"], ["in1", "in2"], {})
    assert mapped == {"x": "in1", "y": "in2"} and how == "position"
    with pytest.raises(RuntimeError):
        zoo_script.map_names(["x"], ["a", "b"], {})


def test_zoo_script_graph_interface(zoo_script, tmp_path):
    (tmp_path / "graph.nnef").write_text(
        "version 1.0;\ngraph g( a, b ) -> ( c )\n{\n"
        "    a = external<scalar>(shape = [1, 2]);\n    b = external<integer>(shape = [3]);\n"
        "    c = add(a, 1.0);\n}\n")
    ins, outs, ext = zoo_script.graph_interface(str(tmp_path))
    assert ins == ["a", "b"] and outs == ["c"]
    assert ext == {"a": ("scalar", (1, 2)), "b": ("integer", (3,))}


def test_zoo_script_conform_per_channel_quant(zoo_script, tmp_path):
    """Flat [C] arrays meant for the last axis become nested; the Khronos tools then accept them."""
    nnef = pytest.importorskip("nnef")
    (tmp_path / "graph.nnef").write_text(
        "version 1.0;\ngraph g( x ) -> ( y )\n{\n"
        "    x = external<scalar>(shape = [4, 3]);\n"
        "    b = variable<scalar>(shape = [1, 3], label = 'b');\n"
        "    w = variable<scalar>(shape = [3, 2], label = 'w');\n"
        "    y = add(x, b);\n}\n")
    quant = ('"b": zero_point_linear_quantize(zero_point = [0, 0, 0], scale = [0.5, 0.25, 0.125], '
             'bits = 32, signed = true, symmetric = false);\n'
             '"w": zero_point_linear_quantize(zero_point = [0, 0, 0], scale = [0.1, 0.2, 0.3], '
             'bits = 8, signed = true, symmetric = true);\n'
             '"y": zero_point_linear_quantize(zero_point = 0, scale = 0.5, bits = 8, '
             'signed = true, symmetric = false);\n')
    (tmp_path / "graph.quant").write_text(quant)
    from nnef_tvm.reader.tensorfile import write_tensor
    write_tensor(str(tmp_path / "b.dat"), np.array([[1, 2, 3]], dtype=np.int32))
    write_tensor(str(tmp_path / "w.dat"), np.ones((3, 2), dtype=np.int8))
    with pytest.raises(AssertionError):          # as written: [3] varies along axis 0 of [1, 3]
        nnef.infer_shapes(nnef.load_graph(str(tmp_path)))
    changed = zoo_script.conform_per_channel_quant(str(tmp_path))
    assert changed == {"b": [1, 3]}              # "w" already fits axis 0, "y" is per-tensor
    text = (tmp_path / "graph.quant").read_text()
    assert "scale = [[0.5, 0.25, 0.125]]" in text and "scale = [0.1, 0.2, 0.3]" in text
    graph = nnef.load_graph(str(tmp_path))
    nnef.infer_shapes(graph)
    assert np.asarray(graph.tensors["b"].quantization["scale"]).shape == (1, 3)


def _copy_fixture_nnef(name: str, dest) -> str:
    import shutil
    src = os.path.join(os.path.dirname(SCRIPTS), "tests", "data", "zoo", name, "nnef")
    return shutil.copytree(src, dest / name)


def test_zoo_script_reorder_lstm_gates(zoo_script, tmp_path):
    """Blocks move as documented, headers stay byte for byte, three passes restore the files
    (the permutation (i,o,f,c) -> (i,f,g,o) is a 3-cycle)."""
    pytest.importorskip("nnef")
    from nnef_tvm.reader.tensorfile import read_tensor_file
    folder = _copy_fixture_nnef("lstm_batch3", tmp_path)
    files = ["variable1.dat", "variable2.dat", "variable3.dat"]
    before = {f: open(os.path.join(folder, f), "rb").read() for f in files}
    changed = zoo_script.reorder_lstm_gates(folder)
    assert {f: c["role"] for f, c in changed.items()} == dict(zip(files, "WRB"))
    for f in files:
        after = open(os.path.join(folder, f), "rb").read()
        assert after[:128] == before[f][:128] and after != before[f]
    w_old = np.frombuffer(before["variable1.dat"][128:], "<f4").reshape(1, 48, 8)
    w_new = read_tensor_file(os.path.join(folder, "variable1.dat"))[0]
    for nnef_gate, onnx_gate in enumerate((0, 2, 3, 1)):        # i f g o <- i o f c
        np.testing.assert_array_equal(w_new[:, 12 * nnef_gate:12 * (nnef_gate + 1)],
                                      w_old[:, 12 * onnx_gate:12 * (onnx_gate + 1)])
    b_old = np.frombuffer(before["variable3.dat"][128:], "<f4").reshape(1, 96)
    b_new = read_tensor_file(os.path.join(folder, "variable3.dat"))[0]
    np.testing.assert_array_equal(b_new[:, 48 + 12:48 + 24], b_old[:, 48 + 24:48 + 36])   # Rb's f
    zoo_script.reorder_lstm_gates(folder)
    zoo_script.reorder_lstm_gates(folder)
    for f in files:
        assert open(os.path.join(folder, f), "rb").read() == before[f], f


def test_zoo_script_reorder_lstm_gates_literal_bias_and_errors(zoo_script, tmp_path):
    pytest.importorskip("nnef")
    folder = _copy_fixture_nnef("lstm_nobias", tmp_path)
    changed = zoo_script.reorder_lstm_gates(folder)          # B is the literal 0.0: left alone
    assert sorted(c["role"] for c in changed.values()) == ["R", "W"]
    graph = os.path.join(folder, "graph.nnef")
    text = open(graph).read()
    with open(graph, "w") as f:                             # W from a graph input: cannot repair
        f.write(text.replace("lstm_loop(sequence, squeeze1,", "lstm_loop(sequence, squeeze3,"))
    with pytest.raises(RuntimeError, match="graph input"):
        zoo_script.reorder_lstm_gates(folder)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "graph.nnef").write_text(
        "version 1.0;\ngraph g( a ) -> ( b )\n{\n    a = external<scalar>(shape = [2]);\n"
        "    b = relu(a);\n}\n")
    with pytest.raises(RuntimeError, match="no lstm_loop"):
        zoo_script.reorder_lstm_gates(str(tmp_path / "plain"))


@pytest.mark.slow
def test_zoo_script_lstm_end_to_end(zoo_script, tmp_path):
    """torch LSTM -> ONNX -> NNEF-Tools -> gate repair: NNEF-Tools' interpreter is off from
    onnxruntime before the repair and within tolerance after it; the entry says so."""
    pytest.importorskip("torch")
    assert zoo_script.main([str(tmp_path), "--models", "lstm_batch3"]) == 0
    with open(tmp_path / "zoo.json") as f:
        entry = json.load(f)["lstm_batch3"]
    assert entry["status"] == "ok", entry.get("reason")
    post = entry["postprocess"]
    assert post["function"] == "reorder_lstm_gates"
    assert not post["nnef_tools_check_before"]["ok"] and entry["nnef_tools_check"]["ok"]
    assert entry["inputs"]["sequence"]["shape"] == [5, 3, 8]
    ref = np.load(tmp_path / "lstm_batch3" / "reference.npz")
    interp = np.load(tmp_path / "lstm_batch3" / "reference_nnef_tools.npz")
    for k in ("h_n", "c_n"):
        np.testing.assert_allclose(interp[k], ref[k], rtol=0, atol=1e-4 * float(np.max(np.abs(ref[k]))))
