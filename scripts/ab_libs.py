#!/usr/bin/env python3
"""Paired A/B of compiled nnef-tvm libraries: which of several builds of one model is faster.

Why: on a shared or virtual machine a core's speed changes by up to ~1.7x in
phases of ~100 ms (another tenant on its hyper-thread sibling, measured on
the 2-vCPU development host), so two medians taken a few seconds apart can
differ by 10% for the *same* library. Here every library is loaded in one
process and run once per cycle, in rotating order, so neighbouring runs of
different libraries see the same machine state; the per-cycle ratio to the
first library is the estimate (its median and quartiles are reported), not
the ratio of separate medians. Outputs are compared with the first library's
too (same inputs), so a faster but wrong build is flagged.

One process means one TVM thread pool for all libraries (they run one after
the other, never at once). To compare against another runtime use
``scripts/bench_untuned.py`` (each engine in its own process).

Usage::

    python scripts/ab_libs.py base.so variant.so [more.so] [--threads 2] [--cycles 400]
        [--kernels] [--json out.json]

``--kernels`` adds the same paired comparison per kernel (the VM profiler
around one run of each library per cycle), for kernels named alike in every
library: which kernels a schedule change sped up or slowed down in the model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def load_all(paths: list[str], threads: int):
    from nnef_tvm.runtime import load, random_input
    models = [load(p, "cpu", threads=threads) for p in paths]
    rng = np.random.default_rng(0)
    values = {s["name"]: random_input(rng, s) for s in models[0].inputs}
    args = [m._arguments(values, None) for m in models]
    return models, args


def first_output(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        return value.numpy()
    return first_output(value[0])


def paired_times(models, args, cycles: int, warmup: int = 20) -> np.ndarray:
    """[cycle, library] seconds: one run of each library per cycle, first one rotating."""
    from nnef_tvm.schedules.in_model_check import paired_run_times
    for _ in range(warmup):
        for m, a in zip(models, args):
            m._main(*a)
    return np.asarray(paired_run_times([m._main for m in models], args, cycles)).T


def kernel_rows(recs: list[dict]) -> list[dict]:
    """Per kernel found in every library (by name): median ms of each and paired ratios."""
    from nnef_tvm.schedules.in_model_check import median_ratio
    common = set(recs[0]).intersection(*recs[1:])
    rows = []
    for sym in sorted(common):
        ms = [float(np.median(r[sym])) for r in recs]
        ratios = [median_ratio(r[sym], recs[0][sym]) for r in recs]
        rows.append({"kernel": sym, "median_ms": ms, "ratio_median": ratios})
    rows.sort(key=lambda r: -r["median_ms"][0])
    return rows


def summarize(paths: list[str], times: np.ndarray, diffs: list[float]) -> list[dict]:
    rows = []
    for i, path in enumerate(paths):
        ratio = times[:, i] / times[:, 0]
        rows.append({"library": path, "median_ms": float(np.median(times[:, i]) * 1e3),
                     "ratio_median": float(np.median(ratio)),
                     "ratio_q1": float(np.percentile(ratio, 25)),
                     "ratio_q3": float(np.percentile(ratio, 75)),
                     "max_abs_diff_vs_first": diffs[i]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("libraries", nargs="+", help="compiled .so files of one model")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--cycles", type=int, default=400)
    ap.add_argument("--kernels", action="store_true",
                    help="also profile every kernel in the model, paired the same way "
                         "(kernels matched by name across libraries)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if len(args.libraries) < 2:
        ap.error("give at least two libraries")
    models, call_args = load_all(args.libraries, args.threads)
    outs = [first_output(m._main(*a)) for m, a in zip(models, call_args)]
    diffs = [float(np.abs(o.astype(np.float64) - outs[0]).max()) for o in outs]
    times = paired_times(models, call_args, args.cycles)
    rows = summarize(args.libraries, times, diffs)
    print(f"threads: {os.environ.get('TVM_NUM_THREADS', '?')}  cycles: {args.cycles}  "
          f"load: {os.getloadavg()[0]:.2f}")
    print(f"{'library':40s} {'median ms':>10s} {'ratio':>7s} {'q1-q3':>13s} {'max |diff|':>11s}")
    for r in rows:
        print(f"{os.path.basename(r['library'])[:40]:40s} {r['median_ms']:10.3f} "
              f"{r['ratio_median']:7.3f} {r['ratio_q1']:6.3f}-{r['ratio_q3']:.3f} "
              f"{r['max_abs_diff_vs_first']:11.2e}")
    krows = []
    if args.kernels:
        from nnef_tvm.schedules.in_model_check import paired_kernel_times
        entry = models[0].metadata.get("entry", "main")
        krows = kernel_rows(paired_kernel_times([m.vm for m in models], call_args, args.cycles,
                                                entry))
        print(f"\n{'kernel (in every library)':42s} " +
              " ".join(f"{'ms':>8s} {'ratio':>6s}" for _ in args.libraries))
        for r in krows:
            print(f"{r['kernel'][:42]:42s} " + " ".join(
                f"{m:8.4f} {q:6.3f}" for m, q in zip(r["median_ms"], r["ratio_median"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "cycles": args.cycles, "rows": rows,
                       "kernels": krows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
