"""The channel-vector rule's split-K mode: 1x1 convolutions reduced over input-channel slices.

Every numeric check compares with numpy's NNEF ``conv`` (cross-correlation,
NCHW data, OIHW filter, bias per channel) plus the fused epilogue (residual
``add``, ``clamp(0, 6)``), computed in float64. The structure checks read the
scheduled TIR: the ``rfactor`` buffer of the partial sums and the parallel
task count of each stage.
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


def pointwise_reference(x, w, b):
    """y[n,o,i,j] = b[o] + sum_c x[n,c,i,j] * w[o,c,0,0] (float64)."""
    y = np.einsum("nchw,oc->nohw", x.astype(np.float64), w[:, :, 0, 0].astype(np.float64))
    return y + b.astype(np.float64).reshape(1, -1, 1, 1)


def pointwise_module(n, cin, cout, h, wd, epi, w, b, const_weights=True):
    x = relax.Var("x", relax.TensorType((n, cin, h, wd), "float32"))
    params = [x]
    if const_weights:
        wv, bv = relax.const(w), relax.const(b.reshape(1, cout, 1, 1))
    else:
        wv = relax.Var("w", relax.TensorType(w.shape, "float32"))
        bv = relax.Var("b", relax.TensorType((1, cout, 1, 1), "float32"))
        params += [wv, bv]
    if "res" in epi:
        params.append(relax.Var("r", relax.TensorType((n, cout, h, wd), "float32")))
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.add(op.nn.conv2d(x, wv), bv))
            out = bb.emit_output(emit_epilogue(bb, y, epi, params[-1]))
        bb.emit_func_output(out)
    return bb.get()


def build_and_run(n, cin, cout, h, wd, epi, target, knobs=None, const_weights=True, seed=0):
    """(output, expected, {kernel name: scheduled TIR script})."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, wd)).astype("float32")
    w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    r = rng.standard_normal((n, cout, h, wd)).astype("float32")
    from schedules_kernels import compile_and_run
    mod = pointwise_module(n, cin, cout, h, wd, epi, w, b, const_weights)
    args = [x] + ([] if const_weights else [w, b.reshape(1, cout, 1, 1)]) + \
        ([r] if "res" in epi else [])
    got, lowered = compile_and_run(mod, target, args, knobs)
    want = pointwise_reference(x, w, b)
    if "res" in epi:
        want = want + r
    if "clip" in epi:
        want = np.clip(want, 0.0, 6.0)
    scripts = {gv.name_hint: f.script() for gv, f in lowered.functions_items()
               if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint
               and "prepack" not in gv.name_hint}
    return got, want, scripts


@pytest.fixture(scope="module")
def two_cores():
    return get_target("x86", threads=2)


def _only(scripts) -> str:
    assert len(scripts) == 1, sorted(scripts)
    return next(iter(scripts.values()))


SPLIT = [
    # (batch, cin, cout, h, w, epilogue): MobileNetV2 / EfficientNet projections
    (1, 576, 96, 14, 14, "res"),
    (1, 384, 64, 14, 14, "res"),
    (1, 384, 96, 14, 14, "none"),
    (1, 960, 160, 7, 7, "resclip"),
    (1, 192, 64, 14, 14, "clip"),
    (2, 96, 32, 6, 10, "res"),           # batch 2, non-square map, 60 columns
]


@pytest.mark.parametrize("n,cin,cout,h,w,epi", SPLIT,
                         ids=[f"n{c[0]}_{c[1]}to{c[2]}_{c[3]}x{c[4]}_{c[5]}" for c in SPLIT])
def test_split_k_is_the_default_for_projections_and_matches_numpy(two_cores, n, cin, cout, h, w,
                                                                    epi):
    got, want, scripts = build_and_run(n, cin, cout, h, w, epi, two_cores)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = _only(scripts)
    assert "_rf" in text                                       # partial sums of the slices
    # stage 1: 2 slices x images x channel tiles of 32; stage 2: images x output channels
    assert f"T.parallel(T.int64({2 * n * cout // 32}))" in text
    assert f"T.parallel(T.int64({n * cout}))" in text


@pytest.mark.parametrize("const_weights", [True, False], ids=["packed_once", "unpacked"])
def test_split_k_with_weights_as_parameters(two_cores, const_weights):
    got, want, scripts = build_and_run(1, 288, 64, 14, 14, "resclip", two_cores,
                                       const_weights=const_weights, seed=3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert "_rf" in _only(scripts)


def test_split_k_can_be_switched_off_and_the_result_is_the_same(two_cores):
    on, want, s_on = build_and_run(1, 384, 64, 14, 14, "res", two_cores, seed=1)
    off, _, s_off = build_and_run(1, 384, 64, 14, 14, "res", two_cores, seed=1,
                                  knobs={"conv.channel_vector.split_k": 1})
    assert "_rf" in _only(s_on) and "_rf" not in _only(s_off)
    np.testing.assert_allclose(on, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(off, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case,threads", [
    ((1, 64, 384, 14, 14, "clip"), 2),         # an expansion: input has fewer channels
    ((1, 96, 64, 14, 14, "none"), 2),          # ratio 1.5 < 3
    ((1, 576, 96, 14, 14, "res"), 1),          # one core: nothing to split for
], ids=["expansion", "low_ratio", "one_core"])
def test_split_k_stays_off_where_it_does_not_pay(case, threads):
    target = get_target("x86", threads=threads)
    got, want, scripts = build_and_run(*case, target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert "_rf" not in _only(scripts)


def test_split_k_pays_rule():
    """The default's conditions, on plans of real kernels."""
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import _channel_plan, _split_k_pays
    target = get_target("x86", threads=2)
    rng = np.random.default_rng(0)

    def plan(cin, cout, hw):
        w = rng.standard_normal((cout, cin, 1, 1)).astype("float32")
        b = rng.standard_normal(cout).astype("float32")
        (func,) = fused_primfuncs(pointwise_module(1, cin, cout, hw, hw, "none", w, b),
                                  target).values()
        return _channel_plan(s_tir.Schedule(func))
    assert _split_k_pays(plan(576, 96, 14), 32, 2)
    assert _split_k_pays(plan(192, 64, 14), 32, 2)             # exactly 3x
    assert not _split_k_pays(plan(160, 64, 14), 32, 2)         # 2.5x
    assert not _split_k_pays(plan(576, 96, 14), 32, 1)         # one core
    assert not _split_k_pays(plan(575, 96, 14), 32, 2)         # odd channel count: 2 slices?


def test_every_split_k_setting_in_the_knob_space_is_correct(two_cores):
    """Tuning may pick any listed setting: each one builds and computes the conv."""
    from schedules_kernels import fused_primfuncs, run_primfunc
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    from nnef_tvm.schedules.default import knob_space
    rng = np.random.default_rng(5)
    cin, cout, hw = 192, 32, 14      # 196 px: not whole vectors, so channel vectors
    x = rng.standard_normal((1, cin, hw, hw)).astype("float32")
    w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    (func,) = fused_primfuncs(pointwise_module(1, cin, cout, hw, hw, "none", w, b, False),
                              two_cores).values()
    space = knob_space(func, two_cores.tvm())
    assert space[0]["conv.channel_vector.split_k"] == 2
    # tuning measures kernels alone, where the split's locality gain cannot show:
    # it is never offered the unsplit kernel
    assert all(s.get("conv.channel_vector.split_k") == 2 for s in space
               if s.get("conv.channel_vector.vector") == "f")
    want = pointwise_reference(x, w, b)
    checked = 0
    for setting in space:
        if setting.get("conv.channel_vector.split_k", 1) < 2 or \
                setting.get("conv.channel_vector.vector") != "f":
            continue
        sch = s_tir.Schedule(func)
        with knob_overrides(setting):
            assert schedule_channel_vector(sch, 16, 2), setting
        out = np.zeros((1, cout, hw, hw), "float32")
        got = run_primfunc(sch.mod["main"], two_cores.tvm(), [x, w, b.reshape(1, cout, 1, 1), out])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(setting))
        checked += 1
    assert checked >= 2


def test_split_k_trace_replays_on_the_unscheduled_function(two_cores):
    """Tuning records store ``sch.trace``; the split-K trace (rfactor included) replays.

    (The weight prefetch is not a schedule primitive: the trace keeps its loop
    annotation, which ``materialize_prefetch`` turns back into the prefetches.)
    """
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import materialize_prefetch, schedule_channel_vector
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 192, 1, 1)).astype("float32")
    b = rng.standard_normal(32).astype("float32")
    (func,) = fused_primfuncs(pointwise_module(1, 192, 32, 14, 14, "res", w, b, False),
                              two_cores).values()
    func = func.with_attr("layout_free_buffers", [1])
    sch = s_tir.Schedule(func)
    assert schedule_channel_vector(sch, 16, 2)
    assert "_rf" in sch.mod["main"].script()
    replay = s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replay, remove_postproc=False)
    tvm.ir.assert_structural_equal(materialize_prefetch(replay.mod["main"]), sch.mod["main"])


def test_an_expansion_is_offered_the_split_as_a_tuning_variant(two_cores):
    from schedules_kernels import fused_primfuncs
    from nnef_tvm.schedules.default import knob_space, locality_bound
    rng = np.random.default_rng(2)
    w = rng.standard_normal((384, 64, 1, 1)).astype("float32")
    b = rng.standard_normal(384).astype("float32")
    (func,) = fused_primfuncs(pointwise_module(1, 64, 384, 14, 14, "clip", w, b),
                              two_cores).values()
    space = knob_space(func, two_cores.tvm())
    assert space[0]["conv.channel_vector.split_k"] == 1
    assert any(s.get("conv.channel_vector.split_k") == 2 for s in space)
    assert not locality_bound(func, two_cores.tvm())
