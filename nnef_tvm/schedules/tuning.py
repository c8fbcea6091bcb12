"""MetaSchedule tuning of a model's fused kernels, recorded into the per-device store.

Why it works on the *fused* module: ``nnef-compile`` applies tuned schedules
right after FuseTIR (:func:`nnef_tvm.targets.pipeline.build_phases`), so the
tuned workloads must be exactly the PrimFuncs FuseTIR produces. We run the same
phases (partition, legalize, fuse, fuse_tir) and extract one task per distinct
PrimFunc; a workload's identity is MetaSchedule's structural hash, so a kernel
shared by several models is tuned once per device.

What this adds around ``tune_tasks``:

* resume: workloads that already have ``trials`` recorded trials are skipped,
  the others get only their missing trials, and the store's best records seed
  the search;
* records are appended to the store as each batch is measured (a killed run
  keeps what it measured), each stamped with the version of the default
  rules and the phase that measured it (:mod:`.rules_version`); records made
  against older rules are left out of resume, seeding and compile, so the
  current default schedule is measured again and competes;
* every ranking (the store's best, the seeds, the progress line's best)
  uses the minimum of a record's repeated timings (:func:`.store.best_secs`);
* a wall-clock budget and a progress line (tasks done, trials, best latency,
  time left) from a measure callback;
* two search strategies (``strategy``): ``template`` measures our own CPU
  rules under every knob setting (:mod:`.template_search`), ``evolutionary``
  is MetaSchedule's search seeded by the store; ``both`` (the default) runs
  the template search first and gives the evolutionary search what is left
  of the trial and time budgets, so the store ends with the best of both;
* a fast start: TVM imports ``tvm.s_tir.tensor_intrin`` -- every tensor
  intrinsic of every backend, each a TVMScript function parsed at import
  (1-2 minutes of CPU on a loaded 2-core machine, most of it CUDA's) -- in
  every ``TuneContext`` and in every builder worker. We load only the
  target's own intrinsics (:func:`load_tensor_intrinsics`), and candidates are
  built with :func:`build_candidate`, which needs none (a tensorized kernel
  already carries the intrinsic's body);
* builders: in-process (``builder_workers=0``, the template search's: few
  candidates, all from our own rules) or worker processes that persist across
  batches (TVM's LocalBuilder starts fresh workers for every batch);
* remote measurement through an RPC tracker (``RPCRunner``), the candidates
  linked into shared libraries with the target's cross compiler.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import NNEFError
from . import in_model_check as imc
from .device_key import device_key  # noqa: F401  (re-exported)
from .store import TuningStore, best_secs, min_of

Progress = Optional[Callable[[str], None]]
FUSION_PHASES = ("partition", "legalize", "fuse", "fuse_tir")


# ----------------------------------------------------------- workloads
def fused_module(mod, target):
    """``mod`` through the compile pipeline's phases up to FuseTIR (what gets tuned)."""
    from ..targets.pipeline import build_phases, run_phases
    phases = [p for p in build_phases(target) if p.name in FUSION_PHASES]
    return run_phases(mod, target, phases)


def tuning_target(target):
    """The TVM target used for tuning: MetaSchedule needs ``num-cores`` on CPU targets."""
    import tvm
    t = dict(target.tvm_target)
    if t.get("kind") == "llvm" and "num-cores" not in t:
        t["num-cores"] = int(target.options.get("threads") or os.cpu_count() or 1)
    if target.host is not None:
        return tvm.target.Target(t, host=target.host)
    return tvm.target.Target(t)


@dataclass
class Task:
    """One distinct fused kernel to tune."""

    name: str
    shash: str
    extracted: object            # ms.ExtractedTask
    weight: int
    done_trials: int = 0         # already in the store


def extract_tasks(fused, tvm_target) -> list[Task]:
    """Distinct tunable PrimFuncs of a fused module (already-scheduled ones left out)."""
    from tvm.s_tir import meta_schedule as ms
    tasks = []
    for t in ms.relax_integration.extract_tasks(fused, tvm_target):
        if t.mod.attrs is not None and t.mod.attrs.get("tirx.is_scheduled", False):
            continue
        mod = t.dispatched[0]
        if mod.attrs is not None and mod.attrs.get("tirx.is_scheduled", False):
            continue
        shash = str(_plain(ms.database.Workload(mod).as_json())[0])
        tasks.append(Task(t.task_name, shash, t, int(t.weight)))
    return tasks


def _plain(obj):
    """TVM FFI containers/numbers (from ``as_json``) -> plain JSON-able Python."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj if not isinstance(obj, str) else str(obj)
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "value") and not hasattr(obj, "__len__"):
        return obj.value
    if hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        return [_plain(v) for v in obj]
    return obj


def record_to_json(record) -> list:
    """A TuningRecord as the store's JSON: ``[trace, run_secs, target, args_info]``.

    Built from the parts because TVM 0.27's ``TuningRecord.as_json`` leaves an
    ``IndexMap`` (a ``transform_layout`` step, which our convolution rules use
    to pack weights) unserialized, while ``Trace.as_json`` writes it as text;
    for every other trace both give the same JSON.
    """
    secs = None if record.run_secs is None else [float(s) for s in record.run_secs]
    target = None if record.target is None else _plain(record.target.export())
    args = None if record.args_info is None else [_plain(a.as_json()) for a in record.args_info]
    return [_plain(record.trace.as_json(remove_postproc=False)), secs, target, args]


# ----------------------------------------------------------- databases
def is_search_trace(record_json) -> bool:
    """True for a record made by MetaSchedule's search, False for a template-search record.

    MetaSchedule's candidates sample their decisions (``Sample*`` steps) and
    are post-processed (an ``EnterPostproc`` step); our rules are
    deterministic and leave neither. Template records must not seed the
    evolutionary search: it replays seeds through its own post-processors,
    which fail a check on our weight-packing ``transform_layout`` (TVM 0.27:
    "args.size() == initial_indices_orig.size()" aborts the whole tuning) --
    and traces without sampling decisions give it nothing to mutate anyway.
    """
    try:
        insts = record_json[0][0]
        return any(str(inst[0]).startswith("Sample") or inst[0] == "EnterPostproc"
                   for inst in insts)
    except (IndexError, TypeError):
        return False


def _memory_database(tasks_or_none, log, top_k: int, only=None):
    """A MemoryDatabase holding the ``top_k`` best stored records per workload.

    Best: lowest :func:`.store.best_secs` (the minimum repeat). ``log``
    should be :func:`.rules_version.classify`'s usable log (stale records
    left out). ``only(record json) -> bool`` keeps a subset (the search's seeds).
    """
    from tvm.s_tir import meta_schedule as ms
    db = ms.database.MemoryDatabase()
    wanted = None if tasks_or_none is None else {t.shash for t in tasks_or_none}
    by_hash: dict = {}
    for idx, rec in log.records:
        wl = log.workloads[idx]
        if wanted is not None and wl.shash not in wanted:
            continue
        if only is not None and not only(rec):
            continue
        secs = best_secs(rec)
        if secs is None:
            continue
        by_hash.setdefault(wl.shash, (wl, []))[1].append((secs, rec))
    loaded = 0
    for shash, (wl, recs) in by_hash.items():
        recs.sort(key=lambda sr: sr[0])
        try:
            workload = db.commit_workload(ms.database.Workload.from_json(wl.json).mod)
        except Exception as e:  # noqa: BLE001 - a bad line must never crash a build
            _warn(f"skipped stored workload {shash}: {e}")
            continue
        for _, rec in recs[:top_k]:
            try:
                db.commit_tuning_record(ms.database.TuningRecord.from_json(rec, workload))
                loaded += 1
            except Exception as e:  # noqa: BLE001
                _warn(f"skipped a stored record of workload {shash}: {e}")
    return db, loaded


def _warn(text: str) -> None:
    import warnings
    from .store import StoreWarning
    warnings.warn(text, StoreWarning, stacklevel=3)


def _recording_database(inner, writer, stamp: Optional[dict] = None):
    """A PyDatabase forwarding to ``inner`` and appending each new record to the store.

    New records are stored with ``stamp``. ``get_top_k`` (what the
    evolutionary search picks its measured population with) ranks by the
    minimum repeat like the rest of nnef-tvm, not by MetaSchedule's mean.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.database import PyDatabase

    @derived_object
    class Recording(PyDatabase):
        def has_workload(self, mod):
            return inner.has_workload(mod)

        def commit_workload(self, mod):
            return inner.commit_workload(mod)

        def commit_tuning_record(self, record):
            inner.commit_tuning_record(record)
            writer.append(_plain(record.workload.as_json()), record_to_json(record), stamp)

        def get_top_k(self, workload, top_k):
            # all of the workload's valid records (inner matches the workload), re-ranked
            ranked = []
            for rec in inner.get_top_k(workload, max(int(top_k), len(inner), 1)):
                secs = min_of([float(x) for x in rec.run_secs]) if rec.run_secs else None
                if secs is not None:
                    ranked.append((secs, len(ranked), rec))
            ranked.sort(key=lambda r: r[:2])
            return [r[2] for r in ranked[:max(0, int(top_k))]]

        def get_all_tuning_records(self):
            return inner.get_all_tuning_records()

        def query_tuning_record(self, mod, target, workload_name=None):
            return inner.query_tuning_record(mod, target, workload_name)

        def query_schedule(self, mod, target, workload_name=None):
            return inner.query_schedule(mod, target, workload_name)

        def query_ir_module(self, mod, target, workload_name=None):
            return inner.query_ir_module(mod, target, workload_name)

        def __len__(self):
            return len(inner)

    return Recording()


# ----------------------------------------------------------- intrinsics
INTRIN_PACKAGE = "tvm.s_tir.tensor_intrin"
# every submodule the package's __init__ imports (what a full import would load)
ALL_INTRIN_MODULES = ("cuda", "arm_cpu", "x86", "rocm", "hexagon", "riscv_cpu")


def intrinsic_modules(tvm_target) -> tuple:
    """The ``tvm.s_tir.tensor_intrin`` submodules a target's schedule rules can use."""
    kind = tvm_target.kind.name
    if kind in ("cuda", "rocm", "metal", "hexagon"):
        return (kind,)
    if kind != "llvm":
        return ALL_INTRIN_MODULES
    triple = str(tvm_target.attrs.get("mtriple", "") or "")
    if not triple:
        import platform
        triple = platform.machine()
    triple = triple.lower()
    if triple.startswith(("x86_64", "i386", "i686", "amd64")):
        return ("x86",)
    if triple.startswith(("aarch64", "arm")):
        return ("arm_cpu",)
    if triple.startswith("riscv"):
        return ("riscv_cpu",)
    return ALL_INTRIN_MODULES


def load_tensor_intrinsics(tvm_target) -> tuple:
    """Register only ``tvm_target``'s tensor intrinsics -> the submodules loaded.

    ``TuneContext`` does ``import tvm.s_tir.tensor_intrin`` whose ``__init__``
    registers the intrinsics of every backend (CUDA's alone took 35 s of the
    ~60-100 s measured here). When the package is not imported yet, we put an
    empty package object with the real search path in its place, so that
    import is a no-op and the target's own submodules (``x86``: < 1 s) can be
    imported individually; any other submodule still imports on demand.
    """
    import importlib
    import importlib.util
    import types
    full = sys.modules.get(INTRIN_PACKAGE)
    if full is not None and not getattr(full, "_nnef_partial", False):
        return ALL_INTRIN_MODULES              # the whole package is loaded already
    if full is None:
        import tvm.s_tir as s_tir
        spec = importlib.util.find_spec(INTRIN_PACKAGE)
        pkg = types.ModuleType(INTRIN_PACKAGE, "Tensor intrinsics (loaded per target by "
                               "nnef_tvm.schedules.tuning.load_tensor_intrinsics).")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__package__ = INTRIN_PACKAGE
        pkg.__spec__ = spec
        pkg._nnef_partial = True
        sys.modules[INTRIN_PACKAGE] = pkg
        s_tir.tensor_intrin = pkg
    wanted = intrinsic_modules(tvm_target)
    for name in wanted:
        try:
            importlib.import_module(f"{INTRIN_PACKAGE}.{name}")
        except Exception as e:  # noqa: BLE001 - a backend's intrinsics failing to load
            _warn(f"tensor intrinsics '{name}' not loaded: {e}")
    return wanted


# ----------------------------------------------------------- builder / runner
def build_candidate(mod, target, params=None):
    """Compile one scheduled candidate (MetaSchedule's default build, minus its import).

    MetaSchedule's ``default_build`` imports ``tvm.s_tir.tensor_intrin`` first
    (a minute in every fresh worker). Building does not need the intrinsic
    registry: a tensorized kernel already contains the intrinsic's body.
    """
    from tvm import tirx
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tirx.build(mod, target=target)


def _preload_builder() -> None:
    """Worker initializer: import the compiler once, before the first (timed) build."""
    import tvm.s_tir.transform  # noqa: F401
    import tvm.tirx  # noqa: F401


def _noop() -> None:
    return None


def export_shared(rt_mod, cc: Optional[str] = None) -> str:
    """Builder export: link a candidate into a .so (with ``cc``, a cross compiler)."""
    from tvm.support import cc as tcc
    path = os.path.join(tempfile.mkdtemp(prefix="nnef-tune-"), "candidate.so")
    if cc:
        rt_mod.export_library(path, fcompile=tcc.cross_compiler(cc))
    else:
        rt_mod.export_library(path)
    return path


def export_tar(rt_mod) -> str:
    """Builder export for local runs (what MetaSchedule's LocalRunner loads)."""
    from tvm.s_tir.meta_schedule.builder.local_builder import default_export
    return default_export(rt_mod)


def make_builder(*, workers: int = 1, timeout_sec: float = 120.0, cross_compiler=None,
                 shared: bool = False):
    """A Builder: in-process (``workers=0``) or with worker processes kept across batches."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import (_serialize_params,
                                                               _worker_func)

    f_export = functools.partial(export_shared, cc=cross_compiler) \
        if (shared or cross_compiler) else export_tar

    if workers <= 0:
        @derived_object
        class InProcessBuilder(PyBuilder):
            def build(self, build_inputs):
                results = []
                for b in build_inputs:
                    try:
                        rt_mod = build_candidate(b.mod, b.target)
                        results.append(BuilderResult(f_export(rt_mod), None))
                    except Exception as e:  # noqa: BLE001 - a candidate that fails to build
                        results.append(BuilderResult(None, f"build failed: {e}"))
                return results
        return InProcessBuilder()

    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PersistentBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=workers, timeout=timeout_sec,
                                          initializer=_preload_builder)
            # start the workers now: their imports overlap the tuner's own work
            for _ in range(workers):
                self.pool.submit(_noop)

        def build(self, build_inputs):
            results = []
            jobs = [(build_candidate, f_export, b.mod, b.target, _serialize_params(b.params))
                    for b in build_inputs]
            for res in self.pool.map_with_error_catching(lambda x: _worker_func(*x), jobs):
                if res.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(res.value, None))
                elif res.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {timeout_sec} s"))
                else:
                    results.append(BuilderResult(None, f"build failed: {res.value}"))
            return results

    return PersistentBuilder()


def make_runner(*, tracker: Optional[str] = None, key: Optional[str] = None,
                timeout_sec: float = 60.0, number: int = 3, repeat: int = 3,
                min_repeat_ms: int = 20):
    """LocalRunner (one worker) or, with ``tracker`` HOST:PORT and ``key``, an RPCRunner.

    Each trial records ``repeat`` timings (each at least ``min_repeat_ms``);
    the store ranks records by their minimum (:func:`.store.best_secs`).
    With one timing, a load spike during the *default* candidate's run made
    a worse setting look faster on a shared machine; with three, one
    undisturbed timing is enough.
    """
    from tvm.s_tir.meta_schedule import runner as msr
    evaluator = msr.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                    enable_cpu_cache_flush=False)
    if tracker is None:
        return msr.LocalRunner(timeout_sec=timeout_sec, evaluator_config=evaluator)
    host, port = parse_tracker(tracker)
    if not key:
        raise NNEFError("--tracker needs --key (the device key the RPC servers registered)")
    cfg = msr.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                        session_timeout_sec=int(timeout_sec))
    return msr.RPCRunner(rpc_config=cfg, evaluator_config=evaluator, max_workers=1)


class RunnerStarter:
    """Creates the runner in a background thread, so its start overlaps our own work.

    A LocalRunner starts its worker process and waits for it to answer (the
    worker imports TVM: 10-30 s on a loaded machine); meanwhile the model is
    converted and fused, which does not need the runner.
    """

    def __init__(self, **kwargs):
        import threading
        self._kwargs = kwargs
        self._result = None
        self._error = None
        self._thread = threading.Thread(target=self._make, name="nnef-tune-runner",
                                        daemon=True)
        self._thread.start()

    def _make(self):
        try:
            self._result = make_runner(**self._kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised by get()
            self._error = e

    def get(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def parse_tracker(text: str) -> tuple[str, int]:
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NNEFError(f"--tracker expects HOST:PORT, got '{text}'")
    return host, int(port)


# ----------------------------------------------------------- progress / budget
@dataclass
class _Progress:
    """Counts measured trials per task; prints a progress line; enforces the time budget."""

    tasks: list
    budgets: list                # trials each task may still take
    deadline: Optional[float]
    say: Progress
    start: float = field(default_factory=time.monotonic)
    trials: list = field(default_factory=list)
    best: list = field(default_factory=list)
    stopped_by_time: bool = False

    def __post_init__(self):
        self.trials = [0] * len(self.tasks)
        self.best = [math.inf] * len(self.tasks)

    def measured(self, scheduler, task_id: int, runner_results) -> None:
        self.trials[task_id] += len(runner_results)
        for r in runner_results:
            secs = r.run_secs
            if r.error_msg is None and secs:
                m = min_of([float(s) for s in secs])
                if m is not None and m < self.best[task_id]:
                    self.best[task_id] = m
        # MetaSchedule terminates the joined task itself once it reaches the
        # per-task cap (max of the budgets) and fails if it was terminated
        # already, so that one is left to it.
        cap = max(self.budgets) if self.budgets else 0

        def stop(i):
            if scheduler.tasks_[i].is_terminated:
                return
            if i == task_id and self.trials[i] >= cap:
                return
            scheduler.terminate_task(i)
        # a resumed task only owes its missing trials (tune_tasks has one per-task cap)
        if self.trials[task_id] >= self.budgets[task_id]:
            stop(task_id)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            # tasks whose batch is still being measured lose that batch (never recorded)
            self.stopped_by_time = True
            for i in range(len(self.tasks)):
                stop(i)
        self.report()

    def line(self) -> str:
        done_tasks = sum(1 for t, b in zip(self.trials, self.budgets) if t >= b)
        best = sum(b for b in self.best if b < math.inf)
        return progress_line(done_tasks, len(self.tasks), sum(self.trials), sum(self.budgets),
                             best, self.start, self.deadline)

    def report(self) -> None:
        if self.say is not None:
            self.say(self.line())


def progress_line(done_tasks: int, ntasks: int, done_trials: int, total: int, best: float,
                  start: float, deadline: Optional[float]) -> str:
    """``[bar] tasks a/b  trials c/d  best total X us  elapsed E  left ~L`` (L: ETA or budget)."""
    elapsed = time.monotonic() - start
    left = (elapsed / done_trials * max(0, total - done_trials)) if done_trials else None
    if deadline is not None:
        budget_left = max(0.0, deadline - time.monotonic())
        left = budget_left if left is None else min(left, budget_left)
    width = 20
    filled = min(width, int(width * done_trials / total)) if total else width
    bar = "#" * filled + "." * (width - filled)
    eta = "?" if left is None else _duration(left)
    best_txt = f"{best * 1e6:.1f} us" if best else "n/a"
    return (f"[{bar}] tasks {done_tasks}/{ntasks}  trials {done_trials}/{total}  "
            f"best total {best_txt}  elapsed {_duration(elapsed)}  left ~{eta}")


def _duration(secs: float) -> str:
    secs = int(round(secs))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"


def _callback(progress: _Progress):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class ProgressCallback(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            progress.measured(task_scheduler, task_id, runner_results)

    return ProgressCallback()


# ----------------------------------------------------------- tuning a model
STRATEGIES = ("both", "template", "evolutionary", "replay")


@dataclass
class TuneSummary:
    """What one ``tune_model`` call did."""

    device_key: str
    store_dir: str
    tasks: list                   # [(name, shash, trials before, trials measured now)]
    skipped: int                  # tasks already tuned to the requested trials
    trials: int                   # trials measured in this run (both phases)
    seconds: float
    stopped_by_time: bool = False
    strategy: str = "both"
    template_trials: int = 0      # of ``trials``, measured by the template search
    phases: dict = field(default_factory=dict)   # phase name -> seconds
    errors: list = field(default_factory=list)   # a search phase stopped by a TVM error
    search_skipped: list = field(default_factory=list)  # kernels MetaSchedule cannot schedule
    vetoed: dict = field(default_factory=dict)   # kernel -> tuned/default ratio in the model
    chosen: dict = field(default_factory=dict)   # kernel -> confirmed tuned/default ratio
    in_model_ratio: Optional[float] = None       # tuned build / default build, whole runs
    stale: int = 0                # kernels whose stored records predate the current rules
    rules_version: Optional[str] = None          # the stamp given to this run's records

    @property
    def search_trials(self) -> int:
        return self.trials - self.template_trials

    def text(self) -> str:
        tuned = len(self.tasks) - self.skipped
        split = ""
        if self.trials and self.strategy in ("both", "template"):
            split = (f" (template {self.template_trials}, "
                     f"{'evolutionary' if self.strategy == 'both' else 'search'} "
                     f"{self.search_trials})")
        stale = (f" ({self.stale} with records that predate the current default schedules: "
                 "ignored)" if self.stale else "")
        return (f"device {self.device_key}: {len(self.tasks)} distinct kernels{stale}, "
                f"{self.skipped} already tuned, {tuned} tuned now with {self.trials} "
                f"trials{split} in "
                f"{self.seconds:.1f}s" + (" (time budget reached)" if self.stopped_by_time
                                          else "")
                + (f"; {len(self.search_skipped)} kernel(s) left to the template search "
                   "(MetaSchedule cannot schedule them, or their default is split for "
                   "data locality)" if self.search_skipped else "")
                + (f"; in the model {len(self.chosen)} kernel(s) use a tuned schedule, "
                   f"{len(self.vetoed)} keep the default" if self.chosen or self.vetoed
                   else "")
                + (f" (tuned build {self.in_model_ratio:.3f}x the default build's time)"
                   if self.in_model_ratio is not None else "")
                + ("; search stopped early: " + self.errors[0] if self.errors else "")
                + f"; store {self.store_dir}")


def tune_model(model_or_path, target="x86", *, trials: int = 64,
               time_budget: Optional[float] = None, store: Optional[TuningStore] = None,
               device_key_override: Optional[str] = None, tracker: Optional[str] = None,
               rpc_key: Optional[str] = None, input_shapes=None, progress: Progress = None,
               builder_workers: Optional[int] = None, builder_timeout: float = 120.0,
               trials_per_iter: Optional[int] = None, strategy: str = "both",
               seed: Optional[int] = None, mod=None,
               in_model_check: bool = True) -> TuneSummary:
    """Tune every distinct fused kernel of a model (path, loaded Model, or ``mod=`` Relax).

    ``trials`` is the number of measured trials per kernel, the ones already
    in the store included. ``strategy``: ``template`` (our rules' knob
    settings, :mod:`.template_search`; CPU targets), ``evolutionary`` /
    ``replay`` (MetaSchedule's search), ``both`` (template first, then the
    evolutionary search with the remaining trials and time, seeded by the
    store). ``builder_workers``: 0 builds in this process; default 0 for the
    template search and 1 worker process for MetaSchedule's search.
    """
    from ..targets import get_target
    from .device_key import device_key as derive_key

    if trials < 1:
        raise NNEFError(f"--trials must be >= 1, got {trials}")
    if time_budget is not None and time_budget <= 0:
        raise NNEFError(f"--time-budget must be > 0 seconds, got {time_budget}")
    if strategy not in STRATEGIES:
        raise NNEFError(f"unknown tuning strategy '{strategy}' (expected one of "
                        f"{', '.join(STRATEGIES)})")
    start = time.monotonic()
    deadline = None if time_budget is None else start + time_budget
    tgt = get_target(target)
    store = store or TuningStore()
    key = derive_key(tgt, override=device_key_override)
    if tracker is not None:
        parse_tracker(tracker)
        if not rpc_key:
            raise NNEFError("--tracker needs --key (the device key the RPC servers registered)")
    # reading + converting a model takes a while: start the runner's worker meanwhile
    runner_start = RunnerStarter(tracker=tracker, key=rpc_key) if mod is None else None
    if mod is None:
        from ..compiler import _convert, _load
        model = _load(os.fspath(model_or_path), input_shapes) \
            if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
        _say(progress, "converting to Relax")
        mod = _convert(model, input_shapes)
    _say(progress, "fusing")
    ttarget = tuning_target(tgt)
    load_tensor_intrinsics(ttarget)
    fused = fused_module(mod, tgt)
    tasks = extract_tasks(fused, ttarget)
    from .rules_version import classify, rules_version
    rules = rules_version()
    fresh = classify(store.read(key), rules)
    log = fresh.log                  # stale records neither count as trials nor block resume
    counts = log.trial_counts()
    # kernels left without usable records by a rules change (re-measured below)
    stale = sum(1 for t in tasks if t.shash in fresh.defaulted)
    for t in tasks:
        t.done_trials = counts.get(t.shash, 0)
    before = {id(t): t.done_trials for t in tasks}
    todo = [t for t in tasks if t.done_trials < trials]
    skipped = len(tasks) - len(todo)
    _say(progress, f"device {key}: {len(tasks)} distinct kernels, {skipped} already tuned "
                   f"(>= {trials} trials), {len(todo)} to tune"
                   + (f"; {stale} with records that predate the current default schedules "
                      f"(rules {rules}): ignored, re-measured" if stale else ""))
    measured = {id(t): 0 for t in tasks}
    summary = TuneSummary(key, str(store.folder(key)), [], skipped, 0, 0.0, strategy=strategy,
                          stale=stale, rules_version=rules)
    # in-model selection (local CPU) or, through a tracker, the whole-model check on the board
    local_selection = in_model_check and tracker is None and tgt.runs_locally and \
        tgt.tvm().kind.name == "llvm"
    default_vm = None
    if todo and local_selection and deadline is not None:
        _use_target_threads(tgt)
        # the in-model selection runs inside the budget: build the default model now
        # (the selection needs it anyway) and keep the time its other builds will take
        t0 = time.monotonic()
        default_vm = imc.build_vm(mod, tgt, None)
        reserve = imc.selection_seconds(time.monotonic() - t0)
        deadline = max(deadline - reserve, time.monotonic() + 0.5 * (deadline - time.monotonic()))
        _say(progress, f"in-model selection: {reserve:.0f} s of the time budget kept for it "
                       f"({imc.CANDIDATES + 1} more model builds)")
    if todo:
        _quiet_tvm_logs()
        runner = runner_start.get() if runner_start is not None \
            else make_runner(tracker=tracker, key=rpc_key)
        if strategy in ("both", "template"):
            if tgt.tvm().kind.name != "llvm":
                _say(progress, f"template search: no CPU rules for target kind "
                               f"'{tgt.tvm().kind.name}'; skipped")
            else:
                t0 = time.monotonic()
                res = _template_phase(todo, log, store.writer(key), tgt, ttarget, runner,
                                      trials=trials, deadline=deadline, progress=progress,
                                      tracker=tracker, builder_workers=builder_workers,
                                      builder_timeout=builder_timeout, rules=rules)
                for t, n in zip(todo, res.measured):
                    measured[id(t)] += n
                    t.done_trials += n
                summary.template_trials = res.trials
                summary.stopped_by_time = res.stopped_by_time
                summary.phases["template"] = time.monotonic() - t0
        if strategy != "template" and not summary.stopped_by_time:
            rest = [t for t in todo if t.done_trials < trials]
            if rest:
                t0 = time.monotonic()
                # the template phase's records are in the log (not seeds, but counted)
                log = classify(store.read(key), rules).log
                done, stopped = _search_phase(rest, log, store.writer(key), tgt, ttarget,
                                              runner, trials=trials, deadline=deadline,
                                              progress=progress, strategy=strategy,
                                              tracker=tracker, builder_workers=builder_workers,
                                              builder_timeout=builder_timeout,
                                              trials_per_iter=trials_per_iter, seed=seed,
                                              search_failed=summary.errors
                                              if strategy == "both" else None,
                                              search_skipped=summary.search_skipped,
                                              rules=rules)
                for t, n in zip(rest, done):
                    measured[id(t)] += n
                summary.stopped_by_time = stopped
                summary.phases[strategy if strategy != "both" else "evolutionary"] = \
                    time.monotonic() - t0
    summary.tasks = [(t.name, t.shash, before[id(t)], measured[id(t)]) for t in tasks]
    summary.trials = sum(measured.values())
    if local_selection and (summary.trials or
                            imc.undecided_workloads(store.folder(key), tasks, rules)):
        t0 = time.monotonic()
        _use_target_threads(tgt)
        _say(progress, "in-model selection: timing the candidates of every kernel inside the "
                       "model")
        picked = imc.select(mod, tgt, store.folder(key), tasks, rules, progress=progress,
                            default_vm=default_vm)
        summary.vetoed, summary.chosen = picked.vetoed, picked.chosen
        summary.in_model_ratio = picked.whole_ratio
        summary.phases["in-model selection"] = time.monotonic() - t0
    elif in_model_check and tracker is not None and summary.trials and \
            tgt.tvm().kind.name == "llvm":
        t0 = time.monotonic()
        guard = imc.remote_guard(mod, tgt, store.folder(key), tasks, rules, tracker=tracker,
                                 key=rpc_key, progress=progress)
        summary.vetoed, summary.in_model_ratio = guard.vetoed, guard.whole_ratio
        summary.phases["in-model check"] = time.monotonic() - t0
    summary.seconds = time.monotonic() - start
    return summary


def _use_target_threads(tgt) -> None:
    """Run this process's models (the in-model selection) at the target's thread count."""
    if tgt.options.get("threads"):
        from ..threads import configure_cpu_threads
        configure_cpu_threads(tgt.options["threads"])


def _template_phase(todo, log, writer, tgt, ttarget, runner, *, trials, deadline, progress,
                    tracker, builder_workers, builder_timeout, rules=None):
    """The template search (:mod:`.template_search`) over ``todo``."""
    from . import template_search
    builder = make_builder(workers=0 if builder_workers is None else builder_workers,
                           timeout_sec=builder_timeout, cross_compiler=tgt.cross_compiler,
                           shared=tracker is not None)
    return template_search.search(todo, log, writer, schedule_target=tgt.tvm(),
                                  tvm_target=ttarget, builder=builder, runner=runner,
                                  trials=trials, deadline=deadline, progress=progress,
                                  rules=rules)


def _search_phase(todo, log, writer, tgt, ttarget, runner, *, trials, deadline, progress,
                  strategy, tracker, builder_workers, builder_timeout, trials_per_iter, seed,
                  search_failed=None, search_skipped=None, rules=None):
    """MetaSchedule's search over ``todo`` -> (trials measured per task, stopped by time).

    Its records are stamped as ``search`` records of the rules version ``rules``.

    With a ``search_failed`` list, an exception from TVM's tuner is appended
    to it (and reported) instead of raised: with ``both``, the template
    records are already stored and must still be usable.
    """
    from tvm.s_tir import meta_schedule as ms
    search = "replay" if strategy == "replay" else "evolutionary"
    all_todo = todo
    contexts, todo = _searchable(all_todo, ttarget, search, trials, seed, progress,
                                 search_skipped)
    if not todo:
        return [0] * len(all_todo), False
    budgets = [trials - t.done_trials for t in todo]
    inner, _ = _memory_database(todo, log, top_k=32, only=is_search_trace)
    from .rules_version import SEARCH, stamp
    database = _recording_database(inner, writer, stamp(SEARCH, rules))
    prog = _Progress(todo, budgets, deadline, progress)
    per_iter = trials_per_iter or max(1, min(16, max(budgets)))
    work_dir = tempfile.mkdtemp(prefix="nnef-tune-")
    builder = make_builder(workers=1 if builder_workers is None else builder_workers,
                           timeout_sec=builder_timeout, cross_compiler=tgt.cross_compiler,
                           shared=tracker is not None)
    weights = [float(t.weight) for t in todo]
    callbacks = list(ms.measure_callback.MeasureCallback.create("default")) + [_callback(prog)]
    prog.report()
    try:
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=work_dir,
                      max_trials_global=sum(budgets), max_trials_per_task=max(budgets),
                      num_trials_per_iter=per_iter, builder=builder, runner=runner,
                      database=database, cost_model="xgb" if _has_xgboost() else "random",
                      measure_callbacks=callbacks, task_scheduler="round-robin")
    except Exception as e:  # noqa: BLE001 - a TVM failure must not lose the template results
        if search_failed is None:
            raise
        first = str(e).strip().splitlines()
        search_failed.append(f"{type(e).__name__}: {first[0] if first else ''}"[:300])
        _say(progress, f"{search} search stopped by a TVM error (records measured so far are "
                       f"kept): {search_failed[-1]}")
    done = dict(zip(map(id, todo), prog.trials))
    return [done.get(id(t), 0) for t in all_todo], prog.stopped_by_time


def _searchable(todo, ttarget, search, trials, seed, progress, skipped_out=None):
    """(tune contexts, tasks) for the kernels MetaSchedule can generate a design space for.

    MetaSchedule's own schedule rules do not take every kernel our rules
    schedule (the Winograd kernels: its MultiLevelTiling fails in
    ``reverse_compute_at`` on the output transform). One such kernel used to
    stop the whole search; now it is left out of the search, keeps its
    template-search records and is named in the progress output (and appended
    to ``skipped_out``, when given, so the summary reports it). Kernels whose
    default schedule is there for in-model data locality
    (:func:`.default.locality_bound`) are left out the same way.
    """
    from tvm.s_tir import meta_schedule as ms
    from .default import locality_bound
    cap = max([trials - t.done_trials for t in todo] or [1])
    contexts, kept, refused = [], [], []
    for t, rand in zip(todo, ms.utils.fork_seed(seed, n=len(todo))):
        if _locality_bound(t, ttarget, locality_bound):
            refused.append((t.name, "default split for in-model data locality (split-K), "
                                    "which standalone measurements cannot see"))
            continue
        ctx = ms.TuneContext(
            mod=t.extracted.dispatched[0], target=ttarget, space_generator="post-order-apply",
            search_strategy=_strategy(search, cap), task_name=t.name,
            rand_state=rand, num_threads=1,
            logger=ms.logging.get_logger(f"nnef_tvm.tune.{t.name}")).clone()
        try:
            ctx.generate_design_space()
        except Exception as e:  # noqa: BLE001 - TVM's rules refusing one kernel
            first = str(e).strip().splitlines()
            refused.append((t.name, first[0][:200] if first else type(e).__name__))
            continue
        contexts.append(ctx)
        kept.append(t)
    if refused:
        names = ", ".join(n for n, _ in refused)
        reasons = "; ".join(sorted({r for _, r in refused}))
        _say(progress, f"{search} search skips {len(refused)} kernel(s) ({names}: {reasons}); "
                       f"they keep the template search's records")
        if skipped_out is not None:
            skipped_out.extend(n for n, _ in refused)
    return contexts, kept


def _locality_bound(task, ttarget, check) -> bool:
    """``check`` (:func:`.default.locality_bound`) on a task's kernel; False if it cannot tell."""
    try:
        mod = task.extracted.dispatched[0]
        func = next(f for _, f in mod.functions_items())
        return bool(check(func, ttarget))
    except Exception:  # noqa: BLE001 - analysis of an unusual kernel: search it as before
        return False


def _strategy(name: str, trials: int):
    """Search strategy; the evolutionary population is scaled down for small budgets."""
    from tvm.s_tir import meta_schedule as ms
    if name == "replay":
        return ms.search_strategy.ReplayTrace()
    if name != "evolutionary":
        raise NNEFError(f"unknown search strategy '{name}' (evolutionary, replay)")
    pop = int(min(512, max(16, 8 * trials)))
    return ms.search_strategy.EvolutionarySearch(
        population_size=pop, init_measured_ratio=0.2, init_min_unmeasured=min(50, pop),
        genetic_num_iters=2 if trials <= 16 else 4)


def _has_xgboost() -> bool:
    import importlib.util
    return importlib.util.find_spec("xgboost") is not None


def _quiet_tvm_logs() -> None:
    import logging
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)


def _say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


def stderr_progress(prefix: str = "nnef-tune") -> Callable[[str], None]:
    """Progress lines (``prefix: text``) on stderr."""
    def say(text: str) -> None:
        print(f"{prefix}: {text}", file=sys.stderr, flush=True)
    return say
