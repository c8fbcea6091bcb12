#!/usr/bin/env python3
"""Which kernels of a compiled model lose time when it runs on more threads.

For each kernel: its in-model time per call on 1 thread (``t1``) and on N
(``tN``), and the time lost per inference, ``calls * (tN - t1 / N)``: what
the kernel costs beyond a perfect N-way split. Kernels that read data
another core just wrote (a producer split differently from its consumer),
that have too few or unequal tasks, or that are bound by a shared resource
show up at the top. Each thread count runs in its own process (TVM reads the
pool size once), alternating 1, N, 1, N; a kernel's time is the smallest of
the per-process medians (profiler of :mod:`nnef_tvm.bench.profile`), which
filters the slow phases of a shared machine.

Usage::

    python scripts/thread_scaling.py model.so [--threads 2] [--runs 60] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_WORKER = r"""
import json, sys
import numpy as np
from nnef_tvm.runtime import load, random_input
from nnef_tvm.bench.profile import profile_vm
m = load(sys.argv[1], "cpu")
rng = np.random.default_rng(0)
args = m._arguments({s["name"]: random_input(rng, s) for s in m.inputs}, None)
for _ in range(20):
    m._main(*args)
out = {}
for _ in range(int(sys.argv[3])):
    for sym, t in profile_vm(m.vm, m._main, args, runs=int(sys.argv[2])).items():
        slot = out.setdefault(sym, {"calls": t["calls"], "ms": []})
        slot["ms"].append(t["median_ms"] / max(t["calls"], 1))
print(json.dumps(out))
"""


def kernel_times(library: str, threads: int, runs: int, reps: int) -> dict:
    """{kernel: {'calls', 'ms': [per-call median of each repetition]}} in a fresh process."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _WORKER, library, str(runs), str(reps)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scaling_rows(one: dict, many: dict, threads: int) -> list[dict]:
    """Rows sorted by time lost: kernel, calls, t1, tN (ms per call), speedup, lost ms/run."""
    rows = []
    for sym in sorted(set(one) & set(many)):
        if sym.startswith("vm."):
            continue
        t1, tn = min(one[sym]["ms"]), min(many[sym]["ms"])
        calls = one[sym]["calls"]
        rows.append({"kernel": sym, "calls": calls, "t1_ms": t1, "tn_ms": tn,
                     "speedup": t1 / tn if tn > 0 else float("inf"),
                     "lost_ms": calls * (tn - t1 / threads)})
    rows.sort(key=lambda r: -r["lost_ms"])
    return rows


def _merge(into: dict, more: dict) -> None:
    for sym, t in more.items():
        slot = into.setdefault(sym, {"calls": t["calls"], "ms": []})
        slot["ms"].extend(t["ms"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("library", help="a compiled nnef-tvm .so")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=60, help="inferences per profile")
    ap.add_argument("--reps", type=int, default=3, help="profiles per process")
    ap.add_argument("--rounds", type=int, default=2, help="processes per thread count")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    one, many = {}, {}
    for _ in range(args.rounds):
        _merge(one, kernel_times(args.library, 1, args.runs, args.reps))
        _merge(many, kernel_times(args.library, args.threads, args.runs, args.reps))
    rows = scaling_rows(one, many, args.threads)
    n = args.threads
    print(f"{'kernel':42s} {'calls':>5s} {'t1 ms':>8s} {f't{n} ms':>8s} {'speedup':>7s} "
          f"{'lost ms/run':>11s}")
    for r in rows:
        print(f"{r['kernel'][:42]:42s} {r['calls']:5.0f} {r['t1_ms']:8.4f} {r['tn_ms']:8.4f} "
              f"{r['speedup']:7.2f} {r['lost_ms']:11.4f}")
    t1 = sum(r["t1_ms"] * r["calls"] for r in rows)
    tn = sum(r["tn_ms"] * r["calls"] for r in rows)
    print(f"kernels per run: {t1:.3f} ms on 1 thread, {tn:.3f} ms on {n} "
          f"(speedup {t1 / tn:.2f}, lost {sum(r['lost_ms'] for r in rows):.3f} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": n, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
