#!/usr/bin/env python3
"""Tuned vs untuned vs onnxruntime: does tuning win, and how long does it take?

For each MODEL (an NNEF folder, or a zoo folder holding ``nnef/`` and
``source.onnx``) this script

1. tunes it with ``nnef-tune`` (a subprocess; its wall time is the reported
   tuning time) into ``--tuning-dir`` or a temporary store, with the given
   ``--trials`` per kernel, ``--time-budget`` and ``--strategy``;
2. compiles it twice with ``nnef_tvm.compile_model``: untuned (an empty
   tuning store: the default schedules) and tuned (the store of step 1);
3. times untuned, tuned and onnxruntime, EACH IN ITS OWN PROCESS, in
   alternating rounds (:mod:`nnef_tvm.bench.alternate`: the idle thread pool
   of one engine spin-waits after a run, and in one process it steals the
   other engine's cores), same thread count, batch 1, random inputs; medians;
4. prints one row per model: threads, trials, tuning time, the three medians
   and the ratios tuned/ort and untuned/ort (below 1: faster than
   onnxruntime); ``--json`` writes the same with the machine's load average;
5. and, in this process after the engines closed, times untuned and tuned
   once more *paired run by run* (:func:`paired_tuned_ratio`): the
   tuned/untuned ratio with its quartiles, free of the host's speed phases.

Usage::

    python scripts/bench_tuned.py zoo/resnet18 zoo/mobilenet_v2 --threads 2 \\
        --trials 32 --time-budget 900 [--strategy both] [--tuning-dir DIR] \\
        [--repeat 15] [--warmup 3] [--per-round 5] [--json out.json]
    # time the records of an earlier run again (no tuning):
    python scripts/bench_tuned.py zoo/resnet18 --tuning-dir DIR --skip-tuning

Timings on a shared machine drift with the load: compare the columns of one
row (measured side by side), not rows of different runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from bench_untuned import model_paths  # noqa: E402  (scripts/ is on sys.path when run)


PAIRED_CYCLES = 300       # tuned/untuned runs paired in one process


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def same_package_env() -> dict:
    """subprocess.run arguments making ``python -m nnef_tvm...`` import *this* nnef_tvm.

    ``-m`` puts the working directory first on sys.path: run from a checkout
    other than the one this script imported (an editable install elsewhere,
    a worktree), nnef-tune would tune with other default rules than the
    compile below uses, and compile would find every record stale. So the
    child runs in the imported package's root, with that root first on
    PYTHONPATH too.
    """
    import nnef_tvm
    root = os.path.dirname(os.path.dirname(os.path.abspath(nnef_tvm.__file__)))
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"cwd": root, "env": dict(os.environ, PYTHONPATH=os.pathsep.join(paths))}


def tune(nnef_dir: str, store: str, args) -> dict:
    """Run nnef-tune in a subprocess -> {'seconds', 'summary', 'trials_measured'}."""
    cmd = [sys.executable, "-m", "nnef_tvm.cli.tune", os.path.abspath(nnef_dir),
           "--target", "x86", "--threads", str(args.threads), "--trials", str(args.trials),
           "--tuning-dir", os.path.abspath(store), "--strategy", args.strategy]
    if args.time_budget:
        cmd += ["--time-budget", str(args.time_budget)]
    print("  $ " + " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                          **same_package_env())
    secs = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nnef-tune failed (exit {proc.returncode}): {proc.stdout.strip()}")
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    m = re.search(r"with (\d+) trials", summary)
    return {"seconds": secs, "summary": summary,
            "trials_measured": int(m.group(1)) if m else None}


def compile_library(nnef_dir: str, threads: int, tuning_dir: str, path: str) -> dict:
    """Compile with ``tuning_dir`` as the store, export to ``path`` -> info dict."""
    from nnef_tvm.compiler import compile_model
    lines: list[str] = []
    start = time.perf_counter()
    compiled = compile_model(nnef_dir, "x86", threads=threads, tuning_dir=tuning_dir,
                                      progress=lines.append)
    compiled.export(path)
    tuning = compiled.metadata.get("tuning") or {}
    return {"seconds": time.perf_counter() - start, "inputs": compiled.inputs,
            "tuned_kernels": tuning.get("tuned_kernels", 0),
            "default_kernels": tuning.get("default_kernels"),
            "tuning_line": next((ln for ln in lines if ln.startswith("tuning:")), None)}


def random_inputs(inputs: list[dict], work: str) -> tuple[str, list[str]]:
    """An .npz of seeded random inputs in declaration order -> (path, names)."""
    import numpy as np
    rng = np.random.default_rng(0)
    order = [f"in{i}" for i in range(len(inputs))]
    arrays = {}
    for name, spec in zip(order, inputs):
        shape = [int(d) for d in spec["shape"]]
        arrays[name] = rng.standard_normal(shape).astype(spec["dtype"])
    path = os.path.join(work, "inputs.npz")
    np.savez(path, **arrays)
    return path, order


def bench_model(arg: str, args, store_root: str) -> dict:
    import numpy as np
    from nnef_tvm.bench.alternate import Engine, alternate
    nnef_dir, onnx_file = model_paths(arg)
    name = os.path.basename(os.path.normpath(arg))
    print(f"{name}:", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-tuned-") as work:
        if onnx_file is None:
            from nnef_tvm.bench.peers import export_onnx
            onnx_file = export_onnx(nnef_dir, os.path.join(work, "model.onnx"))
        if args.skip_tuning:
            tuned_info = {"seconds": float("nan"), "summary": "reused store " + store_root,
                          "trials_measured": None}
        else:
            tuned_info = tune(nnef_dir, store_root, args)
            print(f"  tuned in {tuned_info['seconds']:.0f}s: {tuned_info['summary']}",
                  flush=True)
        empty = os.path.join(work, "no-tuning")
        os.mkdir(empty)
        libs, builds = {}, {}
        for label, store in (("untuned", empty), ("tuned", store_root)):
            libs[label] = os.path.join(work, f"{label}.so")
            builds[label] = compile_library(nnef_dir, args.threads, store, libs[label])
        print(f"  compiled: {builds['tuned']['tuning_line']}", flush=True)
        npz, order = random_inputs(builds["tuned"]["inputs"], work)
        common = {"inputs": npz, "input_order": order, "threads": args.threads}
        engines = [Engine("onnxruntime", dict(common, onnx=onnx_file),
                          "nnef_tvm.bench.alternate:onnxruntime_engine")]
        engines += [Engine(label, dict(common, library=libs[label]),
                           "nnef_tvm.bench.alternate:tvm_library_engine")
                    for label in ("untuned", "tuned")]
        load_before = load_average()
        try:
            for e in engines:
                e.start()
                if e.error:
                    raise SystemExit(f"{name}: {e.label} failed to start: {e.error}")
            outs = {e.label: np.load(e.save_output(os.path.join(work, f"{e.label}.npy")))
                    for e in engines}
            times = alternate(engines, warmup=args.warmup, repeat=args.repeat,
                              per_round=args.per_round)
        finally:
            for e in engines:
                e.close()
        paired = paired_tuned_ratio(libs, args.threads)
    ref = outs["onnxruntime"]
    diff = {label: float(np.abs(outs[label].reshape(ref.shape) - ref).max())
            for label in ("untuned", "tuned")}
    med = {label: float(np.median(v)) * 1e3 for label, v in times.items()}
    return {"model": name, "threads": args.threads, "trials": args.trials,
            "strategy": args.strategy, "time_budget_s": args.time_budget,
            "tuning_s": round(tuned_info["seconds"], 1),
            "trials_measured": tuned_info["trials_measured"],
            "tune_summary": tuned_info["summary"],
            "tuned_kernels": builds["tuned"]["tuned_kernels"],
            "default_kernels": builds["tuned"]["default_kernels"],
            "onnxruntime_ms": med["onnxruntime"], "untuned_ms": med["untuned"],
            "tuned_ms": med["tuned"], "tuned_vs_ort": med["tuned"] / med["onnxruntime"],
            "untuned_vs_ort": med["untuned"] / med["onnxruntime"],
            "tuned_vs_untuned_paired": paired,
            "max_abs_diff_vs_ort": diff, "load_average": [load_before, load_average()],
            "samples_ms": {k: [round(s * 1e3, 4) for s in v] for k, v in times.items()}}


def paired_tuned_ratio(libs: dict, threads: int, cycles: int = PAIRED_CYCLES) -> dict:
    """Tuned vs untuned library, paired run by run in one process (as scripts/ab_libs.py).

    The alternating rounds above put onnxruntime next to both libraries; this
    per-run pairing is the sharper estimate of what tuning itself gained (the
    host's speed phases cancel out): {'median', 'q1', 'q3'} of tuned/untuned.
    """
    import numpy as np
    from ab_libs import load_all, paired_times  # noqa: E402  (scripts/ is on sys.path)
    models, call_args = load_all([libs["untuned"], libs["tuned"]], threads)
    times = paired_times(models, call_args, cycles)
    ratio = times[:, 1] / times[:, 0]
    return {"median": float(np.median(ratio)), "q1": float(np.percentile(ratio, 25)),
            "q3": float(np.percentile(ratio, 75)), "cycles": cycles}


def table(rows: list[dict]) -> str:
    head = ("| model | threads | trials | tuning time | onnxruntime ms | untuned ms | "
            "tuned ms | tuned/ort | untuned/ort | tuned/untuned paired (q1-q3) |")
    out = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trials = f"{r['trials']} ({r['trials_measured']} measured)" \
            if r.get("trials_measured") is not None else str(r["trials"])
        tuning = "-" if r["tuning_s"] != r["tuning_s"] else f"{r['tuning_s']:.0f} s"
        out.append(f"| {r['model']} | {r['threads']} | {trials} | {tuning} | "
                   f"{r['onnxruntime_ms']:.2f} | {r['untuned_ms']:.2f} | {r['tuned_ms']:.2f} | "
                   f"{r['tuned_vs_ort']:.2f}x | {r['untuned_vs_ort']:.2f}x | "
                   + (f"{p['median']:.3f} ({p['q1']:.3f}-{p['q3']:.3f}) |"
                      if (p := r.get("tuned_vs_untuned_paired")) else "- |"))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", metavar="MODEL")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--trials", type=int, default=32, help="trials per kernel (nnef-tune)")
    ap.add_argument("--time-budget", type=float, help="tuning wall-time budget per model (s)")
    ap.add_argument("--strategy", default="both",
                    choices=("both", "template", "evolutionary", "replay"))
    ap.add_argument("--tuning-dir", help="tuning store to use (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=15, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=5,
                    help="runs of each engine per round (median over all runs)")
    ap.add_argument("--skip-tuning", action="store_true",
                    help="time the records already in --tuning-dir (no nnef-tune run)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.skip_tuning and not args.tuning_dir:
        ap.error("--skip-tuning needs --tuning-dir")
    from nnef_tvm.schedules.device_key import cpu_model
    cmd = "python scripts/bench_tuned.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"CPU: {cpu_model()}  threads: {args.threads}  load average: {load_average()}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tuned-store-") as tmp_store:
        store = os.path.abspath(args.tuning_dir) if args.tuning_dir else tmp_store
        os.makedirs(store, exist_ok=True)
        for arg in args.models:
            rows.append(bench_model(arg, args, store))
    print()
    print(table(rows))
    print(f"\nload average at the end: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "command": cmd, "threads": args.threads,
                       "method": "median of alternating rounds, one process per engine",
                       "repeat": args.repeat, "warmup": args.warmup, "results": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
