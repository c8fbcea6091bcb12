"""Run ONE runtime on one model and time it; by default in a process of its own.

A fresh process per runtime keeps the memory numbers honest (no other
runtime's allocations in the peak) and keeps a crashing comparison runtime
from taking the benchmark down. The parent writes a job (JSON) and the inputs
(``.npz``); the worker writes a result JSON and the outputs of its first run
(``.npz``, used for the agreement check)::

    python -m nnef_tvm.bench.worker JOB.json RESULT.json

Job fields: ``kind`` ('tvm' or 'peer'), ``runtime``, ``inputs`` (npz path),
``input_order``/``output_order`` (NNEF names), ``outputs`` (npz to write),
``warmup``, ``repeat``, ``threads``; for TVM ``library``, ``device``,
``profile`` (+ ``profile_runs``); for peers whatever :meth:`Peer.prepare`
returned.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import traceback
from typing import Optional

import numpy as np

from .runner import MemoryProbe, summarize, time_calls


def execute(job: dict) -> dict:
    """Run a job in this process -> result dict (``stats``, ``memory``, or ``skipped``/``error``)."""
    from .peers import PeerUnavailable
    try:
        if job["kind"] == "tvm":
            return _run_tvm(job)
        return _run_peer(job)
    except PeerUnavailable as e:
        return {"skipped": str(e)}
    except Exception as e:  # a runtime that cannot load/run this model: a note, not a crash
        # the first line carries the message (Rust/C++ runtimes append backtraces)
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        return {"error": f"{type(e).__name__}: {lines[0][:300] if lines else ''}".strip(),
                "traceback": traceback.format_exc(limit=4)}


def _inputs(job) -> list:
    with np.load(job["inputs"], allow_pickle=False) as data:
        return [data[n] for n in job["input_order"]]


def _finish(job, first_outputs, samples, probe, extra=None) -> dict:
    names = job["output_order"]
    if len(first_outputs) != len(names):
        names = [f"output{i}" for i in range(len(first_outputs))]
    np.savez(job["outputs"], **{n: np.asarray(v) for n, v in zip(names, first_outputs)})
    result = {"stats": summarize(samples).to_dict(), "samples_ms": [s * 1e3 for s in samples],
              "memory": probe.delta() if probe is not None else None}
    result.update(extra or {})
    return result


def _run_peer(job) -> dict:
    from .peers import get_peer
    peer = get_peer(job["runtime"])
    for m in peer.modules:            # import first: the baseline includes the runtime itself
        importlib.import_module(m)
    probe = MemoryProbe()
    run = peer.load(job, job.get("threads"))
    values = _inputs(job)
    first = [np.asarray(v) for v in run(values)]         # first run: excluded from timing
    samples = time_calls(lambda: run(values), job["warmup"], job["repeat"])
    return _finish(job, first, samples, probe)


def _run_tvm(job) -> dict:
    import tvm  # noqa: F401  (imported before the memory baseline)
    from ..runtime import _flatten, load
    probe = MemoryProbe()
    model = load(job["library"], job.get("device", "cpu"), threads=job.get("threads"))
    values = _inputs(job)
    args = model._arguments(dict(zip(job["input_order"], values)), job["inputs"])
    sync = model.device.sync
    first = _flatten(model._main(*args))                  # first run: excluded from timing
    sync()
    samples = time_calls(lambda: model._main(*args), job["warmup"], job["repeat"], sync)
    extra = {}
    if job.get("profile"):
        from .profile import profile_vm
        extra["profile_times"] = profile_vm(model.vm, model._main, args,
                                            runs=job.get("profile_runs", 10), sync=sync)
    return _finish(job, first, samples, probe, extra)


def run_isolated(job: dict, work: str, timeout: Optional[float] = None) -> dict:
    """Run ``job`` in a fresh Python process -> result dict (errors become ``error``)."""
    path = os.path.join(work, f"job_{job['slot']}.json")
    out = os.path.join(work, f"result_{job['slot']}.json")
    with open(path, "w") as f:
        json.dump(job, f)
    env = dict(os.environ)
    if job.get("threads"):
        env["TVM_NUM_THREADS"] = str(job["threads"])
        env["OMP_NUM_THREADS"] = str(job["threads"])
    cmd = [sys.executable, "-m", "nnef_tvm.bench.worker", path, out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if not os.path.isfile(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return {"error": f"worker exited with status {proc.returncode}: {tail[0][:300]}"}
    with open(out) as f:
        return json.load(f)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_path, result_path = argv
    with open(job_path) as f:
        job = json.load(f)
    result = execute(job)
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
