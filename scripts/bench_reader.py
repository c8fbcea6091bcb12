#!/usr/bin/env python3
"""The reader's performance targets, measured in one run.

1. Parse and check a generated 10,000-operation graph (target: under 1 s):
   syntax (text -> AST), semantics (AST -> checked Graph) and shape inference,
   each timed separately and together, wall and CPU time.
2. Load a ~100 MB set of weights (target: at most 1.5x reading the raw files):
   see ``scripts/bench_tensors.py``, which this script runs with its defaults.

    python scripts/bench_reader.py [--ops 10000] [--repeat 5] [--skip-tensors]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_parser import generate  # noqa: E402  (same generated document as the parser bench)
from nnef_tvm.schedules.device_key import cpu_model  # noqa: E402


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-tensors", action="store_true")
    args = ap.parse_args(argv)

    from nnef_tvm.reader import semantics, shapes, syntax
    from nnef_tvm.reader.stdlib import standard_fragments

    text = generate(args.ops)
    # one-time costs (grammar tables, stdlib) are paid once per process, not per model
    _, setup_wall, _ = _timed(lambda: (syntax.parse("version 1.0; graph g(x) -> (x) "
                                                    "{ x = external(shape = [1]); }"),
                                       standard_fragments(), semantics.standard_signatures()))
    rows = []
    for _ in range(args.repeat):
        doc, pw, pc = _timed(lambda: syntax.parse(text, "bench.nnef"))
        (graph, _frags), sw, sc = _timed(lambda: semantics.build_graph(doc))
        _, hw, hc = _timed(lambda: shapes.infer_shapes(graph))
        rows.append((pw, pc, sw, sc, hw, hc))
    med = [statistics.median(col) for col in zip(*rows)]
    best = [min(col) for col in zip(*rows)]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"document: {args.ops} operations; one-time setup (grammar + stdlib): {setup_wall*1e3:.0f} ms")
    print(f"{'stage':<12}{'wall med':>10}{'wall best':>11}{'cpu med':>10}{'cpu best':>10}")
    for i, name in enumerate(["syntax", "semantics", "shapes"]):
        print(f"{name:<12}{med[2*i]*1e3:>8.0f}ms{best[2*i]*1e3:>9.0f}ms"
              f"{med[2*i+1]*1e3:>8.0f}ms{best[2*i+1]*1e3:>8.0f}ms")
    tot = [sum(r[0::2]) for r in rows], [sum(r[1::2]) for r in rows]
    print(f"{'parse+check':<12}{statistics.median(tot[0])*1e3:>8.0f}ms{min(tot[0])*1e3:>9.0f}ms"
          f"{statistics.median(tot[1])*1e3:>8.0f}ms{min(tot[1])*1e3:>8.0f}ms   (target < 1000 ms)")
    if not args.skip_tensors:
        print("\n-- weights (scripts/bench_tensors.py) --", flush=True)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "bench_tensors.py")],
                       check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
