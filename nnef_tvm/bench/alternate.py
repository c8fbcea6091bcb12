"""Time several engines side by side, each in its own long-lived process, in alternating rounds.

Why separate processes: onnxruntime's and TVM's thread pools both spin-wait
for a while after each run. Timed in one process, the idle pool of one engine
keeps the cores busy while the other engine runs, and on a 2-core machine that
made our 2-thread latency look 3-4x worse than it is. Why alternating rounds:
a load spike on a shared machine then hits every engine, not only the one that
happened to run during it.

An engine is a *spec* (a JSON-able dict) plus a *builder*, named as
``"module:function"``; the worker process imports the builder and calls
``builder(spec)``, which returns ``(run, outputs)``: ``run()`` does one
synchronous inference, ``outputs()`` returns the first output as a numpy
array. Specs carry what the builder needs (model path, threads, ...); the
worker sets ``TVM_NUM_THREADS`` / ``OMP_NUM_THREADS`` from ``spec["threads"]``
before importing anything, because TVM's thread pool reads it once.

Protocol on the worker's stdin/stdout (one JSON document per line):
``{"run": n}`` -> ``{"secs": [...]}``; ``{"output": path}`` (a ``.npy`` file) ->
``{"saved": path}``;
``{"quit": true}``. The first line the worker prints is ``{"ready": build_secs}``
or ``{"error": text}``.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Engine:
    """A started worker process for one engine."""

    label: str
    spec: dict
    builder: str
    proc: Optional[subprocess.Popen] = None
    build_secs: Optional[float] = None
    error: Optional[str] = None
    times: list = field(default_factory=list)

    def start(self, timeout: float = 1800.0) -> "Engine":
        env = dict(os.environ)
        threads = self.spec.get("threads")
        if threads:
            env["TVM_NUM_THREADS"] = str(threads)
            env["OMP_NUM_THREADS"] = str(threads)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnef_tvm.bench.alternate", self.builder,
             json.dumps(self.spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        reply = self._read()
        if "error" in reply:
            self.error = reply["error"]
            self.close()
        else:
            self.build_secs = float(reply["ready"])
        return self

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"{self.label}: worker exited (code {self.proc.poll()})"}
        return json.loads(line)

    def ask(self, message: dict) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def run(self, n: int) -> list:
        reply = self.ask({"run": n})
        if "error" in reply:
            raise RuntimeError(f"{self.label}: {reply['error']}")
        return reply["secs"]

    def save_output(self, path: str) -> str:
        return self.ask({"output": path})["saved"]

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
        except Exception:  # pragma: no cover - a worker that hangs on exit
            self.proc.kill()
        self.proc = None


def alternate(engines: list[Engine], *, warmup: int = 3, repeat: int = 10,
              per_round: int = 1, pause: float = 0.2, rewarm: int = 1) -> dict[str, list]:
    """Warm each engine up, then ``repeat`` rounds of ``per_round`` timed runs per engine.

    ``pause`` seconds between engines let the previous engine's spinning
    threads go to sleep before the next one is timed. Each engine's turn
    starts with ``rewarm`` untimed runs: after the pause its own worker
    threads are asleep and its caches cold, and timing that first run would
    measure thread wake-up, not steady-state inference (what users of a
    runtime in a serving loop see, and what nnef-bench times). Engines that
    failed to start are skipped. Returns label -> per-run seconds.
    """
    live = [e for e in engines if e.error is None]
    for e in live:
        e.run(warmup)
        time.sleep(pause)
    for _ in range(repeat):
        for e in live:
            if rewarm:
                e.run(rewarm)
            e.times.extend(e.run(per_round))
            time.sleep(pause)
    return {e.label: list(e.times) for e in live}


# ------------------------------------------------------------------ builders
def _inputs(spec) -> list:
    import numpy as np
    with np.load(spec["inputs"], allow_pickle=False) as data:
        return [data[n] for n in spec["input_order"]]


def tvm_library_engine(spec):
    """A compiled nnef-tvm library (``spec['library']``) on the local CPU."""
    import tvm
    from tvm import relax
    dev = tvm.cpu()
    vm = relax.VirtualMachine(tvm.runtime.load_module(spec["library"]), dev)
    args = [tvm.runtime.tensor(a, dev) for a in _inputs(spec)]
    fn = vm["main"]
    state = {}

    def run():
        state["out"] = fn(*args)

    def outputs():
        out = state["out"]
        first = out if hasattr(out, "numpy") else out[0]
        return first.numpy()
    return run, outputs


def onnxruntime_engine(spec):
    """onnxruntime's CPU provider on ``spec['onnx']`` with ``spec['threads']`` intra-op threads."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if spec.get("threads"):
        so.intra_op_num_threads = int(spec["threads"])
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), _inputs(spec))}
    state = {}

    def run():
        state["out"] = sess.run(None, feeds)

    return run, lambda: state["out"][0]


# ------------------------------------------------------------------ worker side
def _worker(builder_name: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    out = sys.stdout
    # builders may print; keep the protocol channel clean
    sys.stdout = sys.stderr
    try:
        mod_name, fn_name = builder_name.split(":")
        start = time.perf_counter()
        run, outputs = getattr(importlib.import_module(mod_name), fn_name)(spec)
        run()   # first run (allocation, lazy init) is never timed
        ready = time.perf_counter() - start
    except Exception as exc:
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": ready}) + "\n")
    out.flush()
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("quit"):
            break
        try:
            if "run" in msg:
                secs = []
                for _ in range(int(msg["run"])):
                    t = time.perf_counter()
                    run()
                    secs.append(time.perf_counter() - t)
                reply = {"secs": secs}
            elif "output" in msg:
                import numpy as np
                np.save(msg["output"], outputs())
                reply = {"saved": msg["output"]}
            else:
                reply = {"error": f"unknown request {msg!r}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
