"""nnef-tune's in-model check: tuned kernels slower *in the model* keep their default schedule.

The search itself is replaced by the fake builder/runner of the template-search
tests (records are written, nothing is timed); the in-model timer is replaced by
one that reports a chosen kernel as slower when tuned, so the test decides the
verdict and checks what follows from it: the veto file, the summary, and that
compile no longer applies the vetoed workload's records.
"""
import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from nnef_tvm.schedules import in_model_check as imc  # noqa: E402
from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402

from tuning_template_test import FakeBuilder, FakeRunner, fastest_last  # noqa: E402,I100


def two_convs():
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 8, 3, 3)).astype("float32")
    w2 = rng.standard_normal((8, 16, 1, 1)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 12, 12), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(x, relax.const(w1),
                                                                      padding=1))))
            out = bb.emit_output(bb.emit(relax.op.nn.conv2d(y, relax.const(w2))))
        bb.emit_func_output(out)
    return bb.get()


def _tune(tmp_path, monkeypatch, slow_kernel_pick, lines):
    from tvm.s_tir import meta_schedule as ms
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", lambda tasks, **kw: None)
    seen = {}

    def timer(vms, args, cycles):
        # every kernel runs once per build so the builds are real; the times are ours
        for vm, a in zip(vms, args):
            vm["main"](*a)
        names = sorted(seen["names"])
        slow = slow_kernel_pick(names)
        default = {n: [1.0] * cycles for n in names}
        tuned = {n: [1.2 if n == slow else 0.9] * cycles for n in names}
        seen["slow"] = slow
        return [default, tuned]
    monkeypatch.setattr(imc, "paired_kernel_times", timer)
    real_check = imc.check

    def check(mod, tgt, folder, tasks, version, **kw):
        seen["names"] = [t.name for t in tasks]
        return real_check(mod, tgt, folder, tasks, version, timer=timer, **kw)
    monkeypatch.setattr(imc, "check", check)
    store = TuningStore(tmp_path)
    s = tuning.tune_model(None, "x86", store=store, mod=two_convs(), trials=3,
                          strategy="template", progress=lines.append)
    return s, store, seen


def test_a_kernel_slower_in_the_model_keeps_its_default(tmp_path, monkeypatch):
    from nnef_tvm.schedules.apply import tuning_for_compile
    from nnef_tvm.targets import get_target
    lines = []
    s, store, seen = _tune(tmp_path, monkeypatch, lambda names: names[0], lines)
    slow = seen["slow"]
    assert list(s.vetoed) == [slow] and s.vetoed[slow] == pytest.approx(1.2)
    assert "1 kernel(s) keep the default schedule" in s.text()
    assert any("in-model check: 1 tuned kernel(s) ran slower" in ln and slow in ln
               for ln in lines)
    folder = store.folder(s.device_key)
    vetoes = json.loads((folder / imc.VETO_FILE).read_text())["vetoes"]
    shash = dict((t[0], t[1]) for t in s.tasks)[slow]
    assert list(vetoes) == [shash] and vetoes[shash]["rules"] == s.rules_version
    # compile applies the other kernel's records only
    applied = tuning_for_compile(get_target("x86"), str(folder))
    assert applied.vetoed == 1 and applied.records == 1
    assert "slower in the model than their default schedule are not applied" in applied.line()


def test_no_veto_when_every_tuned_kernel_is_faster(tmp_path, monkeypatch):
    from nnef_tvm.schedules.apply import tuning_for_compile
    from nnef_tvm.targets import get_target
    lines = []
    s, store, _ = _tune(tmp_path, monkeypatch, lambda names: None, lines)
    assert s.vetoed == {}
    assert any("every tuned kernel is at least as fast in the model" in ln for ln in lines)
    folder = store.folder(s.device_key)
    assert not (folder / imc.VETO_FILE).exists()
    assert tuning_for_compile(get_target("x86"), str(folder)).records == 2


def test_vetoes_of_other_rules_versions_are_ignored_and_bad_files_read_as_empty(tmp_path):
    imc.add_vetoes(tmp_path, {"aaa": {"rules": "v1", "ratio": 1.1}})
    imc.add_vetoes(tmp_path, {"bbb": {"rules": "v2", "ratio": 1.3}})
    assert set(imc.read_vetoes(tmp_path)) == {"aaa", "bbb"}          # merged, not replaced
    assert imc.vetoed_workloads(tmp_path, "v2") == {"bbb"}
    (tmp_path / imc.VETO_FILE).write_text("{not json")
    assert imc.read_vetoes(tmp_path) == {}


def test_slower_kernels_uses_paired_medians_and_the_margin():
    default = {"a": [1.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0], "c": [1.0]}
    tuned = {"a": [1.1, 1.1, 2.2], "b": [1.02, 1.0, 1.01], "d": [5.0]}
    assert imc.slower_kernels(default, tuned) == {"a": pytest.approx(1.1)}   # b within 3%
    assert imc.slower_kernels(default, tuned, margin=1.005) == {
        "a": pytest.approx(1.1), "b": pytest.approx(1.01)}
