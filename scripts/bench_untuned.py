#!/usr/bin/env python3
"""Untuned latency: TVM's default pipeline vs our default schedules vs onnxruntime.

Why: an untuned ``nnef-compile`` must already be usable. TVM 0.27 leaves CPU
kernels unscheduled; ``nnef_tvm.schedules.default`` gives every kernel a
hand-written schedule. This script measures all three on the same machine,
same thread count, batch 1, with alternating rounds (one run of each engine
per round, so a load spike hits all three) and reports medians. Each engine
runs in its own process (:mod:`nnef_tvm.bench.alternate`): in one process the
idle thread pool of one runtime spins on the cores the other one is using.

For each MODEL (an NNEF folder, or a zoo folder holding ``nnef/`` and
``source.onnx``):

* ``tvm-default``  : the project pipeline with the schedule phase emptied
                     (what TVM does without tuning);
* ``tvm-rules``    : the pipeline with ``default_schedule_passes(target)``;
* ``onnxruntime``  : the zoo folder's ``source.onnx`` if present, else the NNEF
                     model converted to ONNX with nnef_tools.

Usage::

    python scripts/bench_untuned.py zoo/resnet18 zoo/mobilenet_v2 /tmp/tiny \
        [--threads N] [--repeat N] [--warmup N] [--skip-default] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from nnef_tvm.schedules.device_key import cpu_model  # noqa: E402


def model_paths(arg: str) -> tuple[str, str | None]:
    """(NNEF folder, source ONNX file or None) for a model argument."""
    nnef_dir = os.path.join(arg, "nnef")
    if os.path.isdir(nnef_dir):
        onnx_file = os.path.join(arg, "source.onnx")
        return nnef_dir, onnx_file if os.path.exists(onnx_file) else None
    parent_onnx = os.path.join(os.path.dirname(os.path.abspath(arg)), "source.onnx")
    if os.path.exists(parent_onnx):     # the zoo's nnef/ folder given directly
        return arg, parent_onnx
    return arg, None


def nnef_to_onnx(nnef_dir: str, work: str) -> str:
    out = os.path.join(work, "model.onnx")
    cmd = [sys.executable, "-m", "nnef_tools.convert", "--input-format", "nnef",
           "--output-format", "onnx", "--input-model", nnef_dir, "--output-model", out]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def build_executable(nnef_dir: str, threads: int, rules: bool):
    """(relax executable, input specs, compile seconds) with or without our default schedules."""
    from tvm import relax
    import nnef_tvm
    from nnef_tvm.compiler import io_specs
    from nnef_tvm.schedules.default import default_schedule_passes
    from nnef_tvm.targets import get_target
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    from nnef_tvm.targets.pipeline import build_executable as generate_code

    start = time.perf_counter()
    model = nnef_tvm.load(nnef_dir)
    mod = nnef_tvm.from_nnef(model)
    inputs, _ = io_specs(mod, model.graph)
    tgt = get_target("x86", threads=threads)
    # without our rules also without our fused kernels: what TVM does on its own
    phases = build_phases(tgt, expand_depthwise=rules)
    for ph in phases:
        if ph.name == "schedule":
            ph.passes = default_schedule_passes(tgt) if rules else []
    lowered = run_phases(mod, tgt, phases)
    ex = generate_code(lowered, tgt) if rules else \
        relax.build(lowered, tgt.tvm(), relax_pipeline=None)
    return ex, inputs, time.perf_counter() - start


def build_tvm(nnef_dir: str, threads: int, rules: bool):
    """(VirtualMachine, input specs, compile seconds): the build loaded in this process."""
    import tvm
    from tvm import relax
    ex, inputs, secs = build_executable(nnef_dir, threads, rules)
    return relax.VirtualMachine(ex, tvm.cpu()), inputs, secs


def build_library(nnef_dir: str, threads: int, rules: bool, path: str):
    """The build exported to ``path`` -> (input specs, compile + export seconds)."""
    start = time.perf_counter()
    ex, inputs, _ = build_executable(nnef_dir, threads, rules)
    ex.export_library(path)
    return inputs, time.perf_counter() - start


def random_inputs(inputs, work: str) -> tuple[str, list]:
    """(npz file, input order) of seeded standard-normal arrays for ``inputs`` (shape/dtype specs).

    Every engine of an alternating benchmark reads the same file, so they all
    compute on identical data.
    """
    import numpy as np
    rng = np.random.default_rng(0)
    order = [f"in{i}" for i in range(len(inputs))]
    arrays = {n: rng.standard_normal([int(d) for d in s.shape]).astype(s.dtype)
              for n, s in zip(order, inputs)}
    npz = os.path.join(work, "inputs.npz")
    np.savez(npz, **arrays)
    return npz, order


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=3,
                    help="timed runs per engine per round (each turn starts with one untimed run)")
    ap.add_argument("--skip-default", action="store_true",
                    help="do not run TVM's unscheduled build (slow on big models)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    import numpy as np
    from nnef_tvm.bench.alternate import Engine, alternate

    print(f"CPU: {cpu_model()}  threads: {args.threads}  batch: 1  "
          f"rounds: {args.repeat} x {args.per_round} runs (median; each engine in its own "
          "process, alternating rounds)",
          flush=True)
    results = []
    for arg in args.models:
        nnef_dir, onnx_file = model_paths(arg)
        name = os.path.basename(os.path.normpath(arg))
        with tempfile.TemporaryDirectory() as work:
            if onnx_file is None:
                onnx_file = nnef_to_onnx(nnef_dir, work)
            compile_s = {}
            libs = {}
            variants = [("tvm-rules", True)] + ([] if args.skip_default else
                                                [("tvm-default", False)])
            inputs = None
            for label, rules in variants:
                libs[label] = os.path.join(work, f"{label}.so")
                inputs, compile_s[label] = build_library(nnef_dir, args.threads, rules,
                                                         libs[label])
            npz, order = random_inputs(inputs, work)
            common = {"inputs": npz, "input_order": order, "threads": args.threads}
            engines = [Engine(label, dict(common, library=libs[label]),
                              "nnef_tvm.bench.alternate:tvm_library_engine") for label in libs]
            engines.append(Engine("onnxruntime", dict(common, onnx=onnx_file),
                                  "nnef_tvm.bench.alternate:onnxruntime_engine"))
            try:
                for e in engines:
                    e.start()
                    if e.error:
                        raise SystemExit(f"{name}: {e.label} failed: {e.error}")
                outs = {}
                for e in engines:
                    outs[e.label] = np.load(e.save_output(os.path.join(work, f"{e.label}.npy")))
                ref = outs["onnxruntime"]
                diff = float(np.abs(outs["tvm-rules"].reshape(ref.shape) - ref).max())
                times = alternate(engines, warmup=args.warmup, repeat=args.repeat,
                                  per_round=args.per_round)
            finally:
                for e in engines:
                    e.close()
        med = {label: float(np.median(v)) * 1e3 for label, v in times.items()}
        # the fast quarter: on a host whose cores slow down in phases of ~100 ms
        # (another tenant on the hyper-thread sibling), each engine's median
        # depends on how many of its runs fell into slow phases; the 25th
        # percentile compares the engines in the fast phase (reported next to
        # the median ratio, not instead of it)
        q1 = {label: float(np.percentile(v, 25)) * 1e3 for label, v in times.items()}
        row = {"model": name, "threads": args.threads, "median_ms": med, "p25_ms": q1,
               "compile_s": compile_s, "max_abs_diff_vs_onnxruntime": diff,
               "ratio_rules_vs_ort": med["tvm-rules"] / med["onnxruntime"],
               "p25_ratio_rules_vs_ort": q1["tvm-rules"] / q1["onnxruntime"]}
        if "tvm-default" in med:
            row["ratio_default_vs_ort"] = med["tvm-default"] / med["onnxruntime"]
            row["speedup_rules_vs_default"] = med["tvm-default"] / med["tvm-rules"]
        results.append(row)
        print(f"  {name}: done (max |tvm-rules - ort| = {diff:.2e})", flush=True)

    print()
    head = f"{'model':<18}{'onnxruntime':>12}{'tvm-rules':>11}{'tvm-default':>13}" \
           f"{'rules/ort':>11}{'default/ort':>13}{'speedup':>9}{'p25 rules/ort':>15}"
    print(head)
    print("-" * len(head))
    for r in results:
        m = r["median_ms"]
        dflt = f"{m['tvm-default']:>11.2f}ms" if "tvm-default" in m else f"{'-':>13}"
        rd = f"{r['ratio_default_vs_ort']:>12.1f}x" if "ratio_default_vs_ort" in r else f"{'-':>13}"
        sp = f"{r['speedup_rules_vs_default']:>8.1f}x" if "speedup_rules_vs_default" in r \
            else f"{'-':>9}"
        print(f"{r['model']:<18}{m['onnxruntime']:>10.2f}ms{m['tvm-rules']:>9.2f}ms{dflt}"
              f"{r['ratio_rules_vs_ort']:>10.2f}x{rd}{sp}{r['p25_ratio_rules_vs_ort']:>14.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "threads": args.threads,
                       "method": "one process per engine, alternating rounds", "results": results},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
