"""CPU thread count of TVM's runtime thread pool (kept free of heavy imports: run at package import).

How TVM 0.27's pool runs a parallel kernel (src/runtime/thread_pool.cc,
threading_backend.cc), measured on the 2-vCPU development machine with
``scripts/bench_thread_launch.py``:

* the pool has ``TVM_NUM_THREADS`` workers (read once, when the first parallel
  kernel creates it); the calling thread runs task 0 itself and each other
  task goes to one worker's single-slot queue. Every task gets a fixed,
  contiguous share of the parallel loop (no work stealing): a kernel ends
  when its slowest thread does;
* between kernels a worker spins ``TVM_THREAD_POOL_SPIN_COUNT`` (default
  300000) times on ``sched_yield`` before it sleeps on a condition variable,
  i.e. tens to hundreds of milliseconds: within one inference the workers
  never sleep (the VM's own work between kernels is microseconds). A launch
  to spinning workers costs about 1.3-1.8 us per kernel (64-kernel chain,
  back to back or with 0.05-150 ms gaps); to sleeping ones (spin count 0)
  6.6 us;
* workers are pinned one per core (``TVM_BIND_THREADS``, default on), the
  calling thread may run on all of them. Unpinned was no better: launches
  under load from other processes 6.3-9.5 vs 5.0-5.9 us per 64K-element
  kernel, end to end MobileNetV2 / ResNet-18 at 2 threads within noise.

So nothing is set here beyond the thread count; what costs time at 2
threads on a shared machine is the fixed split when the other core is busy
with another process (the kernel waits for its descheduled worker), not
the launch itself.
"""
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
