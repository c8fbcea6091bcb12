"""Template search: measure our own CPU schedule rules under every knob setting.

Why: MetaSchedule's generic search space, at the trial budgets a small machine
can afford, does not find schedules as good as the hand-written rules of
:mod:`.default` (register-tiled direct convolutions, packed weights, fused
epilogues). The rules have a few *knobs* (tile sizes, vector widths, ...;
:func:`.default.knob_space` lists the valid settings of the rule that fires
for a kernel), and the best setting depends on the kernel's shape and the
machine. So for every distinct fused kernel we

1. schedule it with the default rule under each knob setting (the default
   setting first, so the untuned schedule is always among the candidates),
2. build and time each candidate with MetaSchedule's builder and runner
   (locally, or on a board through an RPC tracker), and
3. store each measurement as an ordinary MetaSchedule ``TuningRecord``: the
   trace of the scheduled ``Schedule`` (every rule step is a traced schedule
   primitive), the measured seconds, the target and the arguments.

``nnef-compile`` then applies the fastest record per kernel right after
FuseTIR exactly as it applies MetaSchedule's own records
(``MetaScheduleApplyDatabase`` replays the trace on the unscheduled kernel),
so the tuned build is never slower than the untuned one by more than the
measurement noise: the untuned schedule is one of the measured candidates.

Resume: a candidate whose trace is already recorded for that workload is not
measured again (two settings that schedule a kernel identically are measured
once). ``trials`` caps the records per kernel, counting the ones already
stored.

Every record is stamped as a ``template`` record of the current rules version
(:mod:`.rules_version`): when the rules change, compile ignores the
workload's records until the new default has been measured, and the caller
hands :func:`search` a log without those stale records, so their trace keys
do not stop the new default (which may trace identically) from being
measured again. Candidates are ranked by their minimum repeat
(:func:`.store.best_secs`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

Progress = Optional[Callable[[str], None]]

FAILED_RUN_SECS = 1e10     # what MetaSchedule records for a candidate that failed


# ------------------------------------------------------------ knobs
def knob_settings(func, target) -> list[dict]:
    """Settings to try for ``func``: the default (``{}``) first, then the rule's knob space.

    :func:`.default.knob_space` returns the valid settings of the rule that
    fires by default, its default setting first, ``[]`` when it has no knobs.
    The empty setting (no override) is always tried first; a listed setting
    equal to it schedules identically and is measured only once (see
    :func:`trace_key`).
    """
    from . import default
    space = getattr(default, "knob_space", None)
    settings: list[dict] = [{}]
    if space is not None:
        try:
            listed = list(space(func, target) or [])
        except Exception:      # a rule that cannot enumerate its knobs: default only
            listed = []
        for s in listed:
            s = dict(s)
            if s not in settings:
                settings.append(s)
    return settings


def _overrides(setting: dict):
    """``cpu_common.knob_overrides(setting)``, or a no-op where the knobs are absent."""
    import contextlib
    from . import cpu_common
    ctx = getattr(cpu_common, "knob_overrides", None)
    if ctx is None or not setting:
        return contextlib.nullcontext()
    return ctx(setting)


def _capturing(rule, box: dict, name: str):
    """Wrap a rule ``(sch, lanes, cores) -> bool`` so the schedule it succeeded on is kept."""
    def run(sch, lanes, cores):
        ok = rule(sch, lanes, cores)
        if ok:
            box[name] = sch
        return ok
    return run


def schedule_with(func, target, setting: dict):
    """``(Schedule, rule name)`` of ``func`` under ``setting``, or ``(None, None)``.

    Goes through :func:`.default.schedule_cpu_func` (so the rule order and the
    fallbacks are exactly the compile's) with each rule wrapped to keep the
    ``Schedule`` it ran on: its trace is what gets recorded.
    """
    from . import default
    box: dict = {}
    rules = [(n, _capturing(r, box, n)) for n, r in default.CPU_RULES]
    with _overrides(setting):
        _, name = default.schedule_cpu_func(func, target, rules=rules)
    if name is None or name not in box:
        return None, None
    return box[name], name


# ------------------------------------------------------------ candidates
@dataclass
class Candidate:
    """One scheduled version of one kernel."""

    setting: dict
    rule: str
    sch: object                  # s_tir.Schedule (traced)
    key: str                     # trace_key of its trace

    @property
    def label(self) -> str:
        return self.rule + (" " + json.dumps(self.setting, sort_keys=True) if self.setting
                            else " (default)")


def trace_key(trace_json) -> str:
    """A canonical string of a trace's JSON (what resume compares)."""
    return json.dumps(trace_json, sort_keys=True, separators=(",", ":"))


def measured_args(sch):
    """The arguments the built candidate takes, as MetaSchedule measures them.

    A rule that packs a constant weight (``layout_free_buffers``) adds a
    layout-rewrite block; the builder removes it
    (``RemoveWeightLayoutRewriteBlock``) and the kernel then takes the weight
    already packed, so the runner must allocate the packed shape.
    """
    from tvm.s_tir import meta_schedule as ms
    return ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)


def record_json(sch, workload_mod, secs, tvm_target):
    """(workload json, record json) of a measured schedule, as the store keeps them."""
    from tvm.s_tir import meta_schedule as ms
    from .tuning import _plain, record_to_json
    wl = ms.database.Workload(workload_mod)
    args = measured_args(sch)
    rec = ms.database.TuningRecord(sch.trace, wl, [float(s) for s in secs], tvm_target, args)
    return _plain(wl.as_json()), record_to_json(rec)


def _trace_of(sch) -> list:
    """The trace JSON exactly as a TuningRecord stores it (postprocessors kept)."""
    from .tuning import _plain
    return _plain(sch.trace.as_json(remove_postproc=False))


def candidates(func, schedule_target, *, seen: Optional[set] = None) -> Iterator[Candidate]:
    """The distinct schedules of ``func`` over its knob settings (lazily, default first).

    Settings whose trace is in ``seen`` (already measured) or that no rule
    accepts are left out; ``seen`` is extended as candidates are produced.
    """
    seen = set() if seen is None else seen
    for setting in knob_settings(func, schedule_target):
        sch, rule = schedule_with(func, schedule_target, setting)
        if sch is None:
            continue
        key = trace_key(_trace_of(sch))
        if key in seen:
            continue
        seen.add(key)
        yield Candidate(setting, rule, sch, key)


def stored_trace_keys(log, shash: str) -> set:
    """trace_key of every record (successful or not) stored for workload ``shash``.

    ``log`` is the usable log of :func:`.rules_version.classify` (stale
    records are not "already measured").
    """
    out = set()
    for rec in log.records_of(shash):
        try:
            out.add(trace_key(rec[0]))
        except (IndexError, TypeError):
            continue
    return out


# ------------------------------------------------------------ measuring
@dataclass
class TemplateProgress:
    """Counts and the progress line of a template search."""

    names: list
    budgets: list                # candidates each task may still measure (upper bound)
    deadline: Optional[float]
    say: Progress
    start: float = field(default_factory=time.monotonic)
    measured: list = field(default_factory=list)
    best: list = field(default_factory=list)
    exhausted: list = field(default_factory=list)

    def __post_init__(self):
        n = len(self.names)
        self.measured = [0] * n
        self.best = [math.inf] * n
        self.exhausted = [False] * n

    def add(self, i: int, secs: Optional[float]) -> None:
        self.measured[i] += 1
        if secs is not None and secs < self.best[i]:
            self.best[i] = secs

    def total(self) -> int:
        return sum(m if ex else b for m, b, ex in zip(self.measured, self.budgets,
                                                     self.exhausted))

    def line(self) -> str:
        from .tuning import progress_line
        done_tasks = sum(1 for m, b, ex in zip(self.measured, self.budgets, self.exhausted)
                         if ex or m >= b)
        best = sum(b for b in self.best if b < math.inf)
        return "template " + progress_line(done_tasks, len(self.names), sum(self.measured),
                                           self.total(), best, self.start, self.deadline)

    def report(self) -> None:
        if self.say is not None:
            self.say(self.line())


def out_of_time(deadline: Optional[float]) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def measure(builder, runner, sched_mods, tvm_target, args_infos, device_type: str = "cpu"):
    """Build and run scheduled modules -> list of (run seconds list or None, error or None)."""
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput
    built = builder.build([BuilderInput(m, tvm_target) for m in sched_mods])
    out: list = [None] * len(sched_mods)
    inputs, where = [], []
    for i, (b, args) in enumerate(zip(built, args_infos)):
        if b.error_msg is not None or b.artifact_path is None:
            out[i] = (None, f"build: {b.error_msg}")
            continue
        inputs.append(RunnerInput(b.artifact_path, device_type, args))
        where.append(i)
    if inputs:
        for i, fut in zip(where, runner.run(inputs)):
            res = fut.result()
            if res.error_msg is not None or not res.run_secs:
                out[i] = (None, f"run: {res.error_msg}")
            else:
                out[i] = ([float(s) for s in res.run_secs], None)
    return out


@dataclass
class TemplateResult:
    """What a template search measured: per task, candidates measured and best seconds."""

    measured: list               # per task
    best: list                   # per task: best (minimum-repeat) seconds (inf when none)
    labels: list                 # per task: label of the best candidate measured now
    stopped_by_time: bool = False

    @property
    def trials(self) -> int:
        return sum(self.measured)


def search(tasks, log, writer, *, schedule_target, tvm_target, builder, runner,
           trials: int, deadline: Optional[float] = None, progress: Progress = None,
           batch: int = 8, device_type: str = "cpu",
           rules: Optional[str] = None) -> TemplateResult:
    """Measure the knob settings of every task's default rule; append the records.

    ``tasks`` are :class:`.tuning.Task`; ``log`` the device's stored log (for
    resume; stale records already left out by the caller); ``writer`` its
    :class:`.store.LogWriter`; ``rules`` the rules version the records are
    stamped with (default: the current one). Candidates are measured
    in rounds (the first unmeasured setting of every task, then the second,
    ...) so that a time budget leaves every kernel with its best early
    settings measured rather than a few kernels fully explored.
    """
    from .rules_version import TEMPLATE, stamp
    from .store import min_of
    mark = stamp(TEMPLATE, rules)
    budgets = [max(0, trials - t.done_trials) for t in tasks]
    prog = TemplateProgress([t.name for t in tasks], budgets, deadline, progress)
    labels: list = [None] * len(tasks)
    gens = []
    funcs = []
    for t in tasks:
        wmod = t.extracted.dispatched[0]
        funcs.append(wmod)
        gens.append(candidates(wmod["main"], schedule_target,
                               seen=stored_trace_keys(log, t.shash)))
    prog.report()
    stopped = False
    active = [i for i, b in enumerate(budgets) if b > 0]
    for i in range(len(tasks)):
        if budgets[i] <= 0:
            prog.exhausted[i] = True
    while active and not stopped:
        pending = []            # (task index, candidate)
        for i in list(active):
            cand = next(gens[i], None)
            if cand is None:
                prog.exhausted[i] = True
                active.remove(i)
                continue
            pending.append((i, cand))
        for start in range(0, len(pending), batch):
            if out_of_time(deadline):
                stopped = True
                break
            chunk = pending[start:start + batch]
            results = measure(builder, runner, [c.sch.mod for _, c in chunk], tvm_target,
                              [measured_args(c.sch) for _, c in chunk], device_type)
            for (i, cand), (secs, _err) in zip(chunk, results):
                wl, rec = record_json(cand.sch, funcs[i], secs or [FAILED_RUN_SECS], tvm_target)
                writer.append(wl, rec, mark)
                best = min_of(secs)
                before = prog.best[i]
                prog.add(i, best)
                if best is not None and best < before:
                    labels[i] = cand.label
            prog.report()
        for i in list(active):
            if prog.measured[i] >= budgets[i]:
                prog.exhausted[i] = True
                active.remove(i)
    prog.report()
    return TemplateResult(prog.measured, prog.best, labels, stopped)
