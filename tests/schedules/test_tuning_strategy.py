"""``tune_model``'s strategies and trial accounting, and ``nnef-tune --strategy``.

The builder and runner are fakes (no processes) and MetaSchedule's search
phase is replaced by a recorder, so these tests check what is handed to
which phase: the template search first, the evolutionary search only with
the trials (and time) left, seeded by the template's stored records.
"""
import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.cli import tune as cli  # noqa: E402
from nnef_tvm.errors import NNEFError  # noqa: E402
from nnef_tvm.schedules import template_search as ts  # noqa: E402
from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402

from tuning_template_test import FakeBuilder, FakeRunner, conv_module, fastest_last  # noqa: E402,I100


@pytest.fixture
def fakes(monkeypatch):
    """Fake builder/runner; the MetaSchedule phase records its arguments."""
    state = {"builders": [], "search_calls": []}

    def make_builder(**kw):
        b = FakeBuilder()
        state["builders"].append((kw, b))
        return b

    def search_phase(todo, log, writer, tgt, ttarget, runner, **kw):
        state["search_calls"].append({"todo": todo, "log": log, **kw,
                                      "done": [t.done_trials for t in todo]})
        return [kw["trials"] - t.done_trials for t in todo], False

    monkeypatch.setattr(tuning, "make_builder", make_builder)
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(tuning, "_search_phase", search_phase)
    return state


def n_candidates():
    x86 = get_target("x86")
    task, = tuning.extract_tasks(tuning.fused_module(conv_module(), x86),
                                 tuning.tuning_target(x86))
    return len(list(ts.candidates(task.extracted.dispatched[0]["main"], x86.tvm())))


@pytest.fixture(scope="module")
def conv_candidates():
    return n_candidates()


def tune(store, **kw):
    # the in-model check (tuning_in_model_check_test.py) is a phase of its own: off here,
    # where the phases of the search strategies are counted
    kw.setdefault("in_model_check", False)
    return tuning.tune_model(None, "x86", store=store, mod=conv_module(), **kw)


def test_template_only_measures_knob_settings_up_to_trials(tmp_path, fakes):
    store = TuningStore(tmp_path)
    s = tune(store, trials=3, strategy="template")
    assert s.trials == s.template_trials == 3 and fakes["search_calls"] == []
    assert "(template 3, search 0)" in s.text()
    assert fakes["builders"][0][0]["workers"] == 0          # in-process by default
    assert sum(store.read(s.device_key).trial_counts().values()) == 3


def test_both_gives_the_search_what_is_left_seeded_by_the_store(tmp_path, fakes,
                                                                 conv_candidates):
    store = TuningStore(tmp_path)
    trials = conv_candidates + 5
    s = tune(store, trials=trials, strategy="both")
    assert s.template_trials == conv_candidates
    call, = fakes["search_calls"]
    assert call["done"] == [conv_candidates] and call["trials"] == trials
    assert call["strategy"] == "both"
    # the search's database is seeded from a log that holds the template records
    assert sum(call["log"].trial_counts().values()) == conv_candidates
    assert s.trials == trials and s.search_trials == 5
    assert set(s.phases) == {"template", "evolutionary"}
    assert "(template %d, evolutionary 5)" % conv_candidates in s.text()


def test_both_skips_the_search_when_templates_use_every_trial(tmp_path, fakes):
    s = tune(TuningStore(tmp_path), trials=2, strategy="both")
    assert s.template_trials == 2 and fakes["search_calls"] == []


def test_evolutionary_only_never_builds_templates(tmp_path, fakes):
    s = tune(TuningStore(tmp_path), trials=4, strategy="evolutionary")
    assert fakes["builders"] == [] and s.template_trials == 0
    call, = fakes["search_calls"]
    assert call["done"] == [0] and call["strategy"] == "evolutionary"


def test_resume_after_template_runs_only_the_rest(tmp_path, fakes, conv_candidates):
    store = TuningStore(tmp_path)
    tune(store, trials=conv_candidates, strategy="template")
    again = tune(store, trials=conv_candidates + 3, strategy="both")
    # every setting measured already: no template trials, the search gets 3
    assert again.template_trials == 0
    assert fakes["search_calls"][-1]["done"] == [conv_candidates]
    assert again.tasks[0][2] == conv_candidates


def test_time_budget_spent_in_templates_skips_the_search(tmp_path, fakes, monkeypatch):
    monkeypatch.setattr(ts, "out_of_time", lambda deadline: True)
    s = tune(TuningStore(tmp_path), trials=50, strategy="both", time_budget=5)
    assert s.stopped_by_time and s.trials == 0 and fakes["search_calls"] == []
    assert "(time budget reached)" in s.text()


def test_unknown_strategy_is_an_error(tmp_path):
    with pytest.raises(NNEFError, match="unknown tuning strategy 'greedy'"):
        tune(TuningStore(tmp_path), trials=1, strategy="greedy")


# ------------------------------------------------------------ CLI
def test_cli_passes_strategy_and_builder_workers(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_tune_model(model, target, **kw):
        seen.update(kw, model=model)
        return tuning.TuneSummary("box", str(tmp_path), [], 0, 0, 0.0, strategy=kw["strategy"])
    monkeypatch.setattr(tuning, "tune_model", fake_tune_model)
    code = cli.main(["m", "--tuning-dir", str(tmp_path), "--strategy", "template",
                     "--builder-workers", "0", "-q"])
    assert code == 0
    assert seen["strategy"] == "template" and seen["builder_workers"] == 0
    code = cli.main(["m", "--tuning-dir", str(tmp_path), "-q"])
    assert code == 0 and seen["strategy"] == "both" and seen["builder_workers"] is None
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["m", "--strategy", "greedy"], "invalid choice: 'greedy'"),
    (["m", "--builder-workers", "-1"], "--builder-workers must be >= 0"),
])
def test_cli_strategy_usage_errors(argv, message, capsys):
    code = cli.main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and message in err


def test_cli_help_explains_strategies(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for word in ("template", "evolutionary", "both", "--trials counts every measured trial"):
        assert word in out


def test_template_records_never_seed_the_search(tmp_path, fakes, conv_candidates):
    from nnef_tvm.schedules.tuning import _memory_database, is_search_trace
    store = TuningStore(tmp_path)
    s = tune(store, trials=conv_candidates, strategy="template")
    log = store.read(s.device_key)
    assert not any(is_search_trace(r) for _, r in log.records)
    task = type("T", (), {"shash": s.tasks[0][1]})()
    _, loaded = _memory_database([task], log, top_k=32)
    assert loaded == conv_candidates                   # compile still sees every record
    _, seeds = _memory_database([task], log, top_k=32, only=is_search_trace)
    assert seeds == 0
    sampled = [[["SamplePerfectTile", ["l0"], [2, 16], ["v1"]]], []]
    post = [[["GetSBlock", [], ["c", "main"], ["b0"]], ["EnterPostproc", [], [], []]], []]
    assert is_search_trace([sampled, [1e-6], {}, []]) and is_search_trace([post, [1e-6], {}, []])
    assert not is_search_trace(["garbage"])


def test_a_failing_search_keeps_the_template_results(tmp_path, fakes, monkeypatch,
                                                     conv_candidates):
    from tvm.s_tir import meta_schedule as ms

    def boom(**kw):
        raise RuntimeError("parallel_for_dynamic error with Check failed\nbacktrace")
    monkeypatch.undo()            # the real search phase (fixture undone), with a tuner that fails
    monkeypatch.setattr(tuning, "make_builder", lambda **kw: FakeBuilder())
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    monkeypatch.setattr(ms, "tune_tasks", boom)
    lines = []
    s = tune(TuningStore(tmp_path), trials=conv_candidates + 4, strategy="both",
             progress=lines.append)
    assert s.template_trials == conv_candidates and s.search_trials == 0
    assert s.errors == ["RuntimeError: parallel_for_dynamic error with Check failed"]
    assert "search stopped early" in s.text()
    assert any("search stopped by a TVM error" in ln for ln in lines)
    with pytest.raises(RuntimeError, match="parallel_for_dynamic"):
        tune(TuningStore(tmp_path / "e"), trials=2, strategy="evolutionary")
