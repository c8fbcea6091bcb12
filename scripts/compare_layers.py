#!/usr/bin/env python3
"""Per-layer latency: each nnef-tvm kernel next to the onnxruntime node(s) computing the same tensors.

For a zoo model folder (``nnef/``, ``source.onnx`` and ``tensor_mapping.json``
written by scripts/make_zoo.py) this runs

* ``nnef-bench --profile`` on the NNEF model (per-kernel times from the Relax
  VM's instrument callback, with the NNEF tensors each kernel computes), and
* onnxruntime's own profiler on ``source.onnx`` (per-node kernel times),

in separate processes, one after the other, with the same thread count
(both read as the median per run over ``--runs`` runs), and joins them through the tensor mapping (ONNX tensor name -> NNEF tensor name;
onnxruntime names a fused node after its last output, e.g. ``.._nchwc``).

Both profilers add a few microseconds per call, so small kernels look slower
than they are on both sides; use the ratios to find the layers that lag, and
scripts/bench_untuned.py for end-to-end numbers. Output: one line per kernel,
worst ratio first (time per call), plus ``--json`` for tools.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np


def ort_node_times(onnx_file: str, threads: int, runs: int, work: str) -> dict:
    """{node name: (median ms per run, input shapes)} from onnxruntime's profiler."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(work, "ort_profile")
    sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(10 + runs):
        sess.run(None, feeds)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    times: dict[str, list] = {}
    shapes: dict[str, list] = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[:-len("_kernel_time")]
        times.setdefault(node, []).append(ev["dur"] / 1000.0)
        shapes[node] = [list(s.values())[0] for s in ev["args"].get("input_type_shape", [])]
    # the first 10 runs are warm-up
    return {n: (float(np.median(v[10:] or v)), shapes[n]) for n, v in times.items()}


def tvm_kernel_times(nnef_dir: str, threads: int, runs: int, work: str) -> list:
    out = os.path.join(work, "tvm_profile.json")
    cmd = [sys.executable, "-m", "nnef_tvm.cli.bench", nnef_dir, "--threads", str(threads),
           "--compare", "none", "--profile", "--repeat", str(runs), "--json", out, "-q"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)["rows"][0]["profile"]


def join(kernels: list, ort_nodes: dict, mapping: dict) -> list:
    """One row per kernel: tvm ms/call, ort ms (matched nodes), shapes."""
    rows = []
    for k in kernels:
        calls = k.get("calls") or 1
        tensors = set(k.get("tensors", []))
        for op in k.get("ops", []):
            tensors |= set(op.get("tensors", []))
        onnx_names = {o for o, n in mapping.items() if n in tensors}
        nodes = [n for n in ort_nodes if re.sub(r"_nchwc$", "", n) in onnx_names]
        ort_ms = sum(ort_nodes[n][0] for n in nodes)
        # medians over runs on both sides (a preempted run inflates a mean)
        tvm_ms = k.get("median_ms", k["ms"]) / calls
        rows.append({"kernel": k["kernel"], "calls": calls, "tvm_ms": tvm_ms,
                     "ort_ms": ort_ms if nodes else None, "ort_nodes": nodes,
                     "shapes": [ort_nodes[n][1] for n in nodes],
                     "ops": sorted({op["op"] for op in k.get("ops", [])})})
    rows.sort(key=lambda r: -(r["tvm_ms"] / r["ort_ms"] if r["ort_ms"] else 0))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="zoo model folder (nnef/, source.onnx, tensor_mapping.json)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    with open(os.path.join(args.model, "tensor_mapping.json")) as f:
        mapping = json.load(f)
    with tempfile.TemporaryDirectory() as work:
        kernels = tvm_kernel_times(os.path.join(args.model, "nnef"), args.threads, args.runs, work)
        nodes = ort_node_times(os.path.join(args.model, "source.onnx"), args.threads,
                               args.runs, work)
    rows = join(kernels, nodes, mapping)
    tvm_total = sum(r["tvm_ms"] * r["calls"] for r in rows)
    print(f"{'kernel':42s} {'calls':>5s} {'tvm ms':>8s} {'ort ms':>8s} {'ratio':>6s}  shapes")
    for r in rows:
        ratio = f"{r['tvm_ms'] / r['ort_ms']:6.2f}" if r["ort_ms"] else "     -"
        ort = f"{r['ort_ms']:8.3f}" if r["ort_ms"] is not None else "       -"
        print(f"{r['kernel'][:42]:42s} {r['calls']:5.0f} {r['tvm_ms']:8.3f} {ort} {ratio}  "
              f"{r['shapes'][0] if r['shapes'] else ''}")
    print(f"sum over kernels: tvm {tvm_total:.3f} ms; onnxruntime nodes "
          f"{sum(v[0] for v in nodes.values()):.3f} ms (per run, {args.threads} thread(s))")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
