"""Template search: our rules' knob settings measured and stored as MetaSchedule records.

What must hold (and what each test checks):

* the default setting comes first and schedules exactly like an untuned
  compile; settings that schedule identically are measured once;
* a stored record replays (``MetaScheduleApplyDatabase``, as ``nnef-compile``
  applies it) to exactly the candidate's kernel, and the tuned build
  computes what numpy computes from the NNEF definitions (conv: cross
  correlation with zero padding; matmul);
* resume skips measured settings; ``trials`` caps the records per kernel;
  the time budget stops between batches.

Measurements here use a fake builder/runner (no processes: fast), with
made-up timings chosen so a *non-default* setting wins; real measurements
are in ``test_tuning_template_measure.py`` (slow).
"""
import json
import time

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

import tvm_ffi  # noqa: E402
from tvm import relax, tirx  # noqa: E402

from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.schedules import default as sched_default  # noqa: E402
from nnef_tvm.schedules import template_search as ts  # noqa: E402
from nnef_tvm.schedules.device_key import device_key  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402
from nnef_tvm.schedules.tuning import extract_tasks, fused_module, tuning_target  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402
from nnef_tvm.targets.pipeline import build_phases, run_phases  # noqa: E402


# ------------------------------------------------------------ models + numpy references
def conv_module(c=8, f=16, hw=10, groups=1):
    """conv2d (3x3, padding 1) + bias + relu, NCHW."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, hw, hw), "float32"))
    w = relax.Var("w", relax.TensorType((f, c // groups, 3, 3), "float32"))
    b = relax.Var("b", relax.TensorType((1, f, 1, 1), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, padding=1, groups=groups))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(y, b)))))
        bb.emit_func_output(out)
    return bb.get()


def const_conv_module(w, b):
    """conv2d + bias + relu with constant weights (packed by the rule: layout-free buffers)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, w.shape[1], 10, 10), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=1))
            y = bb.emit(relax.op.add(y, relax.const(b)))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    return bb.get()


def const_weights(seed=5, c=8, f=16):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((f, c, 3, 3)).astype("float32"),
            rng.standard_normal((1, f, 1, 1)).astype("float32"))


def matmul_module(m=8, k=32, n=16):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), "float32"))
    w = relax.Var("w", relax.TensorType((k, n), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(x, w)))
        bb.emit_func_output(out)
    return bb.get()


def conv_reference(x, w, b, groups=1):
    """NNEF conv with zero border, stride 1, padding 1: out[f,y,x] = sum w * padded in."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2, wd + 2), np.float64)
    xp[:, :, 1:-1, 1:-1] = x
    out = np.zeros((n, f, h, wd), np.float64)
    per = f // groups
    for o in range(f):
        g = o // per
        for i in range(cg):
            for dy in range(kh):
                for dx in range(kw):
                    out[:, o] += w[o, i, dy, dx] * xp[:, g * cg + i, dy:dy + h, dx:dx + wd]
    return np.maximum(out + b.reshape(1, f, 1, 1), 0)


@pytest.fixture(scope="module")
def x86():
    return get_target("x86")


def only_task(mod, target):
    tasks = extract_tasks(fused_module(mod, target), tuning_target(target))
    assert len(tasks) == 1
    return tasks[0]


def _strip(func):
    """A PrimFunc without its attributes (records and rules mark them differently)."""
    for name in list(func.attrs.keys()) if func.attrs is not None else []:
        func = func.without_attr(name)
    return func


def same_kernel(a, b) -> bool:
    return tvm_ffi.structural_equal(_strip(a), _strip(b))


# ------------------------------------------------------------ fake builder / runner
class _Built:
    def __init__(self, path):
        self.artifact_path, self.error_msg = path, None


class FakeBuilder:
    """Builds nothing; remembers the candidates it was handed."""

    def __init__(self):
        self.mods = []

    def build(self, inputs):
        out = []
        for b in inputs:
            self.mods.append(b.mod)
            out.append(_Built(f"candidate-{len(self.mods)}"))
        return out


class _Done:
    def __init__(self, secs):
        self.run_secs, self.error_msg = secs, None

    def result(self):
        return self


class FakeRunner:
    """Reports ``secs_of(n)`` for the n-th candidate it runs (1-based)."""

    def __init__(self, secs_of):
        self.secs_of, self.count, self.args = secs_of, 0, []

    def run(self, inputs):
        out = []
        for inp in inputs:
            self.args.append([list(a.shape) for a in inp.args_info])
            self.count += 1
            out.append(_Done([self.secs_of(self.count)]))
        return out


def fastest_last(n):
    """The later a candidate is measured, the faster (so a non-default setting wins)."""
    return 1e-3 / n


def search(tasks, store, key, x86, *, trials=64, runner=None, builder=None, deadline=None,
           progress=None):
    log = store.read(key)
    counts = log.trial_counts()
    for t in tasks:
        t.done_trials = counts.get(t.shash, 0)
    return ts.search(tasks, log, store.writer(key), schedule_target=x86.tvm(),
                     tvm_target=tuning_target(x86), builder=builder or FakeBuilder(),
                     runner=runner or FakeRunner(fastest_last), trials=trials,
                     deadline=deadline, progress=progress)


# ------------------------------------------------------------ candidates
def test_default_setting_first_and_identical_schedules_measured_once(x86):
    task = only_task(conv_module(), x86)
    func = task.extracted.dispatched[0]["main"]
    settings = ts.knob_settings(func, x86.tvm())
    assert settings[0] == {} and len(settings) > 2
    space = sched_default.knob_space(func, x86.tvm())
    assert all(s in settings for s in space)
    cands = list(ts.candidates(func, x86.tvm()))
    assert cands[0].setting == {} and cands[0].rule == "conv_channel_vector"
    assert len({c.key for c in cands}) == len(cands)          # distinct traces
    # knob_space's first entry is the default setting: same trace as {} -> measured once
    assert len(cands) < len(settings)
    # the default candidate is exactly what an untuned compile schedules
    untuned, rule = sched_default.schedule_cpu_func(func, x86.tvm())
    assert rule == cands[0].rule and same_kernel(untuned, cands[0].sch.mod["main"])
    # every other candidate really differs from it
    assert not any(same_kernel(untuned, c.sch.mod["main"]) for c in cands[1:])


def test_kernels_without_knobs_get_the_default_candidate_only(x86):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 64), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.softmax(x)))
        bb.emit_func_output(out)
    task = only_task(bb.get(), x86)
    cands = list(ts.candidates(task.extracted.dispatched[0]["main"], x86.tvm()))
    assert [c.setting for c in cands] == [{}]


# ------------------------------------------------------------ records replay exactly
def _apply_records(mod, x86, store):
    """The fused module after the schedule phase, with the store's best records applied."""
    from nnef_tvm.schedules.apply import tuning_for_compile
    tuning = tuning_for_compile(x86, store.root)
    phases = [p for p in build_phases(x86, database=tuning.database)
              if p.name in ("legalize", "fuse", "fuse_tir", "schedule")]
    return run_phases(mod, x86, phases)


@pytest.mark.parametrize("make, groups", [(conv_module, 1), (matmul_module, None)])
def test_best_record_replays_to_exactly_its_candidate(x86, tmp_path, make, groups):
    mod = make() if groups is None else make(groups=groups)
    task = only_task(mod, x86)
    store = TuningStore(tmp_path)
    key = device_key(x86)
    builder = FakeBuilder()
    res = search([task], store, key, x86, builder=builder)
    assert res.trials == len(builder.mods) >= 2
    # the last candidate measured got the best time: it is the one compile applies
    best_mod = builder.mods[-1]
    scheduled = _apply_records(mod, x86, store)
    kernels = [f for _, f in scheduled.functions.items() if isinstance(f, tirx.PrimFunc)]
    assert len(kernels) == 1
    assert same_kernel(kernels[0], best_mod["main"])
    assert not same_kernel(kernels[0], builder.mods[0]["main"])   # not the default one


def test_every_stored_record_replays_through_the_database(x86, tmp_path):
    from tvm.s_tir import meta_schedule as ms
    task = only_task(conv_module(), x86)
    wmod = task.extracted.dispatched[0]
    cands = list(ts.candidates(wmod["main"], x86.tvm()))[:4]
    for cand in cands:
        db = ms.database.MemoryDatabase()
        wl_json, rec_json = ts.record_json(cand.sch, wmod, [1e-4], tuning_target(x86))
        workload = db.commit_workload(wmod)
        # through JSON, as the store keeps it
        db.commit_tuning_record(ms.database.TuningRecord.from_json(
            json.loads(json.dumps(rec_json)), workload))
        sch = db.query_schedule(wmod, tuning_target(x86), "main")
        assert sch is not None and same_kernel(sch.mod["main"], cand.sch.mod["main"])


@pytest.mark.parametrize("groups, f", [(1, 16), (8, 8)])
def test_tuned_conv_matches_numpy(x86, tmp_path, groups, f):
    mod = conv_module(groups=groups, f=f)
    store = TuningStore(tmp_path)
    res = search([only_task(mod, x86)], store, device_key(x86), x86)
    assert res.trials >= 2
    lines = []
    compiled = compile_relax(mod, x86, tuning_dir=tmp_path, progress=lines.append)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 8, 10, 10)).astype("float32")
    w = rng.standard_normal((f, 8 // groups, 3, 3)).astype("float32")
    b = rng.standard_normal((1, f, 1, 1)).astype("float32")
    got = list(compiled.run({"x": x, "w": w, "b": b}).values())[0]
    np.testing.assert_allclose(got, conv_reference(x, w, b, groups), rtol=1e-4, atol=1e-4)


def test_constant_weights_are_measured_packed_and_compile_right(x86, tmp_path):
    w, b = const_weights()
    mod = const_conv_module(w, b)
    task = only_task(mod, x86)
    wfunc = task.extracted.dispatched[0]["main"]
    assert "layout_free_buffers" in wfunc.attrs
    runner = FakeRunner(fastest_last)
    res = search([task], TuningStore(tmp_path), device_key(x86), x86, runner=runner)
    assert res.trials >= 2
    # the built kernel takes the weight already packed: the runner allocates that shape
    from tvm.s_tir import meta_schedule as ms
    plain = [list(a.shape) for a in ms.arg_info.ArgInfo.from_prim_func(wfunc)]
    assert all(args != plain for args in runner.args)
    assert all(len(args[1]) > len(plain[1]) for args in runner.args)
    compiled = compile_relax(mod, x86, tuning_dir=tmp_path)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    x = np.random.default_rng(9).standard_normal((1, 8, 10, 10)).astype("float32")
    got = list(compiled.run({"x": x}).values())[0]
    np.testing.assert_allclose(got, conv_reference(x, w, b), rtol=1e-4, atol=1e-4)


def test_tuned_matmul_matches_numpy(x86, tmp_path):
    mod = matmul_module()
    store = TuningStore(tmp_path)
    search([only_task(mod, x86)], store, device_key(x86), x86)
    compiled = compile_relax(mod, x86, tuning_dir=tmp_path)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 32)).astype("float32")
    w = rng.standard_normal((32, 16)).astype("float32")
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ resume, caps, budget
def test_resume_skips_measured_settings(x86, tmp_path):
    task = only_task(conv_module(), x86)
    store = TuningStore(tmp_path)
    key = device_key(x86)
    first = FakeBuilder()
    res = search([task], store, key, x86, trials=3, builder=first)
    assert res.trials == 3 and len(store.read(key).records) == 3
    # trials 3 reached: nothing to do
    again = FakeBuilder()
    assert search([task], store, key, x86, trials=3, builder=again).trials == 0
    assert again.mods == []
    # a larger budget measures only the settings not measured yet
    more = FakeBuilder()
    res = search([task], store, key, x86, trials=64, builder=more)
    total = len(list(ts.candidates(task.extracted.dispatched[0]["main"], x86.tvm())))
    assert res.trials == total - 3 == len(more.mods)
    measured_before = {tvm_ffi.structural_hash(m["main"]) for m in first.mods}
    assert not measured_before & {tvm_ffi.structural_hash(m["main"]) for m in more.mods}
    log = store.read(key)
    assert len(log.records) == total
    assert len(ts.stored_trace_keys(log, task.shash)) == total


def test_failed_candidates_are_recorded_as_failures(x86, tmp_path):
    from nnef_tvm.schedules.store import mean_secs

    class Failing(FakeBuilder):
        def build(self, inputs):
            first = not self.mods
            out = super().build(inputs)
            if first:                    # only the very first candidate fails to build
                out[0].artifact_path, out[0].error_msg = None, "boom"
            return out
    task = only_task(matmul_module(), x86)
    store = TuningStore(tmp_path)
    key = device_key(x86)
    res = search([task], store, key, x86, trials=2, builder=Failing())
    assert res.trials == 2
    secs = [mean_secs(r) for _, r in store.read(key).records]
    assert secs[0] is None and secs[1] is not None      # failure kept (resume skips it)


def test_rounds_measure_every_task_default_first(x86, tmp_path):
    tasks = [only_task(conv_module(), x86), only_task(matmul_module(), x86)]
    store = TuningStore(tmp_path)
    builder = FakeBuilder()
    lines = []
    res = search(tasks, store, device_key(x86), x86, builder=builder, progress=lines.append)
    assert all(n >= 2 for n in res.measured) and not res.stopped_by_time
    # the first round (batch) holds the default setting of every task, in task order
    defaults = [sched_default.schedule_cpu_func(t.extracted.dispatched[0]["main"],
                                                x86.tvm())[0] for t in tasks]
    assert all(same_kernel(m["main"], d) for m, d in zip(builder.mods[:2], defaults))
    assert lines[0].startswith("template [") and "trials 0/" in lines[0]
    assert "tasks 2/2" in lines[-1] and f"trials {res.trials}/{res.trials}" in lines[-1]


def test_time_budget_stops_between_batches(x86, tmp_path, monkeypatch):
    tasks = [only_task(conv_module(), x86), only_task(matmul_module(), x86)]
    store = TuningStore(tmp_path)
    key = device_key(x86)
    checks = []

    def out_of_time(deadline):
        checks.append(deadline)
        return len(checks) > 1          # the budget runs out after the first batch
    monkeypatch.setattr(ts, "out_of_time", out_of_time)
    log = store.read(key)
    for t in tasks:
        t.done_trials = 0
    res = ts.search(tasks, log, store.writer(key), schedule_target=x86.tvm(),
                    tvm_target=tuning_target(x86), builder=FakeBuilder(),
                    runner=FakeRunner(fastest_last), trials=64, deadline=123.0, batch=1)
    assert res.stopped_by_time and res.measured == [1, 0]
    assert len(store.read(key).records) == 1
    # an already expired budget measures nothing
    monkeypatch.undo()
    res = search(tasks, TuningStore(tmp_path / "b"), key, x86, deadline=time.monotonic() - 1)
    assert res.trials == 0 and res.stopped_by_time
