"""CPU thread count of TVM's runtime thread pool (kept free of heavy imports: run at package import)."""
from __future__ import annotations

import os


def default_thread_count() -> int:
    """Every CPU this process may run on (its affinity mask; cgroup-pinned containers too)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_default_threads() -> None:
    """Give TVM's CPU thread pool every available CPU unless the user chose a count.

    Why: without ``TVM_NUM_THREADS``, TVM 0.27 uses half of the logical CPUs on
    x86 (it assumes every core is hyper-threaded), so on a 2-vCPU VM or
    container every kernel ran on ONE thread although it was scheduled for
    two (ResNet-18 here: 30 ms instead of 22 ms). The pool is created lazily,
    at the first parallel kernel, and reads the variable then, so it is set
    when nnef_tvm is imported; an explicit ``TVM_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` is left alone. (``runtime.config_threadpool`` also
    resizes a pool, but its affinity modes pinned threads badly here:
    33-45 ms for the same run.)
    """
    if not (os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")):
        os.environ["TVM_NUM_THREADS"] = str(default_thread_count())


def configure_cpu_threads(threads: int) -> None:
    """Use ``threads`` CPU threads from now on.

    Sets ``TVM_NUM_THREADS`` (read when the pool is created); only when that
    changes the count is the pool resized with ``runtime.config_threadpool``,
    in case one already exists (its thread pinning is slower, see above).
    """
    n = int(threads)
    before = os.environ.get("TVM_NUM_THREADS")
    os.environ["TVM_NUM_THREADS"] = str(n)
    if before is not None and before != str(n):
        import tvm
        tvm.get_global_func("runtime.config_threadpool")(0, n)
