"""After tuning: a tuned schedule is kept only if it is not slower *in the model* than the default.

Why: tuning measures every kernel alone, with its inputs hot in the cache of
the core that runs it. In the model a kernel reads what the kernels before it
wrote, split across the cores their way; a schedule whose parallel split does
not match its producer's reads half its input from the other core's cache.
On the 2-core development machine a 32-trial tuning run of MobileNetV2 made
the model 1.19x *slower* than the untuned build (6.66 -> 7.95 ms at 2
threads) although every tuned kernel had won its standalone measurement.
The default schedules are designed around those in-model splits (see
``conv_channel_cpu._split_k_pays``); standalone records cannot see them.

What :func:`check` does, once the search is over (local devices only): it
builds the model twice, with the store's records and without, and times
every kernel inside the model, paired: each cycle runs each build once under
the VM profiler (:func:`nnef_tvm.bench.profile.profile_vm`), and a kernel's
verdict is the median over cycles of tuned time / default time. Workloads
whose tuned kernel ran more than :data:`SLOWER_MARGIN` slower are *vetoed*:
the device folder's :data:`VETO_FILE` names them with the rules version they
were judged under, and compile (:mod:`.apply`) ignores their records, so the
kernel keeps its default schedule. A veto made under other default rules is
ignored like a stale record. ``nnef-tune --no-in-model-check`` skips it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

VETO_FILE = "nnef_tvm_in_model.json"
SLOWER_MARGIN = 1.03      # tuned/default median ratio above this: keep the default
CYCLES = 40               # paired cycles (one run of each build per cycle)


def read_vetoes(folder) -> dict:
    """{workload hash: {'rules', 'ratio', 'kernel', 'when'}}; {} when absent or unreadable."""
    path = Path(folder) / VETO_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    vetoes = data.get("vetoes") if isinstance(data, dict) else None
    return {str(k): v for k, v in vetoes.items() if isinstance(v, dict)} \
        if isinstance(vetoes, dict) else {}


def vetoed_workloads(folder, version: str) -> set:
    """Workload hashes vetoed under rules ``version`` (others are stale: ignored)."""
    return {k for k, v in read_vetoes(folder).items() if str(v.get("rules")) == str(version)}


def add_vetoes(folder, entries: dict) -> None:
    """Merge ``entries`` ({hash: info}) into the folder's veto file, under the store's lock."""
    from .store import _locked
    folder = Path(folder)
    with _locked(folder):
        vetoes = read_vetoes(folder)
        vetoes.update(entries)
        tmp = folder / (VETO_FILE + ".tmp")
        tmp.write_text(json.dumps({"vetoes": vetoes}, indent=1, sort_keys=True))
        tmp.replace(folder / VETO_FILE)


def paired_kernel_times(vms: list, args: list, cycles: int, entry: str = "main") -> list[dict]:
    """[build] {kernel: [ms per cycle]}: one profiled run of each build per cycle.

    ``args[i]``: the arguments of build ``i``. The build that goes first
    rotates from cycle to cycle. Also used by ``scripts/ab_libs.py --kernels``.
    """
    from ..bench.profile import profile_vm
    recs = [dict() for _ in vms]
    order = list(range(len(vms)))
    for _ in range(cycles):
        order = order[1:] + order[:1]
        for i in order:
            vm = vms[i]
            for sym, t in profile_vm(vm, vm[entry], args[i], runs=1).items():
                if not sym.startswith("vm."):
                    recs[i].setdefault(sym, []).append(t["total_ms"])
    return recs


def slower_kernels(default: dict, tuned: dict, margin: float = SLOWER_MARGIN) -> dict:
    """{kernel: median tuned/default ratio} of the kernels slower than ``margin`` when tuned."""
    import numpy as np
    out = {}
    for sym in set(default) & set(tuned):
        n = min(len(default[sym]), len(tuned[sym]))
        if not n:
            continue
        ratio = float(np.median(np.asarray(tuned[sym][:n]) / np.asarray(default[sym][:n])))
        if ratio > margin:
            out[sym] = ratio
    return out


def _vm(mod, tgt, database):
    import tvm
    from tvm import relax
    from ..targets.pipeline import build_phases, run_phases
    lowered = run_phases(mod, tgt, build_phases(tgt, database=database))
    return relax.VirtualMachine(relax.build(lowered, tgt.tvm(), relax_pipeline=None), tvm.cpu())


def _inputs(mod) -> list:
    import numpy as np
    import tvm
    from ..compiler import io_specs
    from ..runtime import random_input
    specs, _ = io_specs(mod)
    rng = np.random.default_rng(0)
    return [tvm.runtime.tensor(np.ascontiguousarray(
        random_input(rng, {"shape": s.shape, "dtype": s.dtype})), tvm.cpu()) for s in specs]


def check(mod, tgt, folder, tasks, version: str, *, progress: Optional[Callable] = None,
          cycles: int = CYCLES, timer=paired_kernel_times) -> dict:
    """Veto the tuned workloads of ``mod`` that run slower in the model (see module docstring).

    ``tasks``: the tuning tasks (``name``, ``shash``) -- kernel names map to
    workloads through them. Returns {kernel: ratio} of the kernels vetoed now.
    """
    from .apply import tuning_for_compile
    applied = tuning_for_compile(tgt, str(folder))
    if applied is None:
        return {}
    by_name = {t.name: t.shash for t in tasks}
    default_vm = _vm(mod, tgt, None)
    tuned_vm = _vm(mod, tgt, applied.database)
    args = _inputs(mod)
    for vm in (default_vm, tuned_vm):          # warm both up (and catch a broken build early)
        for _ in range(3):
            vm["main"](*args)
    default, tuned = timer([default_vm, tuned_vm], [args, args], cycles)
    slower = {k: r for k, r in slower_kernels(default, tuned).items() if k in by_name}
    if slower:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        add_vetoes(folder, {by_name[k]: {"rules": version, "ratio": round(r, 4), "kernel": k,
                                         "when": when} for k, r in slower.items()})
    if progress is not None:
        if slower:
            worst = ", ".join(f"{k} {r:.2f}x" for k, r in
                              sorted(slower.items(), key=lambda kv: -kv[1])[:4])
            progress(f"in-model check: {len(slower)} tuned kernel(s) ran slower in the model "
                     f"than their default schedule ({worst}); they keep the default")
        else:
            progress("in-model check: every tuned kernel is at least as fast in the model")
    return slower
