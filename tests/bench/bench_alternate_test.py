"""nnef_tvm.bench.alternate: one worker process per engine, alternating timed rounds."""
import os

import numpy as np
import pytest

from nnef_tvm.bench.alternate import Engine, alternate

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "support")


@pytest.fixture(autouse=True)
def _support_on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", SUPPORT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_rounds_alternate_and_times_are_measured(tmp_path):
    fast = Engine("fast", {"ms": 1, "n": 3, "threads": 1}, "alternate_fakes:sleeper").start()
    slow = Engine("slow", {"ms": 20, "n": 5}, "alternate_fakes:sleeper").start()
    try:
        assert fast.error is None and slow.error is None
        assert fast.build_secs >= 0.001          # includes the untimed first run
        times = alternate([fast, slow], warmup=1, repeat=4, per_round=2, pause=0.0)
        assert sorted(times) == ["fast", "slow"]
        assert len(times["fast"]) == len(times["slow"]) == 8
        assert min(times["slow"]) >= 0.020
        assert np.median(times["slow"]) > np.median(times["fast"])
        out = np.load(slow.save_output(str(tmp_path / "slow.npy")))
        np.testing.assert_array_equal(out, np.arange(5, dtype="float32"))
    finally:
        fast.close()
        slow.close()
    assert fast.proc is None and slow.proc is None


def test_a_failing_builder_is_reported_and_skipped():
    bad = Engine("bad", {"path": "/nowhere/model.onnx"}, "alternate_fakes:broken").start()
    good = Engine("good", {"ms": 0, "n": 1}, "alternate_fakes:sleeper").start()
    try:
        assert bad.error is not None and "/nowhere/model.onnx" in bad.error
        assert bad.proc is None
        times = alternate([bad, good], warmup=0, repeat=2, pause=0.0)
        assert list(times) == ["good"] and len(times["good"]) == 2
    finally:
        good.close()


def test_tvm_library_and_onnxruntime_engines_agree(tmp_path):
    """The two real builders on the same tiny model give the same output."""
    ort = pytest.importorskip("onnxruntime")  # noqa: F841
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    import nnef_tvm

    # y = relu(x) + 1 as NNEF and as ONNX
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "graph.nnef").write_text(
        "version 1.0;\ngraph g( x ) -> ( y )\n{\n  x = external<scalar>(shape = [2, 3]);\n"
        "  r = relu(x);\n  y = add(r, 1.0);\n}\n")
    lib = str(tmp_path / "m.so")
    nnef_tvm.compile(str(model_dir), target="x86").export(lib)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "one"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    onnx_file = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), onnx_file)
    x = np.array([[-1, 2, -3], [4, -5, 6]], dtype="float32")
    np.savez(tmp_path / "in.npz", x=x)
    common = {"inputs": str(tmp_path / "in.npz"), "input_order": ["x"], "threads": 1}
    engines = [Engine("tvm", dict(common, library=lib), "nnef_tvm.bench.alternate:tvm_library_engine"),
               Engine("ort", dict(common, onnx=onnx_file), "nnef_tvm.bench.alternate:onnxruntime_engine")]
    try:
        for e in engines:
            e.start()
            assert e.error is None, e.error
        want = np.maximum(x, 0) + 1
        for e in engines:
            got = np.load(e.save_output(str(tmp_path / f"{e.label}.npy")))
            np.testing.assert_allclose(got, want, rtol=0, atol=0)
        times = alternate(engines, warmup=1, repeat=3, pause=0.0)
        assert all(len(v) == 3 for v in times.values())
    finally:
        for e in engines:
            e.close()
