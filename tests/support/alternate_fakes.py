"""Builders for tests/bench/bench_alternate_test.py (imported by the worker processes)."""
import time

import numpy as np


def sleeper(spec):
    """Each run sleeps spec['ms'] milliseconds; the output is arange(spec['n'])."""
    def run():
        time.sleep(spec["ms"] / 1000.0)
    return run, lambda: np.arange(spec["n"], dtype="float32")


def broken(spec):
    raise ValueError("model file is missing: " + spec["path"])
