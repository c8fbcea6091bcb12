"""``nnef-bench``: time a model compiled by nnef-tvm against the runtimes users would pick.

    nnef-bench MODEL [--targets x86,arm64,cuda,...]
               [--rpc HOST:PORT | --tracker HOST:PORT --keys k1,k2]
               [--compare onnxruntime,tract,nnef-interpreter] [--warmup N] [--repeat N]
               [--threads N] [--json out.json] [--csv out.csv] [--plot out.png] [--profile]

Targets that run on this machine are run here; with ``--rpc`` every target runs
on that RPC server; with ``--tracker`` each target runs on the device of its
key (``--keys`` pairs keys with targets in order, one key serves all, or
``TARGET=KEY``). Comparison runtimes that are missing or cannot load the
model are skipped with a note. See :mod:`nnef_tvm.bench.runner` for exactly
what is timed.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import ArgumentParser, UsageError, positive_int, run_main

PROG = "nnef-bench"
DEFAULT_COMPARE = "onnxruntime,tract,nnef-interpreter"


def _names(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Benchmark an NNEF model: nnef-tvm on each "
                       "device vs onnxruntime, tract and NNEF-Tools' interpreter.")
    p.add_argument("model", help="NNEF model folder (or .tgz/.zip/graph.nnef)")
    p.add_argument("--targets", default="x86", help="comma-separated target names (x86)")
    p.add_argument("--rpc", metavar="HOST:PORT", help="run every target on this RPC server")
    p.add_argument("--tracker", metavar="HOST:PORT", help="RPC tracker to request devices from")
    p.add_argument("--keys", help="device keys at the tracker: k1,k2 (one per target), one "
                   "key for all, or TARGET=KEY")
    p.add_argument("--compare", default=DEFAULT_COMPARE,
                   help=f"comparison runtimes, or 'none' (default {DEFAULT_COMPARE})")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (10)")
    p.add_argument("--repeat", type=positive_int, default=50, help="timed runs (50)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for every runtime")
    p.add_argument("--onnx-from", choices=["auto", "source", "export"], default="auto",
                   help="onnxruntime's model: the zoo source.onnx beside the folder (auto, "
                   "when present) or an NNEF-Tools export")
    p.add_argument("--inputs", help=".npz with the inputs (default: reference.npz or random)")
    p.add_argument("--reference", help=".npz with reference outputs (default: reference.npz "
                   "beside the model)")
    p.add_argument("--tuning-dir", help="MetaSchedule database to compile with")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one CSV line per runtime/device")
    p.add_argument("--plot", metavar="FILE", help="write a latency bar chart (PNG)")
    p.add_argument("--profile", action="store_true",
                   help="per-kernel times mapped to NNEF operations (local runs)")
    p.add_argument("--in-process", action="store_true",
                   help="run every runtime in this process (no per-runtime memory isolation)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(PROG, _run, build_parser(), argv)


def _run(args) -> int:
    from ..bench import benchmark
    from ..bench.report import format_table, write_csv, write_json, write_plot
    if args.rpc and args.tracker:
        raise UsageError("give either --rpc or --tracker, not both")
    if args.keys and not args.tracker:
        raise UsageError("--keys goes with --tracker")
    if args.tracker and not args.keys:
        raise UsageError("--tracker needs --keys")
    if args.warmup < 0:
        raise UsageError("--warmup must be >= 0")
    targets = _names(args.targets)
    if not targets:
        raise UsageError("--targets needs at least one target name")
    compare = [] if args.compare.strip().lower() == "none" else _names(args.compare)
    progress = None if args.quiet else (lambda s: print(f"{PROG}: {s}", file=sys.stderr,
                                                          flush=True))
    result = benchmark(args.model, targets=targets, compare=compare, warmup=args.warmup,
                       repeat=args.repeat, threads=args.threads, rpc=args.rpc,
                       tracker=args.tracker, keys=_names(args.keys) if args.keys else None,
                       profile=args.profile, isolate=not args.in_process,
                       inputs_npz=args.inputs, reference=args.reference,
                       onnx_from=args.onnx_from, tuning_dir=args.tuning_dir,
                       progress=progress)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.csv:
        write_csv(result, args.csv)
        print(f"wrote {args.csv}")
    if args.plot:
        write_plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
