"""Default CPU schedules: each rule fires on its kernels and changes no number.

The reference for every kernel is the *unscheduled* build of the same PrimFunc
(TVM's legalization, which our rules never touch) plus, for the convolutions,
an independent numpy convolution. Rules keep each output element's reduction
order, so results agree to float rounding (rtol 1e-5).
"""
import numpy as np
import pytest

from schedules_kernels import (conv_case, dense_case, elementwise_case, fused_primfuncs,
                               pool_case, random_args, run_primfunc, single_kernel,
                               softmax_case)


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def _check(func, target, expected_rule):
    from nnef_tvm.schedules.default import schedule_cpu_func
    t = target.tvm()
    scheduled, rule = schedule_cpu_func(func, t)
    assert rule == expected_rule
    text = scheduled.script()
    assert "T.parallel" in text or "T.vectorized" in text       # the rule really scheduled it
    arrays = random_args(func)
    want = run_primfunc(func, t, arrays)
    got = run_primfunc(scheduled, t, arrays)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return arrays, got, text


def numpy_conv(x, w, stride, groups):
    """NCHW/OIHW cross-correlation with 'same' zero padding (k odd)."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, cin, h, _ = x.shape
    cout = w.shape[0]
    oh = (h + 2 * p - k) // stride + 1
    out = np.zeros((n, cout, oh, oh), np.float64)
    cg, og = cin // groups, cout // groups
    for o in range(cout):
        g = o // og
        for i in range(k):
            for j in range(k):
                patch = xp[:, g * cg:(g + 1) * cg, i:i + stride * oh:stride, j:j + stride * oh:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


CONVS = [
    # (name, cin, cout, hw, k, stride, groups, rule)
    ("conv3x3_s1_residual", 32, 32, 14, 3, 1, 1, "conv_channel_vector"),
    ("conv3x3_s2", 16, 32, 15, 3, 2, 1, "conv_channel_vector"),
    ("conv1x1", 24, 48, 7, 1, 1, 1, "conv_channel_vector"),
    ("conv3x3_two_vector_tile", 16, 64, 6, 3, 1, 1, "conv_channel_vector"),
    ("conv3x3_cout24", 8, 24, 10, 3, 1, 1, "conv_channel_vector"),
    ("depthwise3x3", 32, 32, 14, 3, 1, 32, "conv_spatial_vector"),
    ("depthwise3x3_s2", 16, 16, 16, 3, 2, 16, "conv_spatial_vector"),
    ("grouped3x3", 16, 32, 12, 3, 1, 4, "conv_spatial_vector"),
]


@pytest.mark.parametrize("name,cin,cout,hw,k,stride,groups,rule", CONVS,
                         ids=[c[0] for c in CONVS])
def test_conv_rules_keep_numbers(target, name, cin, cout, hw, k, stride, groups, rule):
    func = single_kernel(conv_case(cin, cout, hw, k, stride, groups), target)
    arrays, got, _ = _check(func, target, rule)
    x, w, b = arrays[:3]
    want = numpy_conv(x.astype(np.float64), w.astype(np.float64), stride, groups) + b
    if len(arrays) == 5:                          # residual input
        want = want + arrays[3]
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_rules_on_a_256_bit_target(target):
    """The same kernels scheduled for AVX2 (8 lanes) still match (runs on any AVX2 host)."""
    import tvm
    from nnef_tvm.schedules.default import schedule_cpu_func
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("host without AVX2")
    for mod in (conv_case(16, 24, 10, 3, 1, 1), conv_case(16, 16, 10, 3, 2, 16)):
        func = single_kernel(mod, target)
        scheduled, rule = schedule_cpu_func(func, avx2)
        assert rule in ("conv_channel_vector", "conv_spatial_vector")
        arrays = random_args(func)
        np.testing.assert_allclose(run_primfunc(scheduled, avx2, arrays),
                                   run_primfunc(func, avx2, arrays), rtol=1e-5, atol=1e-5)


def test_conv_without_epilogue(target):
    func = single_kernel(conv_case(16, 16, 9, 3, 1, 1, epilogue=False), target)
    _check(func, target, "conv_channel_vector")


def test_channel_rule_packs_weights_and_vectorises_channels(target):
    func = single_kernel(conv_case(32, 32, 14, 3, 1, 1), target)
    _, _, text = _check(func, target, "conv_channel_vector")
    assert "w_global" in text                      # the per-task packed weight copy
    assert 'scope="local"' in text                 # register accumulator
    assert "T.unroll" in text


@pytest.mark.parametrize("case", ["dense", "max_pool", "avg_pool", "mean", "elementwise",
                                  "softmax"])
def test_generic_kernels_keep_numbers(target, case):
    mod = {"dense": lambda: dense_case(1, 64, 48), "max_pool": lambda: pool_case("max"),
           "avg_pool": lambda: pool_case("avg"), "mean": lambda: pool_case("mean"),
           "elementwise": elementwise_case, "softmax": softmax_case}[case]()
    from nnef_tvm.schedules.default import schedule_cpu_func
    for func in fused_primfuncs(mod, target).values():
        scheduled, rule = schedule_cpu_func(func, target.tvm())
        assert rule is not None
        text = scheduled.script()
        assert "T.parallel" in text or "T.vectorized" in text
        arrays = random_args(func)
        np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), arrays),
                                   run_primfunc(func, target.tvm(), arrays), rtol=1e-5, atol=1e-5)


def test_failing_rule_falls_back_to_next_and_then_to_original(target):
    from nnef_tvm.schedules.default import CPU_RULES, schedule_cpu_func
    func = single_kernel(conv_case(16, 16, 8, 3, 1, 1), target)

    def broken(sch, lanes, cores):
        sch.parallel(sch.get_loops(sch.get_sblock("conv2d_nchw"))[0])  # half-done...
        raise RuntimeError("rule bug")

    def declines(sch, lanes, cores):
        return False
    scheduled, rule = schedule_cpu_func(func, target.tvm(),
                                        [("broken", broken)] + CPU_RULES)
    assert rule == "conv_channel_vector"
    same, rule = schedule_cpu_func(func, target.tvm(), [("broken", broken), ("no", declines)])
    assert rule is None and same.same_as(func)


def test_unknown_kernel_stays_correct(target):
    """A gather (take) and a cumulative sum: structures no rule was written for."""
    from tvm import relax
    from tvm.relax import op
    from nnef_tvm.schedules.default import schedule_cpu_func
    x = relax.Var("x", relax.TensorType((8, 40), "float32"))
    idx = relax.const(np.array([3, 0, 7, 7, 1], "int64"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            g = bb.emit(op.take(x, idx, axis=0))
            c = bb.emit(op.cumsum(g, axis=1))
            out = bb.emit_output(c)
        bb.emit_func_output(out)
    for func in fused_primfuncs(bb.get(), target).values():
        scheduled, _ = schedule_cpu_func(func, target.tvm())
        arrays = random_args(func)
        np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), arrays),
                                   run_primfunc(func, target.tvm(), arrays), rtol=1e-5)


def test_vector_lanes_follow_target_features():
    import tvm
    from nnef_tvm.schedules.cpu_common import vector_lanes
    assert vector_lanes(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})) == 16
    assert vector_lanes(tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})) == 8
    assert vector_lanes(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512",
                                           "mattr": ["-avx512f"]})) == 8
    assert vector_lanes(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                           "mattr": ["+neon"]})) == 4


def test_default_passes_per_target_kind():
    from nnef_tvm.schedules.default import default_schedule_passes
    assert len(default_schedule_passes({"kind": "llvm"})) == 1
    assert len(default_schedule_passes({"kind": "cuda", "arch": "sm_80"})) == 1
    assert default_schedule_passes({"kind": "c"}) == []


def test_arm64_neon_kernels_generate_code(target):
    """Cross targets: 4-lane NEON schedules lower and generate AArch64 code."""
    import tvm
    from nnef_tvm.schedules.default import schedule_cpu_func
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                             "mattr": ["+neon"], "num-cores": 4})
    for mod, want in ((conv_case(16, 24, 10, 3, 1, 1), "conv_channel_vector"),
                      (conv_case(16, 16, 16, 3, 2, 16), "conv_spatial_vector")):
        func = single_kernel(mod, target)
        scheduled, rule = schedule_cpu_func(func, arm)
        assert rule == want
        lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}),
                          arm)
        assert "fmla" in lib.mod.inspect_source("asm") or "fmul" in lib.mod.inspect_source("asm")


def test_strided_depthwise_reads_a_column_phase_layout(target):
    """Stride 2 along the width: the padded input is stored [.., row, column % 2, column // 2]."""
    func = single_kernel(conv_case(16, 16, 16, 3, 2, 16), target)
    arrays, got, text = _check(func, target, "conv_spatial_vector")
    assert "pad_temp = T.sblock_alloc_buffer((T.int64(1), T.int64(16), T.int64(18), " \
           "T.int64(2), T.int64(9)))" in text
    want = numpy_conv(arrays[0].astype(np.float64), arrays[1].astype(np.float64), 2, 16)
    np.testing.assert_allclose(got, np.maximum(want + arrays[2], 0), rtol=1e-4, atol=1e-4)


def test_dense_rows_before_columns_take_the_channel_rule(target):
    """A matmul on more rows than dense_rows takes (8 > MAX_ROWS; rows come before the
    output columns) is tiled over columns by the channel rule; batch-1 linear layers
    go to dense_rows (tests/schedules/schedules_pool_dense_test.py)."""
    func = single_kernel(dense_case(8, 64, 48), target)
    arrays, got, text = _check(func, target, "conv_channel_vector")
    x, w, b = arrays[:3]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w + b, rtol=1e-4, atol=1e-4)


def test_zero_padding_copy_is_inlined(target):
    """A 1x1 convolution's padding stage copies without padding: it is folded into the conv."""
    func = single_kernel(conv_case(24, 48, 20, 1, 1, 1), target)
    assert 'T.sblock("pad_temp")' in func.script()               # legalization emits a copy
    arrays, got, text = _check(func, target, "conv_channel_vector")
    assert 'T.sblock("pad_temp")' not in text
    want = numpy_conv(arrays[0].astype(np.float64), arrays[1].astype(np.float64), 1, 1)
    np.testing.assert_allclose(got, np.maximum(want + arrays[2], 0), rtol=1e-4, atol=1e-4)
