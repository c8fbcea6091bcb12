"""Tuning records stay honest when the default schedule rules change; ranking by minimum.

What must hold (and what each test checks):

* the rules version is computed from the rule modules' code: stable across
  calls, different when a rule's code changes, not when only a comment or
  docstring does, and it covers every ``*_cpu.py`` rule module;
* records stamped with an older version are ignored when a template run
  measured that version's default (template AND search records of that
  version), reported at compile ("records predate the current default
  schedules"), and the kernel gets today's default schedule; current records
  are applied; search-only and unstamped records keep competing as before;
* resume re-measures the current default although an identical trace is
  stored under the old version;
* stamps survive export/import (JSON and archive) and the store stays a
  MetaSchedule JSONDatabase;
* every ranking uses the minimum repeat: a record with the lower minimum
  wins although its mean is higher.

Measurements are fakes (``tuning_template_test.FakeBuilder/FakeRunner``) with
made-up timings; the numeric checks compare compiled kernels with numpy.
"""
import tarfile
import textwrap

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import tirx  # noqa: E402

from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.schedules import apply as ap  # noqa: E402
from nnef_tvm.schedules import default as sched_default  # noqa: E402
from nnef_tvm.schedules import rules_version as rv  # noqa: E402
from nnef_tvm.schedules import template_search as ts  # noqa: E402
from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.schedules.device_key import device_key  # noqa: E402
from nnef_tvm.schedules.store import (RECORD_FILE, STAMP_FILE, WORKLOAD_FILE,  # noqa: E402
                                      DeviceLog, TuningStore, Workload, best_secs,
                                      record_digest)
from nnef_tvm.targets import get_target  # noqa: E402
from nnef_tvm.targets.pipeline import build_phases, run_phases  # noqa: E402

from tuning_template_test import (FakeBuilder, FakeRunner, conv_module,  # noqa: E402,I100
                                  fastest_last, matmul_module, only_task, same_kernel)

OLD = "0123456789ab"          # a rules version that is not the current one


@pytest.fixture(scope="module")
def x86():
    return get_target("x86")


def template_run(mod, store, x86, *, rules=None, trials=64, runner=None, builder=None):
    """A template search of ``mod``'s only kernel with fake measurements (resume as nnef-tune)."""
    task = only_task(mod, x86)
    key = device_key(x86)
    fresh = rv.classify(store.read(key))
    task.done_trials = fresh.log.trial_counts().get(task.shash, 0)
    return task, ts.search([task], fresh.log, store.writer(key), schedule_target=x86.tvm(),
                           tvm_target=tuning.tuning_target(x86),
                           builder=builder or FakeBuilder(),
                           runner=runner or FakeRunner(fastest_last), trials=trials, rules=rules)


def scheduled_kernel(mod, x86, store):
    """The only kernel of ``mod`` after the schedule phase, records applied as compile does."""
    applied = ap.tuning_for_compile(x86, store.root)
    phases = [p for p in build_phases(x86, database=applied.database)
              if p.name in ("legalize", "fuse", "fuse_tir", "schedule")]
    out = run_phases(mod, x86, phases)
    kernels = [f for _, f in out.functions.items() if isinstance(f, tirx.PrimFunc)]
    assert len(kernels) == 1
    return kernels[0]


def matmul_inputs(seed=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((8, 32)).astype("float32"),
            rng.standard_normal((32, 16)).astype("float32"))


# ------------------------------------------------------------ the version itself
def _write_module(folder, name, body, package="h_tv_rules"):
    """Write module ``<package>.<name>`` under ``folder`` (a package: dotted names are
    taken as absolute by ``rule_module_names``, bare ones as this package's; one
    package name per test, as the package stays imported)."""
    import importlib
    pkg = folder / package
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").touch()
    (pkg / f"{name}.py").write_text(textwrap.dedent(body))
    importlib.invalidate_caches()
    return f"{package}.{name}"


def test_version_is_stable_and_follows_the_code_not_the_comments(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "h_tv_rule_a", '''
        """Rule A."""
        def tile():
            """Docstring."""
            return 8  # comment
    ''')
    _write_module(tmp_path, "h_tv_rule_b", "LANES = 16\n")
    mods = ("h_tv_rules.h_tv_rule_a", "h_tv_rules.h_tv_rule_b")
    assert rv.rule_module_names(mods) == list(mods)
    first = rv.compute_rules_version(mods)
    assert first == rv.compute_rules_version(mods) and len(first) == rv.VERSION_CHARS
    int(first, 16)
    # comments, docstrings and formatting: same version
    _write_module(tmp_path, "h_tv_rule_a", '''
        """Rule A, better documented."""


        def tile():
            """Another docstring."""
            # a new comment
            return 8
    ''')
    assert rv.compute_rules_version(mods) == first
    # a change to what a rule does: new version
    _write_module(tmp_path, "h_tv_rule_a", '''
        def tile():
            return 16
    ''')
    changed = rv.compute_rules_version(mods)
    assert changed != first
    (tmp_path / "h_tv_rules" / "h_tv_rule_b.py").write_text("LANES = 8\n")
    assert rv.compute_rules_version(mods) not in (first, changed)
    # missing modules are skipped, not an error
    assert rv.compute_rules_version(mods + ("h_tv_rules.no_such_rule",)) == \
        rv.compute_rules_version(mods)


def test_rules_version_is_cached_per_module_list(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _write_module(tmp_path, "h_tv_rule_c", "X = 1\n", package="h_tv_rules_cached")
    current = rv.rules_version()
    assert current == rv.rules_version()
    # monkeypatching the source list gives another version (its own cache entry)
    monkeypatch.setattr(rv, "RULE_MODULES", rv.RULE_MODULES + (name,))
    with_c = rv.rules_version()
    assert with_c != current
    # the process keeps the version of the code it imported; a fresh computation sees edits
    (tmp_path / "h_tv_rules_cached" / "h_tv_rule_c.py").write_text("X = 2\n")
    assert rv.rules_version() == with_c
    assert rv.compute_rules_version() != with_c
    monkeypatch.undo()
    assert rv.rules_version() == current


def test_every_rule_module_is_covered():
    from pathlib import Path
    names = {n.rpartition(".")[2] for n in rv.rule_module_names()}
    here = Path(rv.__file__).parent
    cpu = {p.stem for p in here.glob("*_cpu.py")}
    assert {"default", "cpu_common", "conv_cpu", "generic_cpu", "prepack"} <= names
    assert cpu <= names and "conv_channel_cpu" in cpu
    assert "tuning" not in names and "store" not in names


# ------------------------------------------------------------ classify (synthetic)
def _rec(tag, secs):
    return [[[["Tag", [], [tag], []]], []], list(secs), {"kind": "llvm"}, []]


def _log(entries):
    """A DeviceLog from (workload hash, record tag, seconds, stamp or None) rows."""
    log = DeviceLog()
    index = {}
    for shash, tag, secs, stamp in entries:
        if shash not in index:
            index[shash] = len(log.workloads)
            log.workloads.append(Workload(shash, [shash, "AAAA"]))
        rec = _rec(tag, secs)
        log.records.append((index[shash], rec))
        if stamp is not None:
            log.stamps.setdefault((shash, record_digest(rec)), []).append(stamp)
    return log


def test_classify_drops_runs_against_other_rules():
    T, S = rv.TEMPLATE, rv.SEARCH
    log = _log([
        ("w1", "old-default", [1e-3], {"rules": OLD, "phase": T}),      # stale run ...
        ("w1", "old-search", [5e-4], {"rules": OLD, "phase": S}),       # ... and its search
        ("w2", "old-default", [1e-3], {"rules": OLD, "phase": T}),      # stale, then re-tuned
        ("w2", "new-default", [9e-4], {"rules": "cur", "phase": T}),
        ("w3", "search-only", [2e-4], {"rules": OLD, "phase": S}),      # never met a default
        ("w4", "unstamped", [3e-4], None),                              # before stamps
        ("w5", "cur-search", [3e-4], {"rules": "cur", "phase": S}),
        ("w5", "cur-default", [4e-4], {"rules": "cur", "phase": T}),
    ])
    fresh = rv.classify(log, "cur")
    assert fresh.version == "cur"
    assert fresh.stale == {0, 1, 2}
    assert fresh.stale_workloads == {"w1", "w2"} and fresh.defaulted == {"w1"}
    kept = [(log.workloads[i].shash, r[0][0][0][2][0]) for i, r in fresh.log.records]
    assert kept == [("w2", "new-default"), ("w3", "search-only"), ("w4", "unstamped"),
                    ("w5", "cur-search"), ("w5", "cur-default")]
    assert fresh.log.trial_counts() == {"w2": 1, "w3": 1, "w4": 1, "w5": 2}
    # the same log under the old version: the "cur" runs are the stale ones
    back = rv.classify(log, OLD)
    assert back.stale_workloads == {"w2", "w5"} and back.defaulted == {"w5"}
    # nothing stale: the very same log object comes back
    assert rv.classify(_log([("w", "x", [1.0], None)]), "cur").stale == set()


# ------------------------------------------------------------ stale records at compile time
def test_stale_records_are_ignored_reported_and_current_ones_applied(x86, tmp_path):
    mod = matmul_module()
    store = TuningStore(tmp_path)
    old_builder = FakeBuilder()
    template_run(mod, store, x86, rules=OLD, builder=old_builder)
    assert len(old_builder.mods) >= 2          # the fastest is a non-default setting
    task = only_task(mod, x86)
    default_kernel, _ = sched_default.schedule_cpu_func(task.extracted.dispatched[0]["main"],
                                                        x86.tvm())
    # compile: the old records are ignored, the current default is used and reported
    lines = []
    compiled = compile_relax(mod, x86, tuning_dir=store.root, progress=lines.append)
    meta = compiled.metadata["tuning"]
    assert meta["tuned_kernels"] == 0 and meta["default_kernels"] == 1
    assert meta["stale_kernels"] == 1 and meta["rules_version"] == rv.rules_version()
    assert meta["notice"] == ("1 kernels: records predate the current default schedules, "
                              "using defaults; re-run nnef-tune")
    said = "\n".join(lines)
    assert ("1 kernels: records predate the current default schedules, using defaults; "
            "re-run nnef-tune") in said
    kernel = scheduled_kernel(mod, x86, store)
    assert same_kernel(kernel, default_kernel)
    assert not same_kernel(kernel, old_builder.mods[-1]["main"])
    x, w = matmul_inputs()
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    # re-tuning with today's rules re-measures the default first (its trace is stored
    # under the old version, which must not block it), then the records apply again
    new_builder = FakeBuilder()
    _, res = template_run(mod, store, x86, builder=new_builder)
    assert res.trials == len(old_builder.mods) == len(new_builder.mods)
    assert same_kernel(new_builder.mods[0]["main"], default_kernel)
    lines = []
    compiled = compile_relax(mod, x86, tuning_dir=store.root, progress=lines.append)
    meta = compiled.metadata["tuning"]
    assert meta["tuned_kernels"] == 1 and meta["stale_kernels"] == 0 and meta["notice"] is None
    assert "predate" not in "\n".join(lines)
    assert same_kernel(scheduled_kernel(mod, x86, store), new_builder.mods[-1]["main"])
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def _hand_record(task, x86, factor, secs, store, stamp):
    """Store a split+parallel schedule of the matmul kernel (a stand-in search record)."""
    from tvm.s_tir import meta_schedule as ms
    wmod = task.extracted.dispatched[0]
    sch = tvm.s_tir.Schedule(wmod)
    i = sch.get_loops(sch.get_sblock("matmul"))[0]
    io, _ = sch.split(i, [None, factor])
    sch.parallel(io)
    wl = ms.database.Workload(wmod)
    rec = ms.database.TuningRecord(sch.trace, wl, list(secs), tuning.tuning_target(x86),
                                   ms.arg_info.ArgInfo.from_prim_func(wmod["main"]))
    store.writer(device_key(x86)).append(tuning._plain(wl.as_json()),
                                         tuning.record_to_json(rec), stamp)
    return sch


def test_search_records_follow_their_run(x86, tmp_path):
    mod = matmul_module()
    task = only_task(mod, x86)
    # a search record measured in the old template run's version: ignored with it
    stale = TuningStore(tmp_path / "stale")
    template_run(mod, stale, x86, rules=OLD)
    _hand_record(task, x86, 2, [1e-9], stale, rv.stamp(rv.SEARCH, OLD))
    applied = ap.tuning_for_compile(x86, stale.root)
    assert applied.records == 0 and applied.stale_workloads == 1
    assert applied.count(tuning.fused_module(mod, x86), x86) == (0, 1)
    assert applied.stale == 1 and "predate" in applied.line()
    # search only (no template run) under old rules: applied as before
    only = TuningStore(tmp_path / "only")
    sch = _hand_record(task, x86, 4, [1e-9], only, rv.stamp(rv.SEARCH, OLD))
    applied = ap.tuning_for_compile(x86, only.root)
    assert applied.count(tuning.fused_module(mod, x86), x86) == (1, 1) and applied.stale == 0
    assert applied.stale_line() is None and "predate" not in applied.line()
    assert same_kernel(scheduled_kernel(mod, x86, only), sch.mod["main"])


def test_nnef_compile_prints_the_stale_notice(x86, tmp_path, capsys):
    import nnef_tvm
    from nnef_tvm.cli.compile import main
    from nnef_tvm.compiler import _convert
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "graph.nnef").write_text(
        "version 1.0;\ngraph g( x, w ) -> ( y )\n{\n"
        "    x = external(shape = [8, 32]);\n    w = external(shape = [32, 16]);\n"
        "    y = matmul(x, w);\n}\n")
    try:
        mod = _convert(nnef_tvm.load(str(folder)), None)
    except Exception as e:  # noqa: BLE001 - the reader is another helper's area
        pytest.skip(f"NNEF reader not usable here: {e}")
    store = TuningStore(tmp_path / "store")
    template_run(mod, store, x86, rules=OLD)
    code = main([str(folder), "-q", "-o", str(tmp_path / "m.so"), "--tuning-dir",
                 str(store.root)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert ("tuning: 1 kernels: records predate the current default schedules, using "
            "defaults; re-run nnef-tune") in out
    template_run(mod, store, x86)
    code = main([str(folder), "-q", "-o", str(tmp_path / "m.so"), "--tuning-dir",
                 str(store.root)])
    out, err = capsys.readouterr()
    assert code == 0 and "predate" not in out


# ------------------------------------------------------------ nnef-tune resume / report
@pytest.fixture
def fakes(monkeypatch):
    builders = []

    def make_builder(**kw):
        builders.append(FakeBuilder())
        return builders[-1]
    monkeypatch.setattr(tuning, "make_builder", make_builder)
    monkeypatch.setattr(tuning, "make_runner", lambda **kw: FakeRunner(fastest_last))
    return builders


def test_tune_model_re_measures_stale_workloads(x86, tmp_path, fakes):
    store = TuningStore(tmp_path)
    first = tuning.tune_model(None, "x86", store=store, mod=conv_module(), trials=3,
                              strategy="template")
    assert first.stale == 0 and first.template_trials == 3
    assert first.rules_version == rv.rules_version()
    log = store.read(first.device_key)
    stamps = [log.stamp_at(i) for i in range(len(log.records))]
    assert {s["rules"] for s in stamps} == {rv.rules_version()}
    assert {s["phase"] for s in stamps} == {rv.TEMPLATE}
    # same rules: resume has nothing to do
    again = tuning.tune_model(None, "x86", store=store, mod=conv_module(), trials=3,
                              strategy="template")
    assert again.trials == 0 and again.skipped == 1
    # the rules change: the 3 stored trials no longer count, the default is measured again
    said = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(rv._cache, tuple(rv.RULE_MODULES), "feedfacecafe")
        later = tuning.tune_model(None, "x86", store=store, mod=conv_module(), trials=3,
                                  strategy="template", progress=said.append)
    assert later.stale == 1 and later.skipped == 0 and later.template_trials == 3
    assert later.tasks[0][2] == 0                       # trials before: stale ones not counted
    assert "1 with records that predate the current default schedules" in later.text()
    assert any("predate the current default schedules" in s for s in said)
    task = only_task(conv_module(), x86)
    default_kernel, _ = sched_default.schedule_cpu_func(task.extracted.dispatched[0]["main"],
                                                        x86.tvm())
    assert same_kernel(fakes[-1].mods[0]["main"], default_kernel)
    assert len(store.read(first.device_key).records) == 6


def test_tune_list_reports_stale_trials(x86, tmp_path, capsys):
    from nnef_tvm.cli import tune as cli
    store = TuningStore(tmp_path)
    template_run(matmul_module(), store, x86, rules=OLD, trials=2)
    code = cli.main(["--list", "--tuning-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert ("2 trials (2 trials of 1 workloads predate the current default schedules: "
            "ignored; 1 workloads need re-tuning)") in out
    template_run(matmul_module(), store, x86, trials=1)       # re-tuned: nothing owed
    code = cli.main(["--list", "--tuning-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "3 trials (2 trials of 1 workloads predate" in out
    assert "re-tuning" not in out
    assert "unstamped" not in out
    TuningStore(tmp_path).writer(device_key(x86)).append(["w", "AAAA"], _rec("x", [1.0]))
    code = cli.main(["--list", "--tuning-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "(1 trials unstamped: from before rules versioning" in out


# ------------------------------------------------------------ export / import
@pytest.mark.parametrize("name", ["log.json", "log.tgz"])
def test_export_import_keeps_the_stamps(x86, tmp_path, name):
    src = TuningStore(tmp_path / "a")
    template_run(matmul_module(), src, x86, rules=OLD, trials=2)
    key = device_key(x86)
    # an unstamped record too (written by other tools): stays unstamped
    src.writer(key).append(*_unstamped(src, key))
    f = tmp_path / name
    assert src.export(key, f) == 3
    if name.endswith("tgz"):
        with tarfile.open(f) as tar:
            assert f"{key}/{STAMP_FILE}" in tar.getnames()
    dst = TuningStore(tmp_path / "b")
    assert dst.import_(f) == {key: 3}
    a, b = src.read(key), dst.read(key)
    assert b.stamps == a.stamps and len(b.stamps) == 2
    assert rv.classify(b).stale == rv.classify(a).stale == {0, 1}
    # the unstamped record is the one compile uses (the stale ones are ignored)
    applied = ap.tuning_for_compile(x86, dst.root)
    assert applied.records == 1 and applied.stale_workloads == 0
    assert [float(s) for s in applied.database.get_all_tuning_records()[0].run_secs] == [7e-3]
    # a local unstamped copy of the same records gets the stamps on import
    bare = TuningStore(tmp_path / "c")
    w = bare.writer(key)
    for i, rec in a.records:
        w.append(a.workloads[i].json, rec)
    assert bare.read(key).stamps == {}
    assert bare.import_(f) == {key: 0}
    assert bare.read(key).stamps == a.stamps


def _unstamped(store, key):
    log = store.read(key)
    i, rec = log.records[0]
    other = list(rec)
    other[1] = [7e-3]
    return log.workloads[i].json, other


def test_store_stays_a_metaschedule_json_database(x86, tmp_path):
    from tvm.s_tir import meta_schedule as ms
    store = TuningStore(tmp_path)
    template_run(matmul_module(), store, x86, trials=3)
    folder = store.folder(device_key(x86))
    assert (folder / STAMP_FILE).is_file()
    db = ms.database.JSONDatabase(path_workload=str(folder / WORKLOAD_FILE),
                                  path_tuning_record=str(folder / RECORD_FILE))
    assert len(db.get_all_tuning_records()) == 3


# ------------------------------------------------------------ ranking by the minimum
# A: one fast repeat and one disturbed one (min 1.0 ms, mean 2.0 ms)
# B: steady (min 1.5 ms, mean 1.5 ms)
A_SECS, B_SECS = [1.0e-3, 1.0e-3, 4.0e-3], [1.5e-3, 1.5e-3, 1.5e-3]


def test_best_secs_is_the_minimum_and_failures_never_rank():
    assert best_secs([None, A_SECS]) == 1.0e-3 and best_secs([None, B_SECS]) == 1.5e-3
    assert best_secs([None, [1e10]]) is None and best_secs([None, []]) is None
    assert best_secs([None, [2e-6, 1e10]]) is None          # a failed repeat fails the trial
    log = _log([("w", "a", A_SECS, None), ("w", "b", B_SECS, None)])
    secs, rec = log.best()["w"]
    assert secs == 1.0e-3 and rec[1] == A_SECS


def test_compile_and_the_search_database_pick_the_lower_minimum(x86, tmp_path):
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    mod = matmul_module()
    task = only_task(mod, x86)
    store = TuningStore(tmp_path)
    sch_b = _hand_record(task, x86, 2, B_SECS, store, None)
    sch_a = _hand_record(task, x86, 4, A_SECS, store, None)
    assert sum(A_SECS) / 3 > sum(B_SECS) / 3
    applied = ap.tuning_for_compile(x86, store.root)
    fused = tuning.fused_module(mod, x86)
    (gv, func), = [(g, f) for g, f in fused.functions.items() if isinstance(f, tirx.PrimFunc)]
    rec = applied.database.query_tuning_record(_normalize_mod(func), x86.tvm(), gv.name_hint)
    assert [float(s) for s in rec.run_secs] == A_SECS
    assert same_kernel(scheduled_kernel(mod, x86, store), sch_a.mod["main"])
    # the evolutionary search's database ranks its measured population the same way
    log = store.read(device_key(x86))
    inner, loaded = tuning._memory_database([task], log, top_k=32)
    assert loaded == 2
    db = tuning._recording_database(inner, store.writer(device_key(x86)))
    workload = db.commit_workload(task.extracted.dispatched[0])
    top = db.get_top_k(workload, 2)
    assert [[float(s) for s in r.run_secs] for r in top] == [A_SECS, B_SECS]
    assert len(db.get_top_k(workload, 1)) == 1
    assert not same_kernel(sch_a.mod["main"], sch_b.mod["main"])
    # a record the search commits is stored with the run's stamp
    db2 = tuning._recording_database(ms.database.MemoryDatabase(), store.writer("other"),
                                     rv.stamp(rv.SEARCH, "v-test"))
    wl = db2.commit_workload(task.extracted.dispatched[0])
    db2.commit_tuning_record(ms.database.TuningRecord(
        sch_a.trace, wl, [2e-3], tuning.tuning_target(x86),
        ms.arg_info.ArgInfo.from_prim_func(task.extracted.dispatched[0]["main"])))
    other = store.read("other")
    assert list(other.stamps.values()) == [[{"rules": "v-test", "phase": rv.SEARCH}]]


def test_template_search_and_progress_rank_by_minimum(x86, tmp_path):
    # candidate 1 (the default): min 1.0 ms, mean 2.0 ms; candidate 2: steady 1.5 ms
    secs = {1: A_SECS, 2: B_SECS}

    class Runner(FakeRunner):
        def run(self, inputs):
            out = super().run(inputs)
            for k, o in enumerate(out, self.count - len(out) + 1):
                o.run_secs = secs.get(k, [9e-3])
            return out
    store = TuningStore(tmp_path)
    builder = FakeBuilder()
    _, res = template_run(conv_module(), store, x86, trials=2, runner=Runner(fastest_last),
                          builder=builder)
    assert res.trials == 2 and res.best == [1.0e-3]
    assert res.labels[0].endswith("(default)")
    best_secs_, rec = store.read(device_key(x86)).best()[only_task(conv_module(), x86).shash]
    assert best_secs_ == 1.0e-3 and rec[1] == A_SECS
    p = tuning._Progress(["t"], [4], None, None)

    class R:
        def __init__(self, s):
            self.run_secs, self.error_msg = s, None

    class Sched:
        tasks_ = [type("T", (), {"is_terminated": False})()]

        def terminate_task(self, i):
            self.tasks_[i].is_terminated = True
    p.measured(Sched(), 0, [R(B_SECS), R(A_SECS)])
    assert p.best == [1.0e-3]


def test_identical_records_keep_their_own_stamps(tmp_path):
    # the same trace failing under the old and the new rules: byte-identical records
    store = TuningStore(tmp_path / "a")
    w = store.writer("d")
    failed = _rec("same", [1e10])
    w.append(["w", "AAAA"], failed, {"rules": OLD, "phase": rv.TEMPLATE})
    w.append(["w", "AAAA"], failed, {"rules": "cur", "phase": rv.TEMPLATE})
    w.append(["w", "AAAA"], _rec("other", [1e-3]), None)
    log = store.read("d")
    assert [log.stamp_at(i) and log.stamp_at(i)["rules"] for i in range(3)] == [OLD, "cur", None]
    fresh = rv.classify(log, "cur")
    assert fresh.stale == {0} and fresh.defaulted == set()
    assert fresh.log.trial_counts() == {"w": 2}
    assert [fresh.log.stamp_at(i) for i in range(2)] == [log.stamp_at(1), None]
    # export/import keeps both copies, each with its stamp; re-import adds nothing
    f = tmp_path / "d.json"
    assert store.export("d", f) == 3
    dst = TuningStore(tmp_path / "b")
    assert dst.import_(f) == {"d": 3} and dst.import_(f) == {"d": 0}
    back = dst.read("d")
    assert [back.stamp_at(i) for i in range(3)] == [log.stamp_at(i) for i in range(3)]


@pytest.mark.slow
def test_real_template_run_is_stamped_and_applied(x86, tmp_path):
    """One real (tiny) template run: LocalRunner timings, stamped, applied, numerically right."""
    store = TuningStore(tmp_path)
    s = tuning.tune_model(None, "x86", store=store, mod=matmul_module(), trials=2,
                          strategy="template")
    assert s.template_trials == 2 and s.rules_version == rv.rules_version()
    log = store.read(s.device_key)
    assert [log.stamp_at(i) for i in range(2)] == [rv.stamp(rv.TEMPLATE)] * 2
    assert all(len(r[1]) == 3 and best_secs(r) is not None for _, r in log.records)
    compiled = compile_relax(matmul_module(), x86, tuning_dir=store.root)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    assert compiled.metadata["tuning"]["stale_kernels"] == 0
    x, w = matmul_inputs(5)
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def test_unreadable_stamp_lines_are_skipped_with_a_warning(tmp_path):
    from nnef_tvm.schedules.store import StoreWarning
    store = TuningStore(tmp_path)
    w = store.writer("d")
    w.append(["w", "AAAA"], _rec("a", [1e-3]), {"rules": OLD, "phase": rv.TEMPLATE})
    w.append(["w", "AAAA"], _rec("b", [2e-3]), {"rules": OLD, "phase": rv.TEMPLATE})
    path = tmp_path / "d" / STAMP_FILE
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + '{"workload": "w", "record": 5}\n' + lines[1][:20])
    with pytest.warns(StoreWarning, match=r"nnef_tvm_record_stamps.json: skipped 2 unreadable"):
        log = store.read("d")
    assert log.stamp_at(0)["rules"] == OLD and log.stamp_at(1) is None
    fresh = rv.classify(log, "cur")
    assert fresh.stale == {0} and fresh.log.trial_counts() == {"w": 1}
