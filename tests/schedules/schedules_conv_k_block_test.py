"""The channel-vector rule's ``k_block`` order: whole planes per task, input channels in blocks.

MobileNetV2's 7x7 1x1 convolutions read a 20-123 KB weight tile per task;
with ``k_block`` each block of input channels serves every row of the plane
before the next block is read (see ``conv_channel_cpu._k_block_default``).
Every numeric check compares with a float64 numpy ``conv`` written from the
NNEF definition (1x1 window: ``y[n,o,i,j] = b[o] + sum_c x[n,c,i,j] *
w[o,c]``) plus the fused epilogue (residual ``add``, ``clamp(0, 6)``). The
structure checks read the scheduled TIR: the split input-channel loop sits
above the row loop, and the accumulator write-back covers the whole plane.
"""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402
from tvm.relax import op  # noqa: E402

from nnef_tvm.schedules.cpu_common import knob_overrides  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402
from schedules_kernels import emit_epilogue  # noqa: E402,I100


def pointwise_reference(x, w, b, epi, r=None):
    y = np.einsum("nchw,oc->nohw", x.astype(np.float64), w[:, :, 0, 0].astype(np.float64))
    y = y + b.astype(np.float64).reshape(1, -1, 1, 1)
    if "res" in epi:
        y = y + r
    if "clip" in epi:
        y = np.clip(y, 0.0, 6.0)
    return y


def pointwise_module(cin, cout, hw, epi, w, b):
    x = relax.Var("x", relax.TensorType((1, cin, hw, hw), "float32"))
    params = [x]
    if "res" in epi:
        params.append(relax.Var("r", relax.TensorType((1, cout, hw, hw), "float32")))
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(x, relax.const(w), strides=1, padding=0))
            y = bb.emit(op.add(y, relax.const(b.reshape(1, cout, 1, 1))))
            out = bb.emit_output(emit_epilogue(bb, y, epi, params[-1]))
        bb.emit_func_output(out)
    return bb.get()


def case(cin, cout, hw, epi, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, cin, hw, hw)).astype("float32")
    w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    r = rng.standard_normal((1, cout, hw, hw)).astype("float32")
    args = [x] + ([r] if "res" in epi else [])
    return pointwise_module(cin, cout, hw, epi, w, b), args, pointwise_reference(x, w, b, epi, r)


def run(cin, cout, hw, epi, threads, knobs=None, seed=0):
    """(output, expected, conv kernel script) through the project's whole pipeline."""
    from schedules_kernels import compile_and_run
    mod, args, want = case(cin, cout, hw, epi, seed)
    got, lowered = compile_and_run(mod, get_target("x86", threads=threads), args, knobs)
    conv = [f.script() for gv, f in lowered.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint
            and "prepack" not in gv.name_hint]
    assert len(conv) == 1
    return got, want, conv[0]


def default_setting(cin, cout, hw, epi, threads):
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import _channel_defaults, _channel_plan
    mod, _, _ = case(cin, cout, hw, epi)
    (func,) = fused_primfuncs(mod, get_target("x86", threads=threads)).values()
    plan = _channel_plan(s_tir.Schedule(func))
    return _channel_defaults(plan, 16, threads)


KBLOCK = [
    # (cin, cout, hw, epilogue, threads): MobileNetV2's 7x7 1x1 convs
    (160, 960, 7, "clip", 1),
    (160, 960, 7, "clip", 2),
    (960, 160, 7, "res", 1),
    (960, 320, 7, "none", 1),
    (320, 1280, 7, "clip", 2),
    (96, 128, 5, "resclip", 1),          # 3 blocks of 32, a 5x5 plane
]


@pytest.mark.parametrize("cin,cout,hw,epi,threads", KBLOCK,
                         ids=[f"{c[0]}to{c[1]}_{c[2]}_{c[3]}_t{c[4]}" for c in KBLOCK])
def test_k_block_kernels_match_numpy(cin, cout, hw, epi, threads):
    assert default_setting(cin, cout, hw, epi, threads)["conv.channel_vector.k_block"] == 32
    got, want, text = run(cin, cout, hw, epi, threads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the input-channel blocks run above the rows: "for rc_0, yy .. for xx_0, rc_1 .."
    # (the weight prefetch sits at the top of each row, between the two)
    assert f"for rc_0, yy in T.grid(T.int64({cin // 32}), T.int64({hw})):" in text
    assert "T.grid(T.int64(1), T.int64(32)" in text
    # one write-back per task covering the whole plane (rows x row x 32 channels)
    assert f"for ax0, ax1 in T.grid(T.int64(32), T.int64({hw}))" in text


@pytest.mark.parametrize("cin,cout,epi", [(960, 160, "res"), (576, 160, "none"), (960, 320, "none")])
def test_split_k_slices_run_in_k_blocks(cin, cout, epi):
    """At 2 cores the 7x7 projections are split-K; each slice's channels run in blocks too."""
    setting = default_setting(cin, cout, 7, epi, 2)
    assert setting["conv.channel_vector.split_k"] == 2
    assert setting["conv.channel_vector.k_block"] == 32
    got, want, text = run(cin, cout, 7, epi, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert "_rf" in text                                   # the partial sums of the slices
    assert f"T.grid(T.int64({cin // 2 // 32}), T.int64(7)):" in text
    assert "T.grid(T.int64(1), T.int64(32)" in text


def test_k_block_off_is_the_row_by_row_kernel():
    """``k_block = 0`` keeps the usual order (reduction inside each row), same result."""
    got, want, text = run(160, 960, 7, "clip", 1, knobs={"conv.channel_vector.k_block": 0})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert "for rc, ry, rx in T.grid(T.int64(160)" in text


@pytest.mark.parametrize("cin,cout,hw,epi,threads,why", [
    (64, 384, 14, "clip", 1, "plane"),       # 14 x 14 x 32 floats: 25 KB of accumulators
    (576, 96, 14, "res", 2, "plane"),        # split-K projection, 25 KB plane
    (32, 960, 7, "clip", 1, "short"),        # one block: nothing to reorder
    (48, 96, 7, "clip", 1, "divisor"),       # 48 input channels are not whole blocks of 32
])
def test_k_block_stays_off_where_it_does_not_fit(cin, cout, hw, epi, threads, why):
    setting = default_setting(cin, cout, hw, epi, threads)
    assert setting["conv.channel_vector.k_block"] == 0, why
    got, want, _ = run(cin, cout, hw, epi, threads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bad_k_block_knobs_are_refused_not_miscompiled():
    """Blocks that do not divide the input channels, or a row split, make the rule decline."""
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    mod, _, _ = case(160, 960, 7, "clip")
    (func,) = fused_primfuncs(mod, get_target("x86", threads=1)).values()
    for knobs in ({"conv.channel_vector.k_block": 48},            # 160 % 48
                  {"conv.channel_vector.k_block": 160},           # a single block
                  {"conv.channel_vector.k_block": 32, "conv.channel_vector.xt": 1},
                  {"conv.channel_vector.k_block": 32, "conv.channel_vector.fi": 16,
                   "conv.channel_vector.tasks": 512}):            # rows split across tasks
        with knob_overrides(knobs):
            assert not schedule_channel_vector(s_tir.Schedule(func), 16, 1), knobs


def test_every_setting_in_the_knob_space_is_correct():
    """The space offers the usual order too; every listed setting schedules a correct kernel."""
    from schedules_kernels import fused_primfuncs
    from nnef_tvm.schedules import default as sched_default
    tgt = get_target("x86", threads=1)
    mod, _, _ = case(96, 128, 5, "resclip")
    (func,) = fused_primfuncs(mod, tgt).values()
    space = sched_default.knob_space(func, tgt.tvm())
    assert space[0]["conv.channel_vector.k_block"] == 32
    assert any(s.get("conv.channel_vector.k_block") == 0 and s.get("conv.channel_vector.vector") == "f"
               for s in space)
    for s in space[:8]:
        got, want, _ = run(96, 128, 5, "resclip", 1, knobs=s, seed=2)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(s))
