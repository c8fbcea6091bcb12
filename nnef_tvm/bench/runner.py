"""The timing loop and the statistics every benchmark row reports.

What is timed (the same for every runtime run on this machine, and written into
the report header and the JSON ``method`` block):

* the model is loaded and its inputs are placed where the runtime wants them
  (device upload for TVM) *before* timing starts: loading, upload and the
  first run are excluded;
* ``warmup`` untimed calls follow, then ``repeat`` timed calls, each one
  synchronous (the device is synchronized before the clock stops), one call
  per sample, wall clock (``time.perf_counter``) around the call;
* median, p90 (nearest-rank), min and mean are taken over the samples;
  throughput is ``1 / median`` inferences per second at batch size 1 as
  compiled.

Remote TVM devices are timed on the device by TVM's ``time_evaluator``
(``number=1``), so the network round trip is excluded there.

Peak memory: each local runtime runs in its own worker process
(:mod:`.worker`). Right before the model is loaded (after the runtime's own
libraries were imported) the worker resets the kernel's peak-RSS counter
(``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and records its RSS; the
delta is the peak RSS (``VmHWM`` in ``/proc/self/status``) after the timed
runs minus that baseline. Where the reset is not possible the peak comes from
``getrusage(RUSAGE_SELF).ru_maxrss`` and may include import-time peaks (the
JSON says which).
"""
from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional


@dataclass
class Stats:
    """Latency statistics over the timed samples (seconds in, milliseconds out)."""

    samples: int
    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    throughput_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def summarize(samples_s: list[float]) -> Stats:
    """Stats from per-call wall times in seconds."""
    if not samples_s:
        raise ValueError("no timed samples")
    med = median(samples_s)
    return Stats(samples=len(samples_s), median_ms=med * 1e3,
                 p90_ms=percentile(samples_s, 90) * 1e3, min_ms=min(samples_s) * 1e3,
                 mean_ms=sum(samples_s) / len(samples_s) * 1e3,
                 throughput_per_s=(1.0 / med) if med > 0 else float("inf"))


def time_calls(call: Callable[[], object], warmup: int, repeat: int,
               sync: Optional[Callable[[], None]] = None) -> list[float]:
    """``warmup`` untimed calls, then ``repeat`` timed synchronous calls -> seconds each."""
    for _ in range(warmup):
        call()
        if sync is not None:
            sync()
    samples = []
    clock = time.perf_counter
    for _ in range(repeat):
        start = clock()
        call()
        if sync is not None:
            sync()
        samples.append(clock() - start)
    return samples


# ------------------------------------------------------------------ memory
def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (Linux ``clear_refs`` 5); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (since the last reset where supported)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class MemoryProbe:
    """Records the RSS before loading; :meth:`delta` = peak RSS since - that baseline."""

    method = ("peak RSS (VmHWM, reset via /proc/self/clear_refs before loading) of a "
              "dedicated worker process after the timed runs minus its RSS before the "
              "model was loaded")

    def __init__(self):
        self.reset = reset_peak_rss()
        self.baseline = current_rss_bytes()

    def delta(self) -> dict:
        peak = peak_rss_bytes()
        return {"baseline_rss_bytes": self.baseline, "peak_rss_bytes": peak,
                "peak_delta_bytes": max(0, peak - self.baseline),
                "peak_source": "VmHWM after reset" if self.reset else "ru_maxrss (no reset)"}
