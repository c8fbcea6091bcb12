"""The channel-vector rule's software prefetch of the next weight block (1x1 convolutions).

Numeric checks compare with numpy's NNEF ``conv`` (cross-correlation, NCHW
data, OIHW filter, bias per channel) plus the fused epilogue, in float64
(``schedules_conv_split_k_test.build_and_run``). Structure checks read the
scheduled TIR: how many cache lines each output row asks for, that the
prefetches sit at the top of the row loop and not in the reduction loop (where
they would keep LLVM from holding the accumulators in registers), that only
packed constant weights of 1x1 windows get them, and that a replayed trace (a
tuned record) gets them back through ``materialize_prefetch``.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.targets import get_target  # noqa: E402
from schedules_conv_split_k_test import build_and_run, pointwise_module  # noqa: E402,I100

PREFETCH = "llvm.prefetch"
ON = {"conv.channel_vector.prefetch": 1}


def _only(scripts) -> str:
    assert len(scripts) == 1, sorted(scripts)
    return next(iter(scripts.values()))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


slow = pytest.mark.slow
CASES = [
    # (batch, cin, cout, h, w, epilogue, threads, rows per task, prefetches per row, split-K)
    # 96 channels x 32 floats of the next tile = 192 lines over 14 rows
    (1, 96, 576, 14, 14, "clip", 2, 14, 14, False),
    # k-block of 32 channels x 32 floats = 64 lines over 7 rows
    (1, 160, 960, 7, 7, "clip", 2, 7, 10, False),
    # split-K with k-blocks: 64 lines over 7 rows
    (1, 960, 160, 7, 7, "resclip", 2, 7, 10, True),
    # split-K: the next tile's slice, 288 channels x 32 floats = 576 lines over 14 rows
    pytest.param(1, 576, 96, 14, 14, "res", 2, 14, 42, True, marks=slow),
    # one core: 3 tiles x 2 row chunks, the whole next tile (576 x 32 floats) over 7 rows
    pytest.param(1, 576, 96, 14, 14, "res", 1, 7, 165, False, marks=slow),
    # batch 2, a non-square map: 6 tiles x 2 row chunks, 128 lines over 3 rows
    pytest.param(2, 64, 96, 6, 10, "clip", 2, 3, 43, False, marks=slow),
]


def _case_id(c):
    c = c.values if hasattr(c, "values") else c
    return f"n{c[0]}_{c[1]}to{c[2]}_{c[3]}x{c[4]}_{c[5]}_t{c[6]}"


@pytest.mark.parametrize("n,cin,cout,h,w,epi,threads,rows,per_row,split", CASES,
                         ids=[_case_id(c) for c in CASES])
def test_prefetch_matches_numpy_and_sits_in_the_row_loop(n, cin, cout, h, w, epi, threads,
                                                          rows, per_row, split):
    got, want, scripts = build_and_run(n, cin, cout, h, w, epi,
                                       get_target("x86", threads=threads), knobs=ON)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = _only(scripts)
    assert ("_rf" in text) == split
    lines = text.splitlines()
    calls = [i for i, line in enumerate(lines) if PREFETCH in line]
    assert len(calls) == per_row
    assert "nnef.prefetch_weights" not in text          # materialised: annotation dropped
    # the loop right around the prefetches is the row loop, not the reduction
    first = calls[0]
    around = next(line for line in reversed(lines[:first])
                  if line.lstrip().startswith("for ") and _indent(line) < _indent(lines[first]))
    assert re.findall(r"T\.int64\((\d+)\)", around)[-1] == str(rows), around


def test_prefetch_can_be_switched_off_and_the_result_is_the_same():
    target = get_target("x86", threads=2)
    on, want, s_on = build_and_run(1, 160, 960, 7, 7, "clip", target, knobs=ON, seed=2)
    off, _, s_off = build_and_run(1, 160, 960, 7, 7, "clip", target, seed=2,
                                  knobs={"conv.channel_vector.prefetch": 0})
    assert PREFETCH in _only(s_on) and PREFETCH not in _only(s_off)
    np.testing.assert_allclose(on, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(off, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=slow)],
                         ids=["plain", "split_k"])
def test_no_prefetch_for_weights_packed_per_task(threads):
    """Weights passed as parameters are packed per task (or read in place): nothing to prefetch."""
    got, want, scripts = build_and_run(1, 288, 64, 14, 14, "resclip",
                                       get_target("x86", threads=threads), knobs=ON,
                                       const_weights=False, seed=3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert PREFETCH not in _only(scripts)


def test_no_prefetch_for_3x3_windows():
    from schedules_kernels import conv_case, fused_primfuncs
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import schedule_cpu_func
    target = get_target("x86", threads=2)
    func = next(iter(fused_primfuncs(conv_case(64, 128, 28, 3, 2, 1), target).values()))
    with knob_overrides(ON):
        scheduled, rule = schedule_cpu_func(func, target.tvm())
    assert rule == "conv_channel_vector"
    assert PREFETCH not in scheduled.script()


@pytest.mark.parametrize("case", [(96, 576, 14, "clip"), (960, 160, 7, "res")],
                         ids=["row_order", "split_k_k_block"])
def test_replayed_trace_gets_the_prefetches_back(case):
    """A tuned record replays the rule's trace: the annotation it leaves is materialised."""
    from tvm import s_tir
    from schedules_kernels import fused_primfuncs
    from nnef_tvm.schedules import conv_channel_cpu as cc
    from nnef_tvm.schedules.cpu_common import knob_overrides
    cin, cout, hw, epi = case
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin, 1, 1)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    target = get_target("x86", threads=2)
    funcs = fused_primfuncs(pointwise_module(1, cin, cout, hw, hw, epi, w, b), target)
    func = next(f for name, f in funcs.items() if "conv2d" in name)
    with knob_overrides(ON):
        sch = s_tir.Schedule(func)
        assert cc.schedule_channel_vector(sch, 16, 2)
    direct = sch.mod["main"].script()
    replay = s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replay, remove_postproc=False)
    replayed = replay.mod["main"]
    assert PREFETCH not in replayed.script() and "nnef.prefetch_weights" in replayed.script()
    again = cc.materialize_prefetch(replayed)
    assert again.script() == direct
    assert cc.materialize_prefetch(again).script() == direct      # a second run changes nothing
    # through the JSON a tuning record stores (the annotation's [steps, count] survives)
    import json
    from nnef_tvm.schedules.template_search import _trace_of
    stored = json.loads(json.dumps(_trace_of(sch)))
    loaded = s_tir.Schedule(func)
    s_tir.schedule.Trace.apply_json_to_schedule(stored, loaded)
    assert cc.materialize_prefetch(loaded.mod["main"]).script() == direct


def test_materialize_leaves_functions_it_cannot_schedule(monkeypatch):
    """A tuned record TVM replays without re-verifying (seen: an evolutionary record with a
    block variable defined twice) makes ``Schedule()`` raise: the function is kept as is."""
    import tvm
    from tvm import s_tir
    from tvm.script import tirx as T
    from nnef_tvm.schedules.conv_channel_cpu import materialize_prefetch

    @T.prim_func(s_tir=True)
    def add_one(a: T.Buffer((4,), "float32"), b: T.Buffer((4,), "float32")):
        for i in range(4):
            with T.sblock("b"):
                vi = T.axis.spatial(4, i)
                b[vi] = a[vi] + T.float32(1)

    assert materialize_prefetch(add_one).same_as(add_one)       # nothing to add

    def refuse(*_a, **_k):
        raise tvm.error.InternalError("TIR is ill-formed")
    monkeypatch.setattr(s_tir, "Schedule", refuse)
    assert materialize_prefetch(add_one).same_as(add_one)
