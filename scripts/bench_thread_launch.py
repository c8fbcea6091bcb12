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

With ``--cross``, every other kernel of a third chain has its tasks swap
halves (task 0 works on the half task 1 wrote): what reading a producer's
output from the other core's cache costs, as happens in a model when
consecutive kernels split their work differently.

Usage: python scripts/bench_thread_launch.py [--threads 2] [--chain 64]
       [--size 4096] [--repeat 200] [--gap-us 0] [--cross]
"""
from __future__ import annotations

import argparse
import os
import sys
import time


_STEP = """
@T.prim_func(s_tir=True)
def {name}(x: T.Buffer(({size},), "float32"), y: T.Buffer(({size},), "float32")):
    T.func_attr({{"tirx.noalias": True, "tirx.is_scheduled": True}})
    with T.sblock("root"):
        for t in T.{kind}({parts}):
            for j in range({vectors}):
                for v in T.vectorized(8):
                    with T.sblock("y"):
                        i = T.axis.spatial({size}, {first} * {chunk} + j * 8 + v)
                        y[i] = x[i] + T.float32(1)
"""


def _step(size: int, parallel: bool, threads: int, reverse: bool):
    """``y = x + 1`` in ``threads`` contiguous chunks, one per task; ``reverse``: task t
    works on chunk ``threads - 1 - t`` (the chunk another task wrote in an ordinary step)."""
    from tvm.script import from_source
    parts = threads if parallel else 1
    chunk = size // parts
    name = "step_r" if reverse else "step"
    text = _STEP.format(name=name, size=size, kind="parallel" if parallel else "serial",
                        parts=parts, vectors=chunk // 8, chunk=chunk,
                        first=f"({parts - 1} - t)" if reverse else "t")
    return from_source(text).with_attr("global_symbol", name)


def build(chain: int, size: int, parallel: bool, threads: int, cross: bool = False):
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    gv = bb.add_func(_step(size, parallel, threads, False), "step")
    gr = bb.add_func(_step(size, parallel, threads, True), "step_r") if cross else gv
    arg = relax.Var("x", relax.TensorType((size,), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            cur = arg
            for i in range(chain):
                fn = gr if i % 2 else gv
                cur = bb.emit(relax.call_tir(fn, [cur], relax.TensorType((size,), "float32")))
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
    ap.add_argument("--cross", action="store_true",
                    help="also time a chain whose every other kernel swaps the threads' halves")
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
    if args.cross:
        cross = build(args.chain, args.size, True, args.threads, cross=True)
        tc = [time_calls(cross, args.size, args.repeat, args.gap_us) for _ in range(3)]
        tp = [time_calls(par, args.size, args.repeat, args.gap_us) for _ in range(3)]
        c, p = min(tc) / args.chain * 1e6, min(tp) / args.chain * 1e6
        print(f"  each kernel reading the other thread's half: {c:.2f} us/kernel "
              f"(same half: {p:.2f}; {(c - p) * 1e3 / (args.size * 4 / 1024):+.1f} ns per KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
