"""Speed of the syntax layer on the 10,000-operation flat document of scripts/bench_parser.py.

Shared test machines vary a lot in speed and load, so the test compares CPU time
(``time.process_time``) with a fixed amount of plain Python work measured the same
way (a 10-million-iteration loop, about 0.3-0.5 s on current CPUs). On the slow,
shared development machine the parse took 0.8-1.5x that reference (0.39-0.68 s
CPU); lark's own lexer and parser loop with the same grammar and callbacks take
about 3x longer, and leaving the garbage collector on costs about a third more,
so the 2.5x bound catches either regression.
"""
from __future__ import annotations

import os
import time
from importlib import util

from nnef_tvm.reader import syntax
import pytest
from support.timing import reference_seconds


def _bench_module():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bench_parser.py")
    spec = util.spec_from_file_location("bench_parser", path)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow   # a timing guard: kept out of the default run (no timing asserts there)
def test_parse_10k_operations_is_fast():
    text = _bench_module().generate(10_000)
    syntax.parse(text)                      # grammar loaded, caches warm
    best = float("inf")
    for _ in range(2):
        t = time.process_time()
        doc = syntax.parse(text, "bench.nnef")
        best = min(best, time.process_time() - t)
    assert len(doc.graph.body) == 10_000
    reference = reference_seconds()
    assert best < 2.5 * reference, (best, reference)
