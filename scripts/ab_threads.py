#!/usr/bin/env python3
"""A/B end-to-end latency of thread-pool settings and parallel policies, next to onnxruntime.

Why: on a 2-core machine shared with other work, whether TVM's pool binds its
workers to cores, or whether small kernels launch it at all, changes the
latency by more than the noise between two separate benchmark runs. This
script compares variants in ONE alternating session (one process per engine,
rounds alternate, medians; see :mod:`nnef_tvm.bench.alternate`):

* ``--env LABEL:VAR=VALUE,VAR=VALUE``: the default build run with extra
  environment variables (read by TVM's pool when the engine process starts);
* ``--knobs LABEL:NAME=VALUE,..``: a build scheduled under
  :func:`nnef_tvm.schedules.cpu_common.knob_overrides` (e.g.
  ``parallel.min_work=65536``; values are Python literals).

Usage: python scripts/ab_threads.py zoo/mobilenet_v2 --threads 2
       --env nobind:TVM_BIND_THREADS=0 --knobs old:parallel.min_work=65536
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _pairs(text: str) -> tuple[str, dict]:
    label, _, rest = text.partition(":")
    out = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        out[k] = v
    return label, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--knobs", action="append", default=[])
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args(argv)
    import numpy as np
    from bench_untuned import build_library, model_paths, random_inputs
    from nnef_tvm.bench.alternate import Engine, alternate
    from nnef_tvm.schedules.cpu_common import knob_overrides

    nnef_dir, onnx_file = model_paths(args.model)
    with tempfile.TemporaryDirectory() as work:
        libs = {"base": os.path.join(work, "base.so")}
        inputs, _ = build_library(nnef_dir, args.threads, True, libs["base"])
        for spec in args.knobs:
            label, raw = _pairs(spec)
            values = {k: ast.literal_eval(v) for k, v in raw.items()}
            libs[label] = os.path.join(work, f"{label}.so")
            with knob_overrides(values):
                build_library(nnef_dir, args.threads, True, libs[label])
        npz, order = random_inputs(inputs, work)
        common = {"inputs": npz, "input_order": order, "threads": args.threads}
        plan = [(label, path, {}) for label, path in libs.items()]
        plan += [(lab, libs["base"], env) for lab, env in map(_pairs, args.env)]
        engines = []
        saved = dict(os.environ)
        try:
            for label, path, env in plan:
                os.environ.update(env)
                engines.append(Engine(label, dict(common, library=path),
                                      "nnef_tvm.bench.alternate:tvm_library_engine").start())
                os.environ.clear()
                os.environ.update(saved)
            if onnx_file and not args.no_ort:
                engines.append(Engine("onnxruntime", dict(common, onnx=onnx_file),
                                      "nnef_tvm.bench.alternate:onnxruntime_engine").start())
            outs = {e.label: np.load(e.save_output(os.path.join(work, f"{e.label}.npy")))
                    for e in engines}
            for label, out in outs.items():
                diff = float(np.abs(out.reshape(-1) - outs["base"].reshape(-1)).max())
                print(f"  {label}: max |out - base| = {diff:.2e}")
            times = alternate(engines, warmup=2, repeat=args.repeat, per_round=args.per_round)
        finally:
            for e in engines:
                e.close()
    for label, secs in times.items():
        secs = sorted(secs)
        print(f"{label:14s} median {np.median(secs) * 1e3:7.3f} ms  "
              f"p25 {secs[len(secs) // 4] * 1e3:7.3f}  min {secs[0] * 1e3:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
