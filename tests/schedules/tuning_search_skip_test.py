"""MetaSchedule's search skips the kernels its rules cannot schedule (Winograd), tunes the rest.

Before, one such kernel stopped the whole evolutionary search with
"TensorRegion pattern match failed" (MetaSchedule's MultiLevelTiling on the
Winograd output transform), so a ResNet-18 tuning run measured no search
trials at all.
"""
import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402

from schedules_kernels import conv3x3_relu_conv1x1  # noqa: E402,I100
from tuning_template_test import FakeBuilder, FakeRunner, fastest_last  # noqa: E402,I100


def winograd_and_pointwise():
    """A 3x3 conv the Winograd legalization takes (16 ch, 28x28) and a 1x1 conv it does not."""
    rng = np.random.default_rng(0)
    w3 = rng.standard_normal((16, 16, 3, 3)).astype("float32")
    w1 = rng.standard_normal((16, 16, 1, 1)).astype("float32")
    return conv3x3_relu_conv1x1((1, 16, 28, 28), w3, w1)


def test_search_skips_winograd_kernels_and_tunes_the_rest(tmp_path, monkeypatch):
    from tvm.s_tir import meta_schedule as ms
    handed = []

    def record(tasks, **kw):
        handed.extend(t.task_name for t in tasks)
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", record)
    lines = []
    s = tuning.tune_model(None, "x86", store=TuningStore(tmp_path), mod=winograd_and_pointwise(),
                          trials=4, strategy="evolutionary", progress=lines.append)
    names = [t[0] for t in s.tasks]
    wino = [n for n in names if "relu" in n]
    assert len(names) == 2 and len(wino) == 1
    assert s.search_skipped == wino                  # the Winograd kernel, by name
    assert handed == [n for n in names if n not in wino]
    assert any("search skips 1 kernel" in ln and wino[0] in ln for ln in lines)
    assert "1 kernel(s) left to the template search" in s.text()
    assert s.errors == []


def projection_and_expansion():
    """MobileNetV2's 14x14 pair: 64 -> 384 (expansion) and 384 -> 64 (projection, split-K)."""
    rng = np.random.default_rng(1)
    we = rng.standard_normal((384, 64, 1, 1)).astype("float32")
    wp = rng.standard_normal((64, 384, 1, 1)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 64, 14, 14), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.clip(bb.emit(relax.op.nn.conv2d(x, relax.const(we))), 0.0, 6.0))
            out = bb.emit_output(bb.emit(relax.op.nn.conv2d(y, relax.const(wp))))
        bb.emit_func_output(out)
    return bb.get()


def test_search_leaves_split_k_projections_to_the_template_search(tmp_path, monkeypatch):
    """Standalone measurements cannot see split-K's in-model gain: MetaSchedule must not
    replace it with a schedule that only wins alone."""
    from tvm.s_tir import meta_schedule as ms
    from nnef_tvm.targets import cpu
    handed = []

    def record(tasks, **kw):
        handed.extend(t.task_name for t in tasks)
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", record)
    monkeypatch.setattr(cpu, "default_thread_count", lambda: 2)     # split-K needs 2+ cores
    lines = []
    s = tuning.tune_model(None, "x86", store=TuningStore(tmp_path),
                          mod=projection_and_expansion(), trials=4, strategy="evolutionary",
                          progress=lines.append)
    names = [t[0] for t in s.tasks]
    proj = [n for n in names if "clip" not in n]
    assert len(names) == 2 and len(proj) == 1
    assert s.search_skipped == proj
    assert handed == [n for n in names if n not in proj]
    assert any("split for in-model data locality" in ln and proj[0] in ln for ln in lines)
