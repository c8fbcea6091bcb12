"""Squeeze-excitation gates (dense_rows' gate mode): GEMV tile + its channels' planes per task.

EfficientNet's SE tail ``x * sigmoid(conv1x1(s) + b)`` with ``s = [1, C, 1, 1]``
and ``x = [1, F, H, W]``. The reference is numpy in float64 from the definition
(sigmoid(z) = 1 / (1 + exp(-z))), never our unscheduled kernel.
"""
import re

import numpy as np
import pytest

from schedules_kernels import (random_args, run_primfunc, single_kernel,
                               squeeze_excite_case)


def _target(threads):
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=threads)


def _schedule(c, f, hw, threads, knobs=None):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import schedule_cpu_func
    target = _target(threads)
    func = single_kernel(squeeze_excite_case(c, f, hw), target).with_attr(
        "layout_free_buffers", [1, 2])
    with knob_overrides(knobs or {}):
        scheduled, rule = schedule_cpu_func(func, target.tvm())
    return func, scheduled, rule, target


def _reference(s, w, b, x):
    z = np.einsum("fc,c->f", w[:, :, 0, 0].astype(np.float64), s[0, :, 0, 0].astype(np.float64))
    z += b[0, :, 0, 0]
    return x.astype(np.float64) * (1 / (1 + np.exp(-z)))[None, :, None, None]


# EfficientNet-B0's gates (C -> F on H x W) and planes no vector tiles (49, 196, 9)
SHAPES = [(8, 32, 112), (4, 96, 56), (6, 144, 28), (10, 240, 14), (48, 1152, 7), (32, 672, 7),
          (16, 48, 3)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c,f,hw", SHAPES, ids=[f"{c}-{f}@{hw}" for c, f, hw in SHAPES])
def test_gate_matches_numpy(c, f, hw, threads):
    func, scheduled, rule, target = _schedule(c, f, hw, threads)
    assert rule == "dense_rows"
    arrays = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), arrays)
    np.testing.assert_allclose(got, _reference(*arrays[:4]), rtol=1e-5, atol=1e-6)


def test_gate_product_runs_in_the_gemv_tasks():
    """1152 gates on 7 x 7: one parallel loop of 72 tiles of 16 channels; each tile's
    planes are scaled inside it, 48 of 49 floats as whole vectors (the tail apart)."""
    _, scheduled, _, _ = _schedule(48, 1152, 7, 2)
    text = scheduled.script()
    assert text.count("T.parallel(") == 1 and "T.parallel(T.int64(72))" in text
    body = text.split("T.parallel(T.int64(72))", 1)[1]
    assert 'T.sblock("T_multiply' in body                     # inside the tile loop
    assert "_partition" in body and "T.vectorized(T.int64(16))" in body
    assert re.search(r"range\(T\.int64\(48\), T\.int64\(49\)\)", body)   # the scalar tail


def test_gate_tiles_share_evenly():
    """144 channels at 2 threads: 18 tiles of 8 (9 tiles of 16 leave one thread a tile more)."""
    from nnef_tvm.schedules.dense_cpu import _gate_tile
    assert _gate_tile(144, 16, 2) == 8
    assert _gate_tile(240, 16, 2) == 8
    assert _gate_tile(1152, 16, 2) == 16
    assert _gate_tile(32, 16, 2) == 16
    assert _gate_tile(144, 16, 1) == 16
    assert _gate_tile(24, 16, 2) == 8               # 3 tiles: no even split exists
    assert _gate_tile(20, 16, 2) is None            # no 8-wide tile: the GEMV rule's own widths
    _, scheduled, _, _ = _schedule(6, 144, 28, 2)
    assert "T.parallel(T.int64(18))" in scheduled.script()


def test_gate_off_keeps_the_separate_product():
    """Knob dense.rows.gate False: the earlier schedule (GEMV, then a product of its own)."""
    func, scheduled, rule, target = _schedule(10, 240, 28, 2, {"dense.rows.gate": False})
    assert rule == "dense_rows"
    text = scheduled.script()
    assert "T.parallel(T.int64(6720))" in text               # 240 x 28 rows of the product
    arrays = random_args(func)
    np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), arrays),
                               _reference(*arrays[:4]), rtol=1e-5, atol=1e-6)


def test_gate_knob_space_variants_match_numpy():
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space, schedule_cpu_func
    target = _target(2)
    func = single_kernel(squeeze_excite_case(6, 144, 14), target).with_attr(
        "layout_free_buffers", [1, 2])
    space = knob_space(func, target.tvm())
    assert space[0]["dense.rows.nt"] == 8
    assert {s["dense.rows.nt"] for s in space} == {8, 16}
    arrays = random_args(func)
    want = _reference(*arrays[:4])
    for setting in space:
        with knob_overrides(setting):
            scheduled, rule = schedule_cpu_func(func, target.tvm())
        assert rule == "dense_rows"
        np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), arrays), want,
                                   rtol=1e-5, atol=1e-6)


def _squeeze_case(c, f):
    """The SE squeeze: swish(conv1x1(s) + b) on s = [1, C, 1, 1] -> [1, F, 1, 1]."""
    from tvm import relax
    from tvm.relax import op
    s = relax.Var("s", relax.TensorType((1, c, 1, 1), "float32"))
    w = relax.Var("w", relax.TensorType((f, c, 1, 1), "float32"))
    b = relax.Var("b", relax.TensorType((1, f, 1, 1), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [s, w, b]):
        with bb.dataflow():
            z = bb.emit(op.add(op.nn.conv2d(s, w), b))
            out = bb.emit_output(bb.emit(op.multiply(z, op.sigmoid(z))))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("threads,tiles", [(1, None), (2, 2)])
def test_squeeze_gemv_tiles_shared_between_threads(threads, tiles):
    """1152 -> 48 (55296 MACs): one 48-wide tile ran on one thread; at 2 threads two of 24."""
    from nnef_tvm.schedules.default import schedule_cpu_func
    target = _target(threads)
    func = single_kernel(_squeeze_case(1152, 48), target).with_attr("layout_free_buffers", [1, 2])
    scheduled, rule = schedule_cpu_func(func, target.tvm())
    assert rule == "dense_rows"
    text = scheduled.script()
    if tiles:
        assert f"T.parallel(T.int64({tiles}))" in text
    else:
        assert "T.parallel(" not in text
    s, w, b, out = random_args(func)
    z = np.einsum("fc,c->f", w[:, :, 0, 0].astype(np.float64), s[0, :, 0, 0]) + b[0, :, 0, 0]
    want = (z / (1 + np.exp(-z)))[None, :, None, None]
    np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), [s, w, b, out]), want,
                               rtol=1e-5, atol=1e-5)
