#!/usr/bin/env python3
"""Cost of one parallel kernel launch in TVM's CPU thread pool, kernel after kernel.

Why: a Relax VM runs a model as a chain of ~60 kernels; each parallel one is a
launch of TVM's pool (the calling thread runs task 0, the workers the rest,
then the caller waits for them). This script builds one Relax function that
calls a tiny elementwise kernel N times in a row (``x = x + 1`` on ``size``
floats) twice -- once with the loop parallel, once serial -- and reports
the time per call of each, plus the difference: what a launch costs when
the workers are already spinning (back-to-back kernels) versus, with
``--gap-us``, when the caller does other work between calls (the VM's own
bookkeeping, a Python callback) for that long first.

The pool reads its environment once, at creation: run one process per
setting, e.g. ``TVM_THREAD_POOL_SPIN_COUNT=0 python scripts/bench_thread_launch.py``.

Usage: python scripts/bench_thread_launch.py [--threads 2] [--chain 64]
       [--size 4096] [--repeat 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def build(chain: int, size: int, parallel: bool, threads: int):
    import tvm
    from tvm import relax, te, tirx

    x = te.placeholder((size,), "float32", name="x")
    y = te.compute((size,), lambda i: x[i] + tirx.const(1.0, "float32"), name="y")
    func = te.create_prim_func([x, y])
    sch = tvm.s_tir.Schedule(func)
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    outer, inner = sch.split(loop, [threads if parallel else 1, None])
    if parallel:
        sch.parallel(outer)
    _, vec = sch.split(inner, [None, 8])
    sch.vectorize(vec)
    bb = relax.BlockBuilder()
    gv = bb.add_func(sch.mod["main"].with_attr("global_symbol", "step"), "step")
    arg = relax.Var("x", relax.TensorType((size,), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            cur = arg
            for _ in range(chain):
                cur = bb.emit(relax.call_tir(gv, [cur], relax.TensorType((size,), "float32")))
            out = bb.emit_output(cur)
        bb.emit_func_output(out)
    target = tvm.target.Target({"kind": "llvm", "num-cores": threads})
    ex = relax.build(bb.get(), target)
    return relax.VirtualMachine(ex, tvm.cpu())


def time_calls(vm, size: int, repeat: int, gap_us: float) -> float:
    """Median seconds per ``main`` call (after warm-up), busy-waiting ``gap_us`` before each."""
    import numpy as np
    import tvm
    arg = tvm.runtime.tensor(np.zeros(size, "float32"), tvm.cpu())
    fn = vm["main"]
    for _ in range(10):
        fn(arg)
    out = []
    for _ in range(repeat):
        if gap_us:
            end = time.perf_counter() + gap_us * 1e-6
            while time.perf_counter() < end:
                pass
        t = time.perf_counter()
        fn(arg)
        out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chain", type=int, default=64)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--gap-us", type=float, default=0.0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    serial = build(args.chain, args.size, False, args.threads)
    par = build(args.chain, args.size, True, args.threads)
    ts, tp = [], []
    for _ in range(3):          # alternate, keep the best of each
        ts.append(time_calls(serial, args.size, args.repeat, args.gap_us))
        tp.append(time_calls(par, args.size, args.repeat, args.gap_us))
    s, p = min(ts) / args.chain * 1e6, min(tp) / args.chain * 1e6
    env = {k: v for k, v in os.environ.items() if k.startswith("TVM_")}
    print(f"env {env} chain {args.chain} size {args.size} gap {args.gap_us} us: "
          f"serial {s:.2f} us/kernel, parallel {p:.2f} us/kernel, launch ~{p - s:+.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
