"""Per-kernel times of a compiled model, mapped back to the NNEF operations.

TVM 0.27's Relax VM has no ``profile()`` entry any more; what it keeps is
``VirtualMachine.set_instrument``: a callback invoked before and after every
``Call`` instruction with the callee's symbol. :func:`profile_vm` installs a
callback that reads the wall clock (after a device synchronize) around each
call and sums the time per symbol in each of ``runs`` runs of ``main``. Both
the mean and the median over runs are kept: on a shared machine one
preempted run can double a small kernel's mean, and onnxruntime's profiler
is read as a median (scripts/compare_layers.py compares medians). The
callback itself costs a few microseconds per call, so the per-kernel numbers
add up to somewhat more than the un-instrumented latency; shares are
therefore reported relative to the instrumented total.

Kernel symbols are the fused-function names of the compile step's fusion
report (:mod:`nnef_tvm.targets.fusion_report`), which lists the NNEF
operations (and their ``file:line:column``) each kernel computes; calls into
the VM's own builtins (allocation, reshape views, shape checks) are pooled in
one ``vm builtins`` row. Local runs only: the callback is a Python function
and cannot run on an RPC server.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

BUILTINS = "vm builtins"


def profile_vm(vm, entry: Callable, args: list, runs: int = 10,
               sync: Optional[Callable[[], None]] = None) -> dict[str, dict]:
    """{symbol: {'calls', 'total_ms' (mean), 'median_ms'}} per run, over ``runs`` runs."""
    n = max(1, runs)
    totals: dict[str, list] = {}     # symbol -> [calls, seconds in each run]
    current = [0]                    # index of the run in progress
    stack: list[tuple[str, float]] = []
    clock = time.perf_counter

    def instrument(func, symbol, before_run, ret_value, *call_args):
        if before_run:
            if sync is not None:
                sync()
            stack.append((str(symbol), clock()))
        elif stack:
            if sync is not None:
                sync()
            sym, start = stack.pop()
            slot = totals.setdefault(sym, [0, [0.0] * n])
            slot[0] += 1
            slot[1][current[0]] += clock() - start
        return 0                       # VMInstrumentReturnKind.NO_OP: go on as usual

    vm.set_instrument(instrument)
    try:
        for i in range(n):
            current[0] = i
            entry(*args)
    finally:
        vm.set_instrument(_no_instrument)
    return {sym: {"calls": c / n, "total_ms": sum(t) / n * 1e3,
                  "median_ms": statistics.median(t) * 1e3}
            for sym, (c, t) in totals.items()}


def _no_instrument(func, symbol, before_run, ret_value, *args):
    return 0


def kernel_rows(times: dict[str, dict], kernels: list[dict]) -> list[dict]:
    """Rows sorted by time: kernel, ms per run, share, calls, NNEF ops (with positions)."""
    by_name = {k["name"]: k for k in kernels}
    rows = []
    builtin = {"calls": 0.0, "total_ms": 0.0, "median_ms": 0.0}
    for sym, t in times.items():
        if sym.startswith("vm.builtin.") or sym.startswith("vm."):
            builtin["calls"] += t["calls"]
            builtin["total_ms"] += t["total_ms"]
            builtin["median_ms"] += t.get("median_ms", t["total_ms"])
            continue
        k = by_name.get(sym)
        ops = _unique_ops(k["ops"]) if k else []
        rows.append({"kernel": sym, "ms": t["total_ms"], "calls": t["calls"],
                     "median_ms": t.get("median_ms", t["total_ms"]), "ops": ops,
                     "tensors": list(k["tensors"]) if k else []})
    if builtin["calls"]:
        rows.append({"kernel": BUILTINS, "ms": builtin["total_ms"], "calls": builtin["calls"],
                     "median_ms": builtin["median_ms"], "ops": [], "tensors": []})
    total = sum(r["ms"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["ms"] / total
    rows.sort(key=lambda r: -r["ms"])
    return rows


def _unique_ops(ops: list[dict]) -> list[dict]:
    """One entry per NNEF operation (helper values ``<tensor>_<n>`` share their op)."""
    seen: dict = {}
    out = []
    for o in ops:
        key = (o["op"], o.get("pos"))
        if key in seen:
            seen[key]["tensors"].append(o["tensor"])
            continue
        entry = {"op": o["op"], "tensor": o["tensor"], "pos": o.get("pos"),
                 "tensors": [o["tensor"]]}
        seen[key] = entry
        out.append(entry)
    return out


def format_profile(rows: list[dict], title: str = "") -> str:
    """A text table: kernel, ms/run, share, then one line per NNEF op it came from."""
    lines = [title] if title else []
    lines.append(f"  {'kernel':40s} {'ms/run':>9s} {'share':>6s}  NNEF operations")
    for r in rows:
        ops = ", ".join(o["op"] for o in r["ops"]) or ("-" if r["kernel"] == BUILTINS
                                                         else "(no NNEF origin)")
        lines.append(f"  {r['kernel'][:40]:40s} {r['ms']:9.4f} {r['share'] * 100:5.1f}%  {ops}")
        for o in r["ops"]:
            if o.get("pos"):
                lines.append(f"  {'':40s} {'':9s} {'':6s}    {o['op']} -> {o['tensor']} at "
                             f"{o['pos']}")
    return "\n".join(lines)
