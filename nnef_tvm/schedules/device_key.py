"""Device keys: which folder of the tuning store holds a target's records.

A tuned schedule is only as good as the chip it was measured on, so the key
names the chip, not the target preset: the target kind plus the local CPU
model (``/proc/cpuinfo`` ``model name``, and LLVM's ``mcpu`` because virtual
machines often report a generic name) for a CPU target that runs here, the GPU
name and architecture for CUDA, and the preset's ``mcpu``/triple for a board
reached over RPC (``rpi4`` -> ``llvm-cortex-a72``). ``--device-key`` overrides
it, e.g. to keep two boards of the same model apart.

A CPU target built for another thread count than its default (``--threads
N``; locally, the default is every core this process may use) gets the
suffix ``-Nthreads``: the default schedules split work by the core count
(split-K for 2+ cores, the task counts), so records and in-model decisions
(:mod:`.in_model_check`) measured at one thread count do not hold at
another. A remote board's thread count is only known when given, so its
key has the suffix whenever ``--threads`` is.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
from typing import Optional

from .store import sanitize_key


def cpu_model() -> str:
    """This machine's CPU model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def gpu_name() -> Optional[str]:
    """Name of GPU 0 according to nvidia-smi (None without one)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    name = (out.stdout or "").strip().splitlines()
    return name[0].strip() if out.returncode == 0 and name and name[0].strip() else None


def device_key(target, override: Optional[str] = None) -> str:
    """The store folder name for ``target`` (a nnef_tvm Target); ``override`` wins."""
    if override:
        return sanitize_key(override)
    t = target.tvm_target
    kind = str(t.get("kind", "unknown"))
    if kind == "cuda":
        arch = t.get("arch") or getattr(target, "arch", None) or "sm"
        return sanitize_key(f"cuda-{gpu_name() or 'gpu'}-{arch}")
    if kind == "llvm" and target.runs_locally:
        model = cpu_model()
        mcpu = t.get("mcpu")
        if mcpu and str(mcpu).lower() not in model.lower():
            model = f"{model}-{mcpu}"
        return sanitize_key(f"llvm-{model}{_threads_suffix(target, t)}")
    chip = t.get("mcpu") or t.get("mtriple") or target.name
    return sanitize_key(f"{kind}-{chip}{_threads_suffix(target, t)}")


def _threads_suffix(target, t) -> str:
    """``-Nthreads`` for a CPU target built for other than its default thread count."""
    n = t.get("num-cores")
    if n is None or str(t.get("kind")) != "llvm":
        return ""
    if target.runs_locally:
        from ..threads import default_thread_count
        if int(n) == default_thread_count():
            return ""
    return f"-{int(n)}threads"
