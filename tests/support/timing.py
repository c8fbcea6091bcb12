"""A machine-speed yardstick for the opt-in performance guards (``-m slow``).

CPU time of a fixed pure-Python loop: guards compare a stage's CPU time with it,
so the bound scales with the machine and ignores other load on it.
"""
import time


def reference_seconds() -> float:
    t = time.process_time()
    s = 0
    for i in range(10_000_000):
        s += i
    return time.process_time() - t
