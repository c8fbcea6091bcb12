"""nnef-tune's in-model selection: each kernel keeps the record fastest *in the model*, or its default.

The search itself is replaced by the fake builder/runner of the template-search
tests (records are written, nothing is timed); the in-model timers are replaced
by scripted ones, so each test decides what the model "measured" and checks
what follows from it: which record each workload keeps (by rank among its
standalone-fastest records), the decisions file, the summary, that compile
applies exactly the chosen record, and that the tuned build still computes
what numpy computes.
"""
import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.schedules import in_model_check as imc  # noqa: E402
from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.schedules.store import TuningStore, best_secs, record_digest  # noqa: E402

from schedules_kernels import conv3x3_relu_conv1x1  # noqa: E402,I100
from tuning_template_test import (FakeBuilder, FakeRunner, conv_reference,  # noqa: E402,I100
                                  fastest_last)

W1 = np.random.default_rng(3).standard_normal((16, 8, 3, 3)).astype("float32")
W2 = np.random.default_rng(4).standard_normal((8, 16, 1, 1)).astype("float32")


def two_convs():
    """relu(conv3x3(x, W1)) -> conv1x1(., W2): two kernels with knobs."""
    return conv3x3_relu_conv1x1((1, 8, 12, 12), W1, W2)


def two_convs_reference(x):
    y = conv_reference(x, W1, np.zeros(16))
    return np.einsum("of,nfhw->nohw", W2[:, :, 0, 0].astype(np.float64), y)


class Script:
    """Scripted in-model times: per kernel, its time in each selection build and in the check.

    ``ranks[k]``: kernel k's time in the rank-r builds relative to the default
    build (1.0); ``confirm[k]``: its time in the picks' build; ``whole``: the
    picks' build's whole-run time relative to the default's.
    """

    def __init__(self, ranks=None, confirm=None, whole=0.9):
        self.ranks, self.confirm, self.whole = ranks or {}, confirm or {}, whole
        self.names, self.calls = [], []

    def timer(self, vms, args, cycles):
        for vm, a in zip(vms, args):          # the builds are real: run each once
            vm["main"](*a)
        self.calls.append(len(vms))
        first = len(self.calls) == 1
        out = [{n: [1.0] * cycles for n in self.names}]
        for r in range(len(vms) - 1):
            out.append({n: [(self.ranks.get(n, [1.2] * 9)[r] if first
                             else self.confirm.get(n, 1.2))] * cycles for n in self.names})
        return out

    def whole_timer(self, vms, args, cycles):
        return [[1.0] * cycles, [self.whole] * cycles]


def _tune(tmp_path, monkeypatch, make_script, lines):
    """Tune two_convs (template search, 3 trials) with the in-model timers scripted."""
    from tvm.s_tir import meta_schedule as ms
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", lambda tasks, **kw: None)
    real_select = imc.select
    seen = {}

    def select(mod, tgt, folder, tasks, version, **kw):
        names = sorted(t.name for t in tasks)
        script = seen["script"] = make_script(names)
        script.names = names
        return real_select(mod, tgt, folder, tasks, version, timer=script.timer,
                           whole_timer=script.whole_timer, **kw)
    monkeypatch.setattr(imc, "select", select)
    store = TuningStore(tmp_path)
    s = tuning.tune_model(None, "x86", store=store, mod=two_convs(), trials=3,
                          strategy="template", progress=lines.append)
    return s, store, seen["script"]


def _ranked(store, s, kernel):
    """The kernel's stored records, fastest standalone first, distinct traces."""
    log = store.read(s.device_key)
    shash = dict((t[0], t[1]) for t in s.tasks)[kernel]
    return log, shash, [log.records[p][1] for p in imc.ranked_records(log, {shash})[shash]]


def test_each_kernel_keeps_the_candidate_fastest_in_the_model(tmp_path, monkeypatch):
    from nnef_tvm.compiler import compile_relax
    from nnef_tvm.schedules.apply import tuning_for_compile
    from nnef_tvm.targets import get_target
    lines = []
    # kernel a: the second-fastest standalone record is fastest in the model;
    # kernel b: every candidate is slower in the model than the default
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(
        ranks={names[0]: [1.1, 0.8, 0.9], names[1]: [1.3, 1.2, 1.05]},
        confirm={names[0]: 0.85}, whole=0.93), lines)
    a, b = script.names
    log, a_hash, a_recs = _ranked(store, s, a)
    assert len(a_recs) >= 2 and len(script.calls) == 2     # selection builds, then the check
    assert script.calls[0] == 1 + min(3, max(len(_ranked(store, s, k)[2]) for k in (a, b)))
    assert s.chosen == {a: pytest.approx(0.85)} and set(s.vetoed) == {b}
    assert s.in_model_ratio == pytest.approx(0.93)
    assert "in the model 1 kernel(s) use a tuned schedule, 1 keep the default" in s.text()
    assert any("in-model selection: 1 kernel(s) use a tuned schedule" in ln for ln in lines)
    folder = store.folder(s.device_key)
    data = json.loads((folder / imc.DECISIONS_FILE).read_text())
    assert data["choices"][a_hash]["record"] == record_digest(a_recs[1])
    assert data["choices"][a_hash]["rank"] == 1 and data["choices"][a_hash]["rules"] == \
        s.rules_version
    assert list(data["vetoes"]) == [dict((t[0], t[1]) for t in s.tasks)[b]]
    # compile applies exactly the chosen record (not the fastest standalone one)
    applied = tuning_for_compile(get_target("x86"), str(folder))
    assert applied.chosen == 1 and applied.vetoed == 1 and applied.records == 1
    assert "1 tuned workload(s) use the record chosen in the model" in applied.line()
    (rec,) = applied.database.get_all_tuning_records()
    assert min(float(v) for v in rec.run_secs) == pytest.approx(best_secs(a_recs[1]))
    assert best_secs(a_recs[1]) > best_secs(a_recs[0])
    compiled = compile_relax(two_convs(), "x86", tuning_dir=str(folder))
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    x = np.random.default_rng(9).standard_normal((1, 8, 12, 12)).astype("float32")
    got = list(compiled.run({"x": x}).values())[0]
    np.testing.assert_allclose(got, two_convs_reference(x), rtol=1e-4, atol=1e-3)


def test_a_pick_not_faster_in_the_check_keeps_its_default(tmp_path, monkeypatch):
    lines = []
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(
        ranks={names[0]: [0.8, 0.9, 0.9], names[1]: [0.7, 0.9, 0.9]},
        confirm={names[0]: 0.9, names[1]: 1.02}), lines)
    a, b = script.names
    assert set(s.chosen) == {a} and set(s.vetoed) == {b}
    # b's veto names the score that picked it (it lost only in the check)
    assert s.vetoed[b] == pytest.approx(0.7)


def test_a_tuned_build_slower_as_a_whole_keeps_every_default(tmp_path, monkeypatch):
    from nnef_tvm.schedules.apply import tuning_for_compile
    from nnef_tvm.targets import get_target
    lines = []
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(
        ranks={n: [0.8, 0.9, 0.9] for n in names}, confirm={n: 0.9 for n in names},
        whole=1.02), lines)
    assert s.chosen == {} and set(s.vetoed) == set(script.names)
    assert s.in_model_ratio == pytest.approx(1.02)
    assert tuning_for_compile(get_target("x86"), str(store.folder(s.device_key))) is None


def test_a_whole_run_ratio_within_its_noise_does_not_override_the_kernels(tmp_path,
                                                                         monkeypatch):
    lines = []
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(
        ranks={n: [0.8, 0.9, 0.9] for n in names}, confirm={n: 0.9 for n in names},
        whole=1.005), lines)
    assert set(s.chosen) == set(script.names) and s.vetoed == {}


def test_clearly_slower_needs_the_margin_and_two_standard_errors():
    assert not imc.clearly_slower(None, None)
    assert not imc.clearly_slower(1.009, 0.001)          # within the 1% margin
    assert imc.clearly_slower(1.011, 0.001)
    assert not imc.clearly_slower(1.03, 0.02)            # within two standard errors
    assert imc.clearly_slower(1.05, 0.02)
    rng = np.random.default_rng(0)
    den = list(1.0 + 0.1 * rng.random(400))
    num = [d * (1.0 + 0.05 * rng.standard_normal()) for d in den]
    se = imc.median_ratio_se(num, den)
    # sigma 0.05 over 400 runs: SE of the median about 1.2533 * 0.05 / 20
    assert se == pytest.approx(1.2533 * 0.05 / 20, rel=0.25)
    assert imc.median_ratio_se([1.0], [1.0]) is None


def test_no_check_build_when_no_candidate_wins(tmp_path, monkeypatch):
    lines = []
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(), lines)
    assert len(script.calls) == 1 and s.chosen == {} and s.in_model_ratio is None
    assert set(s.vetoed) == set(script.names)


def test_decisions_replace_each_other_per_workload_and_other_versions_are_ignored(tmp_path):
    imc.record_decisions(tmp_path, {"aaa": {"rules": "v1", "ratio": 1.1}})
    imc.record_decisions(tmp_path, {"bbb": {"rules": "v2", "ratio": 1.3}},
                         {"ccc": {"rules": "v2", "record": "d1", "ratio": 0.9}})
    assert set(imc.read_vetoes(tmp_path)) == {"aaa", "bbb"}          # merged, not replaced
    assert imc.vetoed_workloads(tmp_path, "v2") == {"bbb"}
    assert imc.chosen_records(tmp_path, "v2") == {"ccc": "d1"}
    assert imc.chosen_records(tmp_path, "v1") == {}
    # a later decision replaces the workload's earlier one, whichever kind
    imc.record_decisions(tmp_path, {"ccc": {"rules": "v2", "ratio": 1.2}},
                         {"bbb": {"rules": "v2", "record": "d2", "ratio": 0.8}})
    assert imc.vetoed_workloads(tmp_path, "v2") == {"ccc"}
    assert imc.chosen_records(tmp_path, "v2") == {"bbb": "d2"}
    # a session-5 file (vetoes only) still reads
    (tmp_path / imc.DECISIONS_FILE).write_text(json.dumps({"vetoes": {"x": {"rules": "v"}}}))
    assert imc.vetoed_workloads(tmp_path, "v") == {"x"} and imc.read_choices(tmp_path) == {}
    (tmp_path / imc.DECISIONS_FILE).write_text("{not json")
    assert imc.read_vetoes(tmp_path) == {} and imc.read_choices(tmp_path) == {}


def test_best_candidates_uses_paired_medians_and_only_scores_below_one():
    default = {"a": [1.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0], "c": [1.0, 1.0, 1.0]}
    per_rank = [{"a": [0.9, 0.9, 1.8], "b": [1.1] * 3, "c": [0.5] * 3},
                {"a": [0.8, 0.8, 1.6], "b": [1.0, 1.0, 1.0], "c": [0.1] * 3}]
    # c has one candidate only: rank 1 of the build is its default schedule, not a candidate
    got = imc.best_candidates(default, per_rank, {"a": 2, "b": 2, "c": 1})
    assert got == {"a": (1, pytest.approx(0.8)), "c": (0, pytest.approx(0.5))}
    assert imc.median_ratio([], [1.0]) is None


def test_ranked_records_fastest_first_one_per_trace_failures_left_out():
    from nnef_tvm.schedules.store import DeviceLog, Workload
    wl = Workload("h1", ["h1", "{}"])
    t1, t2, t3 = [["t1"]], [["t2"]], [["t3"]]
    recs = [(0, [t1, [3e-3]]), (0, [t2, [1e-3]]), (0, [t1, [2e-3]]), (0, [t3, [1e10]])]
    log = DeviceLog(workloads=[wl], records=recs)
    assert imc.ranked_records(log, {"h1"}) == {"h1": [1, 2]}
    assert imc.ranked_records(log, {"other"}) == {}


def test_a_chosen_record_missing_from_the_store_falls_back_to_all_records():
    from nnef_tvm.schedules.apply import _only_chosen
    from nnef_tvm.schedules.store import DeviceLog, Workload
    w1, w2 = Workload("h1", ["h1", "{}"]), Workload("h2", ["h2", "{}"])
    recs = [(0, [["a"], [1e-3]]), (0, [["b"], [2e-3]]), (1, [["c"], [1e-3]]),
            (1, [["d"], [2e-3]])]
    log = DeviceLog(workloads=[w1, w2], records=recs)
    kept, n = _only_chosen(log, {"h1": record_digest(recs[1][1]), "h2": "gone"})
    assert n == 1 and [r[1][0] for r in kept.records] == [["b"], ["c"], ["d"]]


def test_a_time_budget_keeps_time_for_the_selection(tmp_path, monkeypatch):
    """With --time-budget the default model is built first and the search ends earlier."""
    import time
    from tvm.s_tir import meta_schedule as ms
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", lambda tasks, **kw: None)
    monkeypatch.setattr(imc, "TIMING_SECS", 30.0)
    seen = {}
    real_phase, real_select = tuning._template_phase, imc.select

    def phase(*a, deadline, **kw):
        seen["left"] = deadline - time.monotonic()
        return real_phase(*a, deadline=deadline, **kw)

    def select(*a, default_vm=None, **kw):
        seen["prebuilt"] = default_vm is not None
        script = Script()
        script.names = sorted(t.name for t in a[3])
        return real_select(*a, default_vm=default_vm, timer=script.timer,
                           whole_timer=script.whole_timer, **kw)
    monkeypatch.setattr(tuning, "_template_phase", phase)
    monkeypatch.setattr(imc, "select", select)
    lines = []
    tuning.tune_model(None, "x86", store=TuningStore(tmp_path), mod=two_convs(), trials=3,
                      strategy="template", progress=lines.append, time_budget=100.0)
    assert seen["prebuilt"]
    # at least the 30 s of timing are kept from the 100 s budget, at most half of it
    assert 45.0 <= seen["left"] <= 70.0
    assert any("s of the time budget kept for it" in ln for ln in lines)


def test_records_without_decisions_are_selected_by_the_next_run(tmp_path, monkeypatch):
    """Tuned with --no-in-model-check, then tuned again with nothing left to measure."""
    from tvm.s_tir import meta_schedule as ms
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", lambda tasks, **kw: None)
    calls = []
    real_select = imc.select

    def select(*a, **kw):
        script = Script()
        script.names = sorted(t.name for t in a[3])
        calls.append(1)
        return real_select(*a, timer=script.timer, whole_timer=script.whole_timer, **kw)
    monkeypatch.setattr(imc, "select", select)
    store = TuningStore(tmp_path)

    def tune(**kw):
        return tuning.tune_model(None, "x86", store=store, mod=two_convs(), trials=3,
                                 strategy="template", **kw)
    first = tune(in_model_check=False)
    assert first.trials > 0 and not calls
    folder = store.folder(first.device_key)
    assert imc.undecided_workloads(folder, [_T(t[1]) for t in first.tasks],
                                   first.rules_version) == {t[1] for t in first.tasks}
    second = tune()
    assert second.trials == 0 and calls == [1] and set(second.vetoed) == \
        {t[0] for t in first.tasks}
    third = tune()                        # everything measured and decided: no selection
    assert third.trials == 0 and calls == [1]


class _T:
    def __init__(self, shash):
        self.shash = shash


@pytest.mark.parametrize("tuned_ms, vetoed", [(1.1, True), (1.02, False)])
def test_a_board_gets_a_whole_model_check(tmp_path, monkeypatch, tuned_ms, vetoed):
    """Over RPC (no per-kernel profiling there): the tuned build is vetoed as a whole."""
    from nnef_tvm.schedules.apply import tuning_for_compile
    from nnef_tvm.targets import get_target
    lines = []
    s, store, script = _tune(tmp_path, monkeypatch, lambda names: Script(), lines)
    folder = store.folder(s.device_key)
    (folder / imc.DECISIONS_FILE).unlink()           # as if tuned on a board: no selection
    seen = {}

    def timer(libs, compiled, tracker, key):
        seen["libs"] = sorted(libs)
        seen["args"] = (tracker, key)
        return {"default": [1.0, 1.0, 1.0], "tuned": [tuned_ms] * 3}
    tasks = [_Task(name, shash) for name, shash, *_ in s.tasks]
    got = imc.remote_guard(two_convs(), get_target("x86"), folder, tasks, s.rules_version,
                           tracker="h:1", key="board", progress=lines.append, timer=timer)
    assert seen == {"libs": ["default", "tuned"], "args": ("h:1", "board")}
    assert got.whole_ratio == pytest.approx(tuned_ms)
    assert bool(got.vetoed) == vetoed
    applied = tuning_for_compile(get_target("x86"), str(folder))
    if vetoed:
        assert set(got.vetoed) == set(script.names) and applied is None
        assert any("every kernel of this model keeps its default" in ln for ln in lines)
    else:
        assert applied.records == 2 and not (folder / imc.DECISIONS_FILE).exists()


class _Task:
    def __init__(self, name, shash):
        self.name, self.shash = name, shash
