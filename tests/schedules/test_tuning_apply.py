"""Tuned records reach compiled code: device keys, record lookup, resume bookkeeping.

The records here are made by hand (a split + parallel schedule of the fused
matmul, written to the store exactly as tuning writes them), so these tests
need no measurement processes; real MetaSchedule tuning is in
``test_tuning_measure.py`` (slow). Numbers are checked against numpy.
"""
import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax, tirx  # noqa: E402

from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.errors import NNEFError  # noqa: E402
from nnef_tvm.schedules import apply as ap  # noqa: E402
from nnef_tvm.schedules import device_key as dk  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402
from nnef_tvm.schedules.tuning import (_plain, extract_tasks, fused_module,  # noqa: E402
                                       tune_model, tuning_target)
from nnef_tvm.targets import get_target  # noqa: E402


def matmul_relu_module(m=8, k=32, n=16):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), "float32"))
    w = relax.Var("w", relax.TensorType((k, n), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            z = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(z)
        bb.emit_func_output(out)
    return bb.get()


def hand_records(mod, target, secs=(3e-6, 1e-6)):
    """(workload json, record json) pairs: a split+parallel schedule of each matmul kernel."""
    from tvm.s_tir import meta_schedule as ms
    out = []
    ttarget = tuning_target(target)
    for task in extract_tasks(fused_module(mod, target), ttarget):
        wmod = task.extracted.dispatched[0]
        for factor, s in zip((4, 2), secs):
            sch = tvm.s_tir.Schedule(wmod)
            blk = sch.get_sblock("matmul")
            i, _, _ = sch.get_loops(blk)
            io, _ = sch.split(i, [None, factor])
            sch.parallel(io)
            wl = ms.database.Workload(wmod)
            args = ms.arg_info.ArgInfo.from_prim_func(wmod["main"])
            rec = ms.database.TuningRecord(sch.trace, wl, [s], ttarget, args)
            out.append((_plain(wl.as_json()), _plain(rec.as_json())))
    return out


@pytest.fixture(scope="module")
def x86():
    return get_target("x86")


@pytest.fixture(scope="module")
def records(x86):
    return hand_records(matmul_relu_module(), x86)


@pytest.fixture
def store(tmp_path, x86, records):
    s = TuningStore(tmp_path / "store")
    w = s.writer(dk.device_key(x86))
    for wl, rec in records:
        w.append(wl, rec)
    return s


def run(compiled, x, w):
    return compiled.run({"x": x, "w": w})


def test_compile_applies_records_and_stays_correct(store, x86, tmp_path):
    lines = []
    mod = matmul_relu_module()
    tuned = compile_relax(mod, x86, tuning_dir=store.root, progress=lines.append)
    assert tuned.metadata["tuning"]["tuned_kernels"] == 1
    assert tuned.metadata["tuning"]["default_kernels"] == 0
    assert "tuning: 1 of 1 kernels use tuned schedules, 0 default" in "\n".join(lines)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32)).astype("float32")
    w = rng.standard_normal((32, 16)).astype("float32")
    want = np.maximum(x.astype(np.float64) @ w, 0)
    got = list(run(tuned, x, w).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the untuned build computes the same thing and reports no tuning
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = compile_relax(mod, x86, tuning_dir=empty)
    assert "tuning" not in plain.metadata
    np.testing.assert_allclose(list(run(plain, x, w).values())[0], got, rtol=1e-5, atol=1e-5)


def test_best_record_is_the_one_applied(store, x86, records):
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    tuning = ap.tuning_for_compile(x86, store.root)
    assert tuning is not None and tuning.records == 1          # top-1 per workload
    fused = fused_module(matmul_relu_module(), x86)
    assert tuning.count(fused, x86) == (1, 1)
    (gv, func), = [(g, f) for g, f in fused.functions.items() if isinstance(f, tirx.PrimFunc)]
    rec = tuning.database.query_tuning_record(_normalize_mod(func), x86.tvm(), gv.name_hint)
    assert [float(s) for s in rec.run_secs] == [1e-6]             # the faster of the two
    assert "factors=[None, 2]" in str(rec.trace)


def test_other_shapes_keep_default_schedules(store, x86):
    tuning = ap.tuning_for_compile(x86, store.root)
    other = fused_module(matmul_relu_module(m=4), x86)
    assert tuning.count(other, x86) == (0, 1)
    assert "0 of 1 kernels use tuned schedules, 1 default" in tuning.line()


def test_tuning_dir_may_be_a_device_folder(store, x86):
    folder = store.folder(dk.device_key(x86))
    tuning = ap.tuning_for_compile(x86, folder)
    assert tuning is not None and tuning.folder == str(folder)


def test_default_store_is_used_without_tuning_dir(store, x86, monkeypatch):
    monkeypatch.setenv("NNEF_TVM_TUNING_DIR", str(store.root))
    assert ap.tuning_for_compile(x86) is not None
    monkeypatch.setenv("NNEF_TVM_NO_TUNING", "1")
    assert ap.tuning_for_compile(x86) is None
    assert ap.tuning_for_compile(x86, store.root) is not None      # explicit dir still wins


def test_missing_tuning_dir_and_other_device(tmp_path, x86, store):
    with pytest.raises(NNEFError, match="tuning directory not found"):
        ap.tuning_for_compile(x86, tmp_path / "nope")
    said = []
    assert ap.tuning_for_compile(x86, store.root, progress=said.append,
                                 device_key_override="another-box") is None
    assert "no records for device another-box" in said[0]


def test_resume_skips_workloads_with_enough_trials(store, x86):
    said = []
    summary = tune_model(None, x86, trials=2, store=store, mod=matmul_relu_module(),
                         progress=said.append)
    assert summary.skipped == 1 and summary.trials == 0
    assert [row[2] for row in summary.tasks] == [2]
    assert "1 already tuned" in summary.text()
    assert store.read(summary.device_key).trial_counts() == {summary.tasks[0][1]: 2}


def test_tune_model_argument_errors(store, x86):
    with pytest.raises(NNEFError, match="--trials must be >= 1"):
        tune_model(None, x86, trials=0, store=store, mod=matmul_relu_module())
    with pytest.raises(NNEFError, match="--time-budget must be > 0"):
        tune_model(None, x86, trials=1, time_budget=0, store=store, mod=matmul_relu_module())


def test_identical_workloads_share_one_entry(x86):
    # the same matmul+relu in two "models" hashes to the same workload
    a = extract_tasks(fused_module(matmul_relu_module(), x86), tuning_target(x86))
    b = extract_tasks(fused_module(matmul_relu_module(), x86), tuning_target(x86))
    c = extract_tasks(fused_module(matmul_relu_module(n=8), x86), tuning_target(x86))
    assert [t.shash for t in a] == [t.shash for t in b]
    assert a[0].shash != c[0].shash


# ------------------------------------------------------------ device keys
def test_device_key_of_local_cpu(x86, monkeypatch):
    monkeypatch.setattr(dk, "cpu_model", lambda: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
    key = dk.device_key(x86)
    assert key.startswith("llvm-intel-r-xeon-r-gold-6338-cpu-2.00ghz")
    mcpu = x86.tvm_target.get("mcpu")
    if mcpu:
        assert key.endswith("-" + mcpu.lower())


def test_device_key_of_boards_gpus_and_overrides(monkeypatch):
    assert dk.device_key(get_target("rpi4")) in ("llvm-cortex-a72",) or \
        get_target("rpi4").runs_locally
    assert dk.device_key(get_target("armv7")) == "llvm-armv7a-linux-gnueabihf"
    monkeypatch.setattr(dk, "gpu_name", lambda: "NVIDIA A100-SXM4-40GB")
    assert dk.device_key(get_target("cuda", arch="sm_80")) == "cuda-nvidia-a100-sxm4-40gb-sm_80"
    assert dk.device_key(get_target("x86"), override="My Board #2") == "my-board-2"


def test_cpu_model_reads_proc_cpuinfo():
    name = dk.cpu_model()
    assert isinstance(name, str) and name
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return
    if "model name" in text:
        assert name in text


# ------------------------------------------------------------ progress / time budget
class _Result:
    def __init__(self, secs, error=None):
        self.run_secs, self.error_msg = secs, error


class _Record:
    def __init__(self):
        self.is_terminated = False


class _Scheduler:
    def __init__(self, n):
        self.tasks_ = [_Record() for _ in range(n)]
        self.terminated = []

    def terminate_task(self, i):
        self.tasks_[i].is_terminated = True
        self.terminated.append(i)


def test_progress_line_counts_trials_best_latency_and_eta():
    from nnef_tvm.schedules.tuning import _Progress
    said = []
    p = _Progress(["a", "b"], [4, 8], None, said.append)
    sched = _Scheduler(2)
    p.measured(sched, 0, [_Result([2e-6, 4e-6]), _Result(None, "build failed"),
                          _Result([1e-5]), _Result([1e10], "run failed")])
    # best = the lowest minimum repeat (2e-6), not the lowest mean (3e-6)
    assert p.trials == [4, 0] and p.best[0] == pytest.approx(2e-6)
    line = said[-1]
    assert "tasks 1/2" in line and "trials 4/12" in line and "best total 2.0 us" in line
    assert "left ~" in line and "left ~?" not in line
    assert sched.terminated == [0]            # task a got its 4 trials
    p.measured(sched, 1, [_Result([1e-6])])
    assert sched.terminated == [0] and p.trials == [4, 1]
    p.measured(sched, 1, [_Result([1e-6])] * 7)     # at the cap: MetaSchedule stops it
    assert sched.terminated == [0] and p.trials == [4, 8]


def test_time_budget_terminates_every_task():
    import time
    from nnef_tvm.schedules.tuning import _Progress
    p = _Progress(["a", "b", "c"], [8, 8, 8], time.monotonic() - 1, None)
    sched = _Scheduler(3)
    sched.tasks_[1].is_terminated = True
    p.measured(sched, 0, [_Result([1e-6])])
    assert p.stopped_by_time and sched.terminated == [0, 2]
    q = _Progress(["a", "b"], [1, 1], time.monotonic() - 1, None)
    sched = _Scheduler(2)
    q.measured(sched, 0, [_Result([1e-6])])          # task 0 at the cap: left to MetaSchedule
    assert sched.terminated == [1]
    assert "left ~0s" in p.line()


def test_device_key_names_a_thread_count_other_than_the_default():
    """Records and in-model decisions made at one thread count do not hold at another."""
    from nnef_tvm.threads import default_thread_count as default_threads
    base = dk.device_key(get_target("x86"))
    assert dk.device_key(get_target("x86", threads=default_threads())) == base
    other = default_threads() + 1
    assert dk.device_key(get_target("x86", threads=other)) == f"{base}-{other}threads"
    assert dk.device_key(get_target("rpi4")) == "llvm-cortex-a72"      # not given: no suffix
    assert dk.device_key(get_target("rpi4", threads=4)) == "llvm-cortex-a72-4threads"
    assert dk.device_key(get_target("x86", threads=other), override="board") == "board"
