"""Benchmark one NNEF model: nnef-tvm on each device against the runtimes users would pick.

:func:`benchmark` compiles the model for each named target (through the normal
compile path, so stored tuning records apply), runs it on this machine when
the target runs here, or on a remote device over RPC (``rpc='host:port'``, or
a tracker plus device keys), then runs the comparison runtimes of
:mod:`.peers` on the same inputs. The result is one JSON-able dict (schema
``nnef-tvm-bench/1``, see :data:`ROW_KEYS`) that :mod:`.report` turns into a
table, CSV or plot; ``compiled`` records, per target, the TVM target, the
kernel count and the tuning summary the compiler reported (which stored
tuning records were applied).

Agreement: every row's outputs are compared with ``reference.npz`` when one
is found beside the model (the zoo layout ``<name>/nnef`` +
``<name>/reference.npz``, which also supplies the inputs), else with the
outputs of the first comparison runtime that ran; ``max_abs_error`` is the
largest absolute difference over all outputs. Quantized models
(:mod:`.quantized`): integer codes in the reference file are mapped to the real
values NNEF tensors hold (inputs before feeding, outputs before comparing), and
``max_error_steps`` gives the error of the quantized outputs in quantization
steps (None for float outputs).

Ratio: ``ratio_to_best_alternative`` = this row's median / the smallest
median among the *other* runtimes measured on the same host (below 1: faster
than every alternative there).
"""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
from dataclasses import asdict
from typing import Callable, Optional

import numpy as np

from ..errors import NNEFError
from . import peers as peers_mod
from .runner import MemoryProbe

SCHEMA = "nnef-tvm-bench/1"
TVM = "nnef-tvm"
LOCAL = "local"

# every row carries exactly these keys (None where a value does not apply)
ROW_KEYS = ("runtime", "target", "host", "device", "source", "status", "note", "threads",
            "samples", "median_ms", "p90_ms", "min_ms", "mean_ms", "throughput_per_s",
            "peak_memory_bytes", "ratio_to_best_alternative", "best_alternative",
            "max_abs_error", "max_error_steps", "profile")
STAT_KEYS = ("samples", "median_ms", "p90_ms", "min_ms", "mean_ms", "throughput_per_s")

Progress = Optional[Callable[[str], None]]


def _row(**kw) -> dict:
    row = {k: None for k in ROW_KEYS}
    row.update(kw)
    return row


def machine_info() -> dict:
    """CPU model, core count and OS of this machine (the host of local rows)."""
    from ..schedules.device_key import cpu_model
    cpu = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def method_info(warmup: int, repeat: int, threads: Optional[int]) -> dict:
    return {
        "timed": ("one synchronous inference per sample, wall clock (time.perf_counter) "
                  "around the call; model loading, input upload and the first run are "
                  "excluded; outputs of nnef-tvm stay on the device, comparison runtimes "
                  "return host arrays"),
        "remote_timed": ("TVM time_evaluator on the device (number=1 per sample), upload "
                         "and network round trip excluded"),
        "warmup": warmup, "repeat": repeat,
        "threads": threads if threads else "runtime default (all cores)",
        "percentile": "nearest-rank",
        "throughput": "1 / median latency (batch as compiled)",
        "memory": MemoryProbe.method + " (local runs only)",
        "ratio": "median / smallest median of the other runtimes on the same host",
    }


def find_reference(model_path: str) -> Optional[str]:
    """``reference.npz`` beside an NNEF folder (zoo layout) or inside it."""
    p = os.path.abspath(os.path.normpath(model_path))
    for cand in (os.path.join(os.path.dirname(p), "reference.npz"),
                 os.path.join(p, "reference.npz")):
        if os.path.isdir(p) and os.path.isfile(cand):
            return cand
    return None


def _split_keys(targets: list[str], keys: Optional[list[str]]) -> dict[str, str]:
    """{target: tracker key}: ``KEY`` entries pair with targets in order; ``TARGET=KEY`` names it."""
    if not keys:
        return {}
    named = {}
    plain = []
    for k in keys:
        t, sep, v = k.partition("=")
        if sep:
            if t not in targets:
                raise NNEFError(f"--keys {k}: '{t}' is not one of the --targets")
            named[t] = v
        else:
            plain.append(k)
    if plain:
        rest = [t for t in targets if t not in named]
        if len(plain) == 1 and len(rest) >= 1:
            plain = plain * len(rest)
        if len(plain) != len(rest):
            raise NNEFError(f"--keys gives {len(plain)} keys for {len(rest)} targets; give one "
                            "key per target, one key for all, or TARGET=KEY pairs")
        named.update(zip(rest, plain))
    return named


def benchmark(model_path: str, **options) -> dict:
    """Benchmark ``model_path`` -> result dict (schema :data:`SCHEMA`); see :func:`run_benchmark`.

    Libraries, exported ONNX models and worker files live in a temporary folder
    that is removed afterwards.
    """
    work = tempfile.mkdtemp(prefix="nnef-bench-")
    try:
        return run_benchmark(model_path, work=work, **options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_benchmark(model_path: str, *, work: str, targets=("x86",), compare=("onnxruntime", "tract",
              "nnef-interpreter"), warmup: int = 10, repeat: int = 50,
              threads: Optional[int] = None, rpc: Optional[str] = None,
              tracker: Optional[str] = None, keys: Optional[list[str]] = None,
              profile: bool = False, profile_runs: int = 10, isolate: bool = True,
              inputs_npz: Optional[str] = None, reference: Optional[str] = None,
              onnx_from: str = "auto", tuning_dir=None, seed: int = 0,
              timeout: Optional[float] = 1800, compiled: Optional[dict] = None,
              progress: Progress = None) -> dict:
    """Benchmark ``model_path`` using the folder ``work`` for its files.

    ``compiled`` ({target name: CompiledModel}) reuses models compiled earlier
    for those targets instead of compiling again (scripts running several
    benchmarks of one model, tests).
    """
    from ..compiler import compile_model
    from ..targets import get_target
    from .worker import execute, run_isolated

    say = progress or (lambda s: None)
    targets = list(targets)
    if rpc and tracker:
        raise NNEFError("give either an RPC server or a tracker, not both")
    if tracker and not keys:
        raise NNEFError("--tracker needs --keys (the device keys the servers registered)")
    key_of = _split_keys(targets, keys) if tracker else {}
    result = {"schema": SCHEMA,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), "method": method_info(warmup, repeat, threads),
              "model": {"path": os.path.abspath(model_path)}, "agreement_reference": None,
              "compiled": {},
              "rows": [], "notes": []}
    rows = result["rows"]
    slot = [0]

    def next_slot():
        slot[0] += 1
        return slot[0]

    # ---------------------------------------------------------------- model
    from .. import load
    model = load(model_path)
    graph = model.graph
    result["model"]["name"] = graph.name
    ref_path = reference or find_reference(model_path)
    ref = dict(np.load(ref_path, allow_pickle=False)) if ref_path else {}
    reuse = dict(compiled or {})
    compiled = {}
    specs = None
    tvm_rows: dict[str, dict] = {}         # target -> its row, in --targets order
    for name in targets:
        tvm_rows[name] = _row(runtime=TVM, target=name, host=LOCAL)
        try:
            tgt = get_target(name, threads=threads)
        except NNEFError as e:
            tvm_rows[name].update(status="skipped", note=str(e.errors[0].message))
            continue
        missing = tgt.available()
        if missing:
            tvm_rows[name].update(status="skipped",
                                  note="cannot build here: " + "; ".join(missing))
            continue
        if not (rpc or name in key_of or tgt.runs_locally):   # nowhere to run it: no compile
            tvm_rows[name].update(status="skipped",
                                  note=f"target '{name}' does not run on this machine; give "
                                       "--rpc HOST:PORT or --tracker HOST:PORT --keys KEY")
            continue
        if name in reuse:
            cm = reuse[name]
        else:
            say(f"compiling for {name}")
        try:
            if name not in reuse:
                cm = compile_model(model, tgt, tuning_dir=tuning_dir)
            lib = os.path.join(work, f"model_{name}.so")
            cm.export(lib)
        except NNEFError as e:          # unsupported op, bad tuning dir: this target's note
            tvm_rows[name].update(status="error", note="compile: " + e.errors[0].message)
            continue
        except Exception as e:          # a compiler bug on this model: recorded, not fatal
            last = str(e).strip().splitlines()
            tvm_rows[name].update(status="error", note=f"compile: {type(e).__name__}: "
                                  f"{last[-1][:300] if last else ''}")
            continue
        compiled[name] = (tgt, cm, lib)
        specs = specs or (cm.inputs, cm.outputs)
        result["compiled"][name] = {"target": tgt.describe(), "kernels": len(cm.kernels),
                                    "tuning": cm.metadata.get("tuning")}
    if specs is None:                     # no target compiled: describe the graph instead
        specs = ([{"name": n, "shape": list(graph.tensors[n].shape or []),
                   "dtype": "float32"} for n in graph.inputs],
                 [{"name": n} for n in graph.outputs])
    in_specs, out_specs = specs
    input_order = [s["name"] for s in in_specs]
    output_order = [s["name"] for s in out_specs]
    result["model"]["inputs"] = [{k: s.get(k) for k in ("name", "shape", "dtype")}
                                 for s in in_specs]
    result["model"]["outputs"] = [{k: s.get(k) for k in ("name", "shape", "dtype")}
                                  for s in out_specs]
    if inputs_npz:
        with np.load(inputs_npz, allow_pickle=False) as d:
            feed = {n: d[n] for n in input_order if n in d.files}
        if len(feed) != len(input_order):
            raise NNEFError(f"inputs must hold {', '.join(input_order)}", file=inputs_npz)
        result["inputs_source"] = os.path.abspath(inputs_npz)
    elif ref and all(n in ref for n in input_order):
        feed = {n: ref[n] for n in input_order}
        result["inputs_source"] = ref_path
    else:
        from ..runtime import random_input
        rng = np.random.default_rng(seed)
        feed = {s["name"]: random_input(rng, s) for s in in_specs}
        result["inputs_source"] = f"random (numpy default_rng seed {seed})"
    if not result["inputs_source"].startswith("random"):
        from .quantized import real_feed
        feed, converted = real_feed(feed, graph, {s["name"]: s.get("dtype") or "float32"
                                                  for s in in_specs})
        if converted:
            result["notes"].append("inputs given as quantization codes were dequantized with "
                                   f"graph.quant: {', '.join(converted)}")
    inputs_file = os.path.join(work, "inputs.npz")
    np.savez(inputs_file, **feed)
    from .quantized import real_reference
    ref_outputs, ref_grids = real_reference({n: ref[n] for n in output_order if n in ref}, graph)
    if ref_grids:
        result["notes"].append("reference outputs given as quantization codes were dequantized "
                               f"with graph.quant: {', '.join(ref_grids)} (max err in real "
                               "units; max_error_steps in quantization steps)")
    if ref_outputs:
        result["agreement_reference"] = ref_path

    base_job = {"inputs": inputs_file, "input_order": input_order,
                "output_order": output_order, "warmup": warmup, "repeat": repeat,
                "threads": threads}
    outputs_of: dict[int, dict] = {}
    tvm_outputs: dict[str, dict] = {}

    def launch(job):
        job["slot"] = next_slot()
        job["outputs"] = os.path.join(work, f"outputs_{job['slot']}.npz")
        res = run_isolated(job, work, timeout) if isolate else execute(job)
        if "stats" in res and os.path.isfile(job["outputs"]):
            with np.load(job["outputs"], allow_pickle=False) as d:
                res["outputs_arrays"] = {k: d[k] for k in d.files}
        return res

    # ---------------------------------------------------------- nnef-tvm runs
    for name, (tgt, cm, lib) in compiled.items():
        kernels = [asdict(k) for k in cm.kernels]
        key = key_of.get(name)
        remote = bool(rpc) or key is not None
        if remote:
            host = f"rpc {rpc}" if rpc else f"tracker {tracker} key {key}"
            say(f"running {name} on {host}")
            try:
                from .remote import run_remote
                res = run_remote(lib, tgt.device, feed, output_order, warmup=warmup,
                                 repeat=repeat, rpc=rpc, tracker=tracker, key=key)
            except NNEFError as e:
                res = {"error": e.errors[0].message}
            except Exception as e:  # RPC failures: a note on the row, not a crash
                last = str(e).strip().splitlines()
                res = {"error": f"{type(e).__name__}: {last[-1] if last else ''}"}
            row = tvm_rows[name]
            row.update(host=host, device=f"{tgt.device} (remote)", source="nnef-tvm library",
                       threads=threads)
            if profile:
                row["note"] = "profile: local runs only (the VM instrument is a Python callback)"
        else:
            say(f"running {name} here")
            job = dict(base_job, kind="tvm", runtime=TVM, library=lib, device=tgt.device,
                       profile=profile, profile_runs=profile_runs)
            res = launch(job)
            row = tvm_rows[name]
            row.update(device=f"{tgt.device} (local)", source="nnef-tvm library",
                       threads=threads)
            if profile and "profile_times" in res:
                from .profile import kernel_rows
                row["profile"] = kernel_rows(res["profile_times"], kernels)
        _fill(row, res)
        if "outputs_arrays" in res:
            tvm_outputs[name] = res["outputs_arrays"]
    for name, row in tvm_rows.items():
        rows.append(row)
        if name in tvm_outputs:
            outputs_of[len(rows) - 1] = tvm_outputs[name]

    # ------------------------------------------------------------ peers
    for pname in compare:
        row = _row(runtime=pname, target="-", host=LOCAL, device="cpu (local)", threads=threads)
        peer = peers_mod.PEERS.get(pname)
        if peer is None:
            row.update(status="skipped", note=f"unknown comparison runtime '{pname}' (known: "
                       f"{', '.join(peers_mod.PEERS)})")
            rows.append(row)
            continue
        why = peer.missing()
        if why:
            row.update(status="skipped", note=why)
            rows.append(row)
            continue
        try:
            prepared = peer.prepare(model_path, work, onnx_from=onnx_from)
        except peers_mod.PeerUnavailable as e:
            row.update(status="skipped", note=str(e))
            rows.append(row)
            continue
        row["source"] = prepared.get("source")
        row["note"] = peer.threads_note and f"threads: {peer.threads_note}"
        say(f"running {pname}")
        res = launch(dict(base_job, **prepared, kind="peer", runtime=pname))
        _fill(row, res)
        rows.append(row)
        if "outputs_arrays" in res:
            outputs_of[len(rows) - 1] = res["outputs_arrays"]

    _agreement(result, rows, outputs_of, ref_outputs, ref_grids)
    _ratios(rows)
    return result


def _fill(row: dict, res: dict) -> None:
    if "stats" in res:
        row["status"] = "ok"
        for k in STAT_KEYS:
            row[k] = res["stats"][k]
        mem = res.get("memory")
        row["peak_memory_bytes"] = mem["peak_delta_bytes"] if mem else None
    elif "skipped" in res:
        row["status"] = "skipped"
        row["note"] = _join(row["note"], res["skipped"])
    else:
        row["status"] = "error"
        row["note"] = _join(row["note"], res.get("error", "unknown error"))


def _join(a, b):
    return f"{a}; {b}" if a else b


def _max_abs(got: dict, want: dict) -> Optional[float]:
    worst = None
    for name, ref in want.items():
        if name not in got:
            return None
        a = np.asarray(got[name])
        b = np.asarray(ref)
        if a.shape != b.shape:
            if a.size != b.size:
                return float("inf")
            a = a.reshape(b.shape)
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if b.size else 0.0
        worst = d if worst is None else max(worst, d)
    return worst


def _agreement(result, rows, outputs_of, ref_outputs, grids=None) -> None:
    from .quantized import error_in_steps
    want = ref_outputs
    if not want:
        for i, row in enumerate(rows):
            if row["runtime"] != TVM and i in outputs_of:
                want = outputs_of[i]
                result["agreement_reference"] = f"outputs of {row['runtime']} (first " \
                                                "comparison runtime that ran)"
                break
    if not want:
        result["notes"].append("no reference.npz and no comparison runtime ran: "
                               "agreement not checked")
        return
    for i, got in outputs_of.items():
        rows[i]["max_abs_error"] = _max_abs(got, want)
        if grids and want is ref_outputs:
            rows[i]["max_error_steps"] = error_in_steps(got, want, grids)


def _ratios(rows) -> None:
    for row in rows:
        if row["status"] != "ok":
            continue
        others = [r for r in rows if r is not row and r["status"] == "ok"
                  and r["host"] == row["host"] and r["runtime"] != row["runtime"]]
        if not others:
            continue
        best = min(others, key=lambda r: r["median_ms"])
        row["ratio_to_best_alternative"] = row["median_ms"] / best["median_ms"]
        row["best_alternative"] = best["runtime"] if best["runtime"] != TVM else \
            f"{TVM} {best['target']}"
