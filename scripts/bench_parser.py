#!/usr/bin/env python3
"""Benchmark the NNEF syntax layer (text -> ast.Document) on a large flat document.

Generates a flat NNEF document with N operations (default 10,000) made of the
lines a converted CNN typically has: ``variable`` with shape/label, ``conv``
with padding/stride/dilation/groups attributes, ``relu``, ``add`` and an
occasional ``max_pool``; then times :func:`nnef_tvm.reader.syntax.parse`.

    python scripts/bench_parser.py [--ops 10000] [--repeat 5] [--save doc.nnef]
"""
from __future__ import annotations

import argparse
import statistics
import time


def generate(num_ops: int) -> str:
    """A valid flat NNEF document with exactly ``num_ops`` operations."""
    lines = ["version 1.0;", "", "graph bench( input ) -> ( output )", "{",
             "    input = external(shape = [1, 16, 64, 64]);"]
    count = 1
    prev = "input"
    block = 0
    while count < num_ops - 1:
        block += 1
        b = f"b{block}"
        block_lines = [
            f"    {b}_w = variable(shape = [16, 16, 3, 3], label = '{b}/filter');",
            f"    {b}_b = variable(shape = [1, 16], label = '{b}/bias');",
            f"    {b}_c = conv({prev}, {b}_w, {b}_b, border = 'constant', "
            f"padding = [(1, 1), (1, 1)], stride = [1, 1], dilation = [1, 1], groups = 1);",
            f"    {b}_r = relu({b}_c);",
            f"    {b}_s = add({b}_r, {prev});",
            f"    {b}_m = mul({b}_s, 0.5);",
        ]
        if block % 4 == 0:
            block_lines.append(
                f"    {b}_p = max_pool({b}_m, size = [1, 1, 3, 3], stride = [1, 1, 1, 1], "
                f"border = 'ignore', padding = [(0, 0), (0, 0), (1, 1), (1, 1)]);")
        for line in block_lines:
            if count >= num_ops - 1:
                break
            lines.append(line)
            count += 1
            prev = line.split("=", 1)[0].strip()
    lines.append(f"    output = copy({prev});")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10_000, help="operations in the document")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs (best and median shown)")
    ap.add_argument("--save", help="also write the generated document here")
    args = ap.parse_args(argv)

    text = generate(args.ops)
    if args.save:
        with open(args.save, "w") as f:
            f.write(text)

    t0 = time.perf_counter()
    from nnef_tvm.reader import syntax
    syntax._get_parser()
    t_setup = time.perf_counter() - t0

    times, cpu_times = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        doc = syntax.parse(text, "bench.nnef")
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    assert len(doc.graph.body) == args.ops, len(doc.graph.body)

    # a fixed pure-Python workload, to compare machines (and load) across runs
    calib = []
    for _ in range(20):
        c0 = time.process_time()
        for _ in range(200):
            sum(range(1000))
        calib.append((time.process_time() - c0) / 200)

    best, median = min(times), statistics.median(times)
    print(f"document: {args.ops} operations, {len(text.splitlines())} lines, "
          f"{len(text) / 1024:.0f} KiB")
    print(f"parser setup (import + grammar load): {t_setup * 1000:.0f} ms")
    print(f"parse to AST: best {best * 1000:.0f} ms, median {median * 1000:.0f} ms "
          f"over {args.repeat} runs")
    print(f"parse CPU time (less sensitive to other load on the machine): "
          f"best {min(cpu_times) * 1000:.0f} ms, median {statistics.median(cpu_times) * 1000:.0f} ms")
    print(f"machine speed reference: sum(range(1000)) takes {min(calib) * 1e6:.1f} us CPU")
    print(f"throughput: {args.ops / best:,.0f} ops/s (best), {args.ops / median:,.0f} ops/s (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
