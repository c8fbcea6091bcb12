"""Time a compiled library on a remote device over TVM RPC (direct or via a tracker).

Upload and module loading happen first and are not timed. Timing runs on the
device itself with TVM's ``time_evaluator`` on a saved closure of ``main``
(``VirtualMachine.save_function``) with ``number=1`` -- each sample is one
synchronous run, and the network round trip is not in the numbers. Warm-up
runs go through the same evaluator and are discarded (the evaluator also
discards its own first call).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import NNEFError

from .runner import summarize

SAVED = "nnef_bench_main"


def registered_keys(tracker: str) -> set[str]:
    """Device keys the servers registered at ``tracker`` (HOST:PORT)."""
    from tvm import rpc as tvm_rpc
    from ..runtime import _host_port
    host, port = _host_port(tracker, "--tracker")
    try:
        summary = tvm_rpc.connect_tracker(host, port).summary()
    except Exception as e:  # connection refused, not a tracker
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NNEFError(f"cannot reach the tracker at {tracker}: {msg}") from None
    keys = set()
    for item in summary.get("server_info", []):
        k = str(item.get("key", ""))
        keys.add(k.split(":", 1)[1] if k.startswith("server:") else k)
    return keys


def check_key(tracker: str, key: Optional[str]) -> None:
    """Fail fast (a tracker request for an absent key waits forever)."""
    keys = registered_keys(tracker)
    if key not in keys:
        have = ", ".join(sorted(keys)) or "none"
        raise NNEFError(f"no device with key '{key}' at the tracker {tracker} "
                        f"(registered keys: {have})")


def run_remote(library: str, device: str, inputs: dict, output_order: list[str], *,
               warmup: int, repeat: int, rpc: Optional[str] = None,
               tracker: Optional[str] = None, key: Optional[str] = None) -> dict:
    """Result dict like the worker's (``stats``, ``samples_ms``, ``outputs`` arrays)."""
    from .. import runtime
    if tracker is not None:
        check_key(tracker, key)
    session = runtime.connect(rpc, tracker=tracker, key=key)
    model = runtime.load(library, device, session=session)
    args = model._arguments(inputs, None)
    first = runtime._flatten(model._main(*args))          # first run: excluded
    vm = model.vm
    vm.save_function(model.metadata.get("entry", "main"), SAVED, *args)
    if warmup:
        vm.time_evaluator(SAVED, model.device, number=int(warmup), repeat=1)()
    res = vm.time_evaluator(SAVED, model.device, number=1, repeat=int(repeat))()
    samples = [float(s) for s in res.results]
    names = output_order if len(output_order) == len(first) else \
        [f"output{i}" for i in range(len(first))]
    return {"stats": summarize(samples).to_dict(), "samples_ms": [s * 1e3 for s in samples],
            "memory": None, "outputs_arrays": {n: np.asarray(v) for n, v in zip(names, first)}}
