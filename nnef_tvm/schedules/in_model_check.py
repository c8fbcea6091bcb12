"""After tuning: pick each kernel's schedule by how fast it runs *in the model*.

Why: tuning measures every kernel alone, with its inputs hot in the cache of
the core that runs it. In the model a kernel reads what the kernels before it
wrote, split across the cores their way; a schedule whose parallel split does
not match its producer's reads half its input from the other core's cache.
On the 2-core development machine a 32-trial tuning run of MobileNetV2 made
the model 1.19x *slower* than the untuned build (6.66 -> 7.95 ms at 2
threads) although every tuned kernel had won its standalone measurement,
and the fastest standalone record was often not the fastest in the model
(the third-fastest 1x1 projection record ran 0.75x the default's time there,
the fastest 0.83x). The default schedules are designed around those in-model
splits (see ``conv_channel_cpu._split_k_pays``); standalone records cannot
see them.

What :func:`select` does, once the search is over (local devices only):

1. **Candidates.** For every tuned workload of the model, the
   :data:`CANDIDATES` fastest standalone records with distinct traces.
2. **Selection builds.** The model is built once without records (the
   default schedules) and once per rank ``r``, each workload taking its
   ``r``-th candidate. Every kernel is timed inside each build, paired: each
   cycle runs each build once under the VM profiler
   (:func:`nnef_tvm.bench.profile.profile_vm`), and a candidate's score is
   the median over cycles of candidate time / default time. A kernel takes
   its best-scoring candidate if that scores below 1.
3. **Confirmation.** Picking the minimum of noisy scores favours lucky
   candidates, so the picks are built together and timed again against the
   default build, kernel by kernel and as whole runs. A pick that is not
   faster there (ratio >= :data:`KEEP_BELOW`) falls back to the default; if
   the whole build is clearly slower than the default build
   (:func:`clearly_slower`: beyond 1% and two standard errors), every
   kernel does. On the noisy 2-core host a whole-run median of 200 paired
   runs moves by 1-3%, about what the picks gain (MobileNetV2: five
   kernels at 0.6-0.8x their default time in the model, together ~2.5% of
   the model), so the whole runs guard against a regression, and the
   per-kernel ratios decide.

The decisions go to the device folder's :data:`DECISIONS_FILE`, keyed by
workload and stamped with the rules version they were made under:
``choices`` name the record (:func:`.store.record_digest`) compile applies
instead of the fastest standalone one, ``vetoes`` name workloads that keep
their default schedule. Decisions made under other default rules are ignored
like stale records (:mod:`.rules_version`). ``nnef-tune --no-in-model-check``
skips all this; compile then applies the fastest standalone records.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

DECISIONS_FILE = "nnef_tvm_in_model.json"
CANDIDATES = 3            # standalone-fastest records per workload tried in the model
CYCLES = 100              # paired cycles (one profiled run of each build per cycle)
WHOLE_CYCLES = 200        # paired whole-model runs in the confirmation
KEEP_BELOW = 1.0          # confirmed tuned/default ratio a pick must stay below
WHOLE_MARGIN = 0.01       # whole-run slowdown the tuned build may show before it is dropped
TIMING_SECS = 20.0        # the paired timing of select(), roughly (MobileNetV2: 8-12 s)


# ------------------------------------------------------------ the decisions file
def _read(folder) -> dict:
    try:
        data = json.loads((Path(folder) / DECISIONS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _section(data: dict, name: str) -> dict:
    part = data.get(name)
    return {str(k): v for k, v in part.items() if isinstance(v, dict)} \
        if isinstance(part, dict) else {}


def read_vetoes(folder) -> dict:
    """{workload hash: {'rules', 'ratio', 'kernel', 'when'}}; {} when absent or unreadable."""
    return _section(_read(folder), "vetoes")


def read_choices(folder) -> dict:
    """{workload hash: {'rules', 'record', 'rank', 'ratio', 'kernel', 'when'}}."""
    return _section(_read(folder), "choices")


def vetoed_workloads(folder, version: str) -> set:
    """Workload hashes vetoed under rules ``version`` (others are stale: ignored)."""
    return {k for k, v in read_vetoes(folder).items() if str(v.get("rules")) == str(version)}


def chosen_records(folder, version: str) -> dict:
    """{workload hash: record digest} chosen under rules ``version``."""
    return {k: str(v["record"]) for k, v in read_choices(folder).items()
            if str(v.get("rules")) == str(version) and v.get("record")}


def record_decisions(folder, vetoes: dict, choices: Optional[dict] = None) -> None:
    """Merge ``vetoes`` and ``choices`` ({hash: info}) into the folder's file, under the store's lock.

    A workload has one decision: a new veto drops its old choice and vice versa.
    """
    from .store import _locked
    folder = Path(folder)
    choices = choices or {}
    with _locked(folder):
        data = _read(folder)
        old_v, old_c = _section(data, "vetoes"), _section(data, "choices")
        for h in choices:
            old_v.pop(h, None)
        for h in vetoes:
            old_c.pop(h, None)
        old_v.update(vetoes)
        old_c.update(choices)
        tmp = folder / (DECISIONS_FILE + ".tmp")
        tmp.write_text(json.dumps({"vetoes": old_v, "choices": old_c}, indent=1,
                                  sort_keys=True))
        tmp.replace(folder / DECISIONS_FILE)


def merge_imported_decisions(folder, decisions: dict) -> int:
    """Take an imported file's decisions for the workloads without a local one -> how many.

    Entries that are not ``{hash: {..., 'rules': str}}`` (choices also need
    ``record``) are dropped: the file comes from elsewhere.
    """
    local = set(read_vetoes(folder)) | set(read_choices(folder))

    def clean(part, need):
        out = {}
        for h, v in (part.items() if isinstance(part, dict) else ()):
            if isinstance(h, str) and isinstance(v, dict) and h not in local and \
                    all(isinstance(v.get(k), str) for k in need):
                out[h] = v
        return out
    vetoes = clean(decisions.get("vetoes"), ("rules",))
    choices = clean(decisions.get("choices"), ("rules", "record"))
    if vetoes or choices:
        record_decisions(folder, vetoes, choices)
    return len(vetoes) + len(choices)


def undecided_workloads(folder, tasks, version: str) -> set:
    """Hashes of ``tasks``' workloads with usable records but no decision under ``version``.

    ``nnef-tune`` runs the selection when it measured something or when this
    is not empty (records tuned with ``--no-in-model-check``, or imported).
    """
    decided = vetoed_workloads(folder, version) | set(chosen_records(folder, version))
    return tuned_workloads(folder, tasks, version) - decided


def tuned_workloads(folder, tasks, version: str) -> set:
    """Hashes of ``tasks``' workloads with a usable (successful, current-rules) record."""
    from .rules_version import classify
    from .store import read_log
    return set(ranked_records(classify(read_log(folder), version).log,
                              {t.shash for t in tasks}))


# ------------------------------------------------------------ timing
def paired_kernel_times(vms: list, args: list, cycles: int, entry: str = "main") -> list[dict]:
    """[build] {kernel: [ms per cycle]}: one profiled run of each build per cycle.

    ``args[i]``: the arguments of build ``i``. The build that goes first
    rotates from cycle to cycle. Also used by ``scripts/ab_libs.py --kernels``.
    """
    from ..bench.profile import profile_vm
    recs = [dict() for _ in vms]
    for order in _rotating(len(vms), cycles):
        for i in order:
            vm = vms[i]
            for sym, t in profile_vm(vm, vm[entry], args[i], runs=1).items():
                if not sym.startswith("vm."):
                    recs[i].setdefault(sym, []).append(t["total_ms"])
    return recs


def paired_run_times(funcs: list, args: list, cycles: int) -> list[list]:
    """[build] [seconds per cycle] of whole un-instrumented runs ``funcs[i](*args[i])``.

    One run of each build per cycle, the build that goes first rotating. Also
    used by ``scripts/ab_libs.py`` and ``scripts/bench_tuned.py``.
    """
    clock = time.perf_counter
    out = [[] for _ in funcs]
    for order in _rotating(len(funcs), cycles):
        for i in order:
            t = clock()
            funcs[i](*args[i])
            out[i].append(clock() - t)
    return out


def _rotating(n: int, cycles: int):
    """Per cycle, the order to run ``n`` builds in: the first one rotates cycle by cycle."""
    order = list(range(n))
    for _ in range(cycles):
        order = order[1:] + order[:1]
        yield order


def median_ratio(num: list, den: list) -> Optional[float]:
    """Median over cycles of num/den (paired by cycle); None without data."""
    import numpy as np
    n = min(len(num), len(den))
    if not n:
        return None
    return float(np.median(np.asarray(num[:n], dtype=float) / np.asarray(den[:n], dtype=float)))


def median_ratio_se(num: list, den: list) -> Optional[float]:
    """Standard error of :func:`median_ratio`, from the ratios' spread (normal approximation).

    SE(median) ~ 1.2533 * sigma / sqrt(n), sigma estimated robustly as IQR / 1.349.
    """
    import numpy as np
    n = min(len(num), len(den))
    if n < 4:
        return None
    r = np.asarray(num[:n], dtype=float) / np.asarray(den[:n], dtype=float)
    q1, q3 = np.percentile(r, [25, 75])
    return float(1.2533 * (q3 - q1) / 1.349 / np.sqrt(n))


def clearly_slower(ratio: Optional[float], se: Optional[float]) -> bool:
    """Whether a whole-run ratio says the tuned build is slower beyond its noise.

    Above 1 by more than :data:`WHOLE_MARGIN` and by more than two standard
    errors: on a noisy host a 200-run median moves by a few percent, and the
    per-kernel evidence (many kernels, each paired over 100 cycles) is then
    the sharper one.
    """
    if ratio is None:
        return False
    return ratio > 1.0 + max(WHOLE_MARGIN, 2.0 * (se or 0.0))


def best_candidates(default: dict, per_rank: list, ranks_of: dict) -> dict:
    """{kernel: (rank, score)} of each kernel's best-scoring candidate, scores < 1 only.

    ``per_rank[r]``: the kernel times of the rank-``r`` build; ``ranks_of``:
    {kernel: how many candidates it has} (a build without the kernel's
    ``r``-th candidate ran its default schedule: not a candidate).
    """
    out = {}
    for kernel, n in ranks_of.items():
        if kernel not in default:
            continue
        scores = [(median_ratio(per_rank[r].get(kernel, []), default[kernel]), r)
                  for r in range(min(n, len(per_rank)))]
        scores = [(s, r) for s, r in scores if s is not None]
        if scores:
            s, r = min(scores)
            if s < 1.0:
                out[kernel] = (r, s)
    return out


# ------------------------------------------------------------ candidates + builds
def ranked_records(log, hashes) -> dict:
    """{workload hash: [record position in log]} fastest standalone first, one per trace."""
    from .store import best_secs
    per: dict = {}
    for pos, (i, rec) in enumerate(log.records):
        wl = log.workloads[i]
        if wl is None or wl.shash not in hashes:
            continue
        secs = best_secs(rec)
        if secs is not None:
            per.setdefault(wl.shash, []).append((secs, pos))
    out = {}
    for shash, lst in per.items():
        lst.sort()
        seen, keep = set(), []
        for _, pos in lst:
            trace = json.dumps(log.records[pos][1][0], sort_keys=True)
            if trace not in seen:
                seen.add(trace)
                keep.append(pos)
        out[shash] = keep
    return out


def _database(log, positions):
    """A MemoryDatabase with exactly the records at ``positions`` (None: no records)."""
    from .tuning import _memory_database
    if not positions:
        return None
    return _memory_database(None, log.subset(positions), top_k=1)[0]


def selection_seconds(build_secs: float, candidates: int = CANDIDATES) -> float:
    """What :func:`select` takes after its default build: the other builds, the timing."""
    return (candidates + 1) * build_secs + TIMING_SECS


def build_vm(mod, tgt, database):
    """A VirtualMachine of ``mod`` built for ``tgt``, with ``database``'s records (None: defaults)."""
    import tvm
    from tvm import relax
    from ..targets.pipeline import build_executable, build_phases, run_phases
    lowered = run_phases(mod, tgt, build_phases(tgt, database=database))
    return relax.VirtualMachine(build_executable(lowered, tgt), tvm.cpu())


def _inputs(mod) -> list:
    import numpy as np
    import tvm
    from ..compiler import io_specs
    from ..runtime import random_input
    specs, _ = io_specs(mod)
    rng = np.random.default_rng(0)
    return [tvm.runtime.tensor(np.ascontiguousarray(
        random_input(rng, {"shape": s.shape, "dtype": s.dtype})), tvm.cpu()) for s in specs]


# ------------------------------------------------------------ selection
@dataclass
class Selection:
    """What :func:`select` decided, per kernel name."""

    chosen: dict = field(default_factory=dict)    # kernel -> confirmed tuned/default ratio
    vetoed: dict = field(default_factory=dict)    # kernel -> ratio that kept the default
    whole_ratio: Optional[float] = None           # picks' build / default build, whole runs
    whole_se: Optional[float] = None              # its standard error
    builds: int = 0

    def line(self) -> str:
        whole = "" if self.whole_ratio is None else \
            (f"; the picks' build ran {self.whole_ratio:.3f}x the default build's time"
             + (f" (+-{self.whole_se:.3f})" if self.whole_se is not None else ""))
        return (f"in-model selection: {len(self.chosen)} kernel(s) use a tuned schedule, "
                f"{len(self.vetoed)} keep the default (slower or no faster in the model)"
                + whole)


def select(mod, tgt, folder, tasks, version: str, *, progress: Optional[Callable] = None,
           cycles: int = CYCLES, candidates: int = CANDIDATES, timer=paired_kernel_times,
           whole_timer=paired_run_times, whole_cycles: int = WHOLE_CYCLES,
           default_vm=None) -> Selection:
    """Choose each tuned workload's record, or its default, by in-model time (module docstring).

    ``tasks``: the tuning tasks (``name``, ``shash``) of ``mod``; kernel
    names map to workloads through them. ``default_vm``: the model already
    built without records (``nnef-tune`` builds it before the search to time
    a build), else built here.
    """
    from .rules_version import classify
    from .store import read_log, record_digest

    def say(text):
        if progress is not None:
            progress(text)

    log = classify(read_log(folder), version).log
    by_name = {t.name: t.shash for t in tasks}
    ranked = ranked_records(log, set(by_name.values()))
    result = Selection()
    if not ranked:
        return result
    ranks = max(1, min(candidates, max(len(v) for v in ranked.values())))
    say(f"in-model selection: building the model {ranks + 1 + (default_vm is None)} times "
        f"({'the default, ' if default_vm is None else ''}{ranks} candidate rank(s), "
        "the picks)")
    vms = [default_vm if default_vm is not None else build_vm(mod, tgt, None)]
    for r in range(ranks):
        vms.append(build_vm(mod, tgt, _database(log, [p[r] for p in ranked.values()
                                                      if len(p) > r])))
    result.builds = len(vms)
    args = _inputs(mod)
    _warm(vms, args)
    times = timer(vms, [args] * len(vms), cycles)
    ranks_of = {k: len(ranked[h]) for k, h in by_name.items() if h in ranked}
    picks = best_candidates(times[0], times[1:], ranks_of)

    # confirmation: the picks together against the default, unbiased by the pick
    confirmed: dict = {}
    if picks:
        picked_vm = build_vm(mod, tgt, _database(log, [ranked[by_name[k]][r]
                                                  for k, (r, _) in picks.items()]))
        result.builds += 1
        _warm([picked_vm], args)
        default_t, picked_t = timer([vms[0], picked_vm], [args, args], cycles)
        whole = whole_timer([vms[0]["main"], picked_vm["main"]], [args, args], whole_cycles)
        result.whole_ratio = median_ratio(whole[1], whole[0])
        result.whole_se = median_ratio_se(whole[1], whole[0])
        for k in picks:
            ratio = median_ratio(picked_t.get(k, []), default_t.get(k, []))
            if ratio is not None and ratio < KEEP_BELOW:
                confirmed[k] = ratio
        if clearly_slower(result.whole_ratio, result.whole_se):
            confirmed = {}          # slower as a whole: every kernel keeps its default
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    choices, vetoes = {}, {}
    for k in ranks_of:
        h = by_name[k]
        if k in confirmed:
            rank = picks[k][0]
            rec = log.records[ranked[h][rank]][1]
            choices[h] = {"rules": version, "record": record_digest(rec), "rank": rank,
                          "ratio": round(confirmed[k], 4), "kernel": k, "when": when}
            result.chosen[k] = confirmed[k]
        else:
            ratio = picks[k][1] if k in picks else \
                median_ratio(times[1].get(k, []), times[0].get(k, [])) or 1.0
            vetoes[h] = {"rules": version, "ratio": round(ratio, 4), "kernel": k, "when": when}
            result.vetoed[k] = ratio
    record_decisions(folder, vetoes, choices)
    say(result.line())
    return result


# ------------------------------------------------------------ remote boards
REMOTE_ROUNDS = 2         # alternating rounds of each build on the board
REMOTE_RUNS = 15          # timed runs per round (after warm-up runs)
REMOTE_MARGIN = 1.03      # unpaired medians: a wider margin than the local check


def remote_guard(mod, tgt, folder, tasks, version: str, *, tracker: str, key: str,
                 progress: Optional[Callable] = None, timer=None) -> Selection:
    """A board reached over RPC: a whole-model check of the tuned build.

    The per-kernel selection needs the VM profiler's callback, which cannot
    run on an RPC server, so on a board ``nnef-tune`` compiles the model with
    and without the store's records, times both there (``time_evaluator``,
    alternating rounds) and, when the tuned build is slower than
    :data:`REMOTE_MARGIN` times the default, vetoes every tuned workload of
    the model: compile then keeps the default schedules. The result's
    ``whole_ratio`` is the tuned/default ratio of the medians (None when the
    store has nothing to apply), ``vetoed`` the kernels vetoed.
    """
    import tempfile
    from ..compiler import compile_relax
    from .apply import tuning_for_compile

    def say(text):
        if progress is not None:
            progress(text)

    result = Selection()
    if tuning_for_compile(tgt, str(folder)) is None:
        return result
    say("in-model check on the board: timing the tuned and the default build")
    with tempfile.TemporaryDirectory(prefix="nnef-tune-guard-") as tmp:
        none = Path(tmp) / "no-records"
        none.mkdir()
        libs = {}
        for label, tdir in (("default", none), ("tuned", Path(folder))):
            compiled = compile_relax(mod, tgt, tuning_dir=str(tdir))
            libs[label] = compiled.export(str(Path(tmp) / f"{label}.so"))
        samples = (timer or _board_times)(libs, compiled, tracker, key)
    import numpy as np
    ratio = result.whole_ratio = float(np.median(samples["tuned"]) /
                                       np.median(samples["default"]))
    if ratio > REMOTE_MARGIN:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tuned = tuned_workloads(folder, tasks, version)
        record_decisions(folder, {t.shash: {"rules": version, "ratio": round(ratio, 4),
                                            "kernel": t.name, "when": when, "whole": True}
                                  for t in tasks if t.shash in tuned})
        result.vetoed = {t.name: ratio for t in tasks if t.shash in tuned}
        say(f"in-model check on the board: the tuned build ran {ratio:.3f}x the default "
            "build's time; every kernel of this model keeps its default schedule")
    else:
        say(f"in-model check on the board: the tuned build ran {ratio:.3f}x the default "
            "build's time; tuned schedules kept")
    return result


def _board_times(libs: dict, compiled, tracker: str, key: str) -> dict:
    """{label: [ms]}: each library timed on the board in :data:`REMOTE_ROUNDS` alternating rounds."""
    import numpy as np
    from ..bench.remote import run_remote
    from ..runtime import random_input
    rng = np.random.default_rng(0)
    inputs = {s["name"]: random_input(rng, s) for s in compiled.inputs}
    names = [o["name"] for o in compiled.outputs]
    out = {label: [] for label in libs}
    for _ in range(REMOTE_ROUNDS):
        for label, lib in libs.items():
            res = run_remote(lib, "cpu", inputs, names, warmup=3, repeat=REMOTE_RUNS,
                             tracker=tracker, key=key)
            out[label] += res["samples_ms"]
    return out


def _warm(vms, args, runs: int = 3) -> None:
    """A few untimed runs of each build (and a broken build fails here, early)."""
    for vm in vms:
        for _ in range(runs):
            vm["main"](*args)
