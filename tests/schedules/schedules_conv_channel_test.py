"""The ``conv_channel_vector`` rule's modes on the convolutions MobileNetV2 / ResNet-18 contain.

Every numeric check compares with a numpy convolution written from the NNEF
``conv`` definition (cross-correlation, NCHW data, OIHW filter, symmetric
zero padding, stride; bias broadcast over the channel axis), followed by the
fused epilogue (residual ``add``, ``clamp(0, 6)``). The structure checks read
the scheduled TIR: which mode fired (flat 1x1 map, row vectors, channel
vectors), the register tile, the parallel loop. The kernels are built two
ways: weights as ``relax.const`` through the whole pipeline (weights prepacked
at compile time, as in a real model) and weights as kernel parameters (the
rule then packs them inside the kernel).
"""
import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402
from tvm.relax import op  # noqa: E402

from nnef_tvm.schedules.cpu_common import knob_overrides  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402
from nnef_tvm.targets.pipeline import build_phases, run_phases  # noqa: E402
from schedules_kernels import emit_epilogue  # noqa: E402,I100


# ------------------------------------------------------------------ reference
def conv_reference(x, w, b, stride, pad):
    """NNEF conv: y[n,o,i,j] = b[o] + sum_{c,ki,kj} xp[n,c,i*s+ki,j*s+kj] * w[o,c,ki,kj]."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, hp, wp = xp.shape
    cout, _, kh, kw = w.shape
    oh = (hp - kh) // stride + 1
    ow = (wp - kw) // stride + 1
    out = np.zeros((n, cout, oh, ow))
    for ki in range(kh):
        for kj in range(kw):
            patch = xp[:, :, ki:ki + stride * (oh - 1) + 1:stride, kj:kj + stride * (ow - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ki, kj])
    return out + b.reshape(1, cout, 1, 1)


def apply_epilogue(y, epi, residual=None):
    if "res" in epi:
        y = y + residual
    if "clip" in epi:
        y = np.clip(y, 0.0, 6.0)
    return y


# ------------------------------------------------------------------ builders
def conv_module(cin, cout, hw, k, stride, epi, w, b, const_weights=True):
    """conv (+bias) [+ residual add] [+ clip(0, 6)] as one Relax function."""
    pad = k // 2
    oh = (hw + 2 * pad - k) // stride + 1
    x = relax.Var("x", relax.TensorType((1, cin, hw, hw), "float32"))
    params = [x]
    if const_weights:
        wv, bv = relax.const(w), relax.const(b.reshape(1, cout, 1, 1))
    else:
        wv = relax.Var("w", relax.TensorType(w.shape, "float32"))
        bv = relax.Var("b", relax.TensorType((1, cout, 1, 1), "float32"))
        params += [wv, bv]
    if "res" in epi:
        params.append(relax.Var("r", relax.TensorType((1, cout, oh, oh), "float32")))
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(x, wv, strides=stride, padding=pad))
            y = bb.emit(op.add(y, bv))
            out = bb.emit_output(emit_epilogue(bb, y, epi, params[-1]))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="module")
def target():
    return get_target("x86", threads=2)


def build_and_run(cin, cout, hw, k, stride, epi, target, knobs=None, const_weights=True,
                  seed=0):
    """(output, expected, scheduled kernel scripts) for one conv kernel."""
    rng = np.random.default_rng(seed)
    pad = k // 2
    oh = (hw + 2 * pad - k) // stride + 1
    x = rng.standard_normal((1, cin, hw, hw)).astype("float32")
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    r = rng.standard_normal((1, cout, oh, oh)).astype("float32")
    from schedules_kernels import compile_and_run
    mod = conv_module(cin, cout, hw, k, stride, epi, w, b, const_weights)
    args = [x] + ([] if const_weights else [w, b.reshape(1, cout, 1, 1)]) + \
        ([r] if "res" in epi else [])
    got, lowered = compile_and_run(mod, target, args, knobs)
    want = apply_epilogue(conv_reference(x, w, b, stride, pad), epi, r)
    scripts = {gv.name_hint: f.script() for gv, f in lowered.functions_items()
               if isinstance(f, tvm.tirx.PrimFunc)}
    return got, want, scripts


def conv_kernel_script(scripts):
    conv = [s for name, s in scripts.items() if "conv2d" in name and "prepack" not in name]
    assert len(conv) == 1, sorted(scripts)
    return conv[0]


# ------------------------------------------------------------------ flat 1x1 mode
FLAT = [
    # (cin, cout, hw, epilogue, flat accumulator length H*W)
    (144, 32, 56, "res", 3136),          # MobileNetV2 projection to 32 channels + residual
    (96, 32, 56, "none", 3136),
    (192, 32, 28, "res", 784),
    (144, 32, 28, "none", 784),          # 49 vectors: 2 channels x 7 vectors by default
    (32, 192, 28, "clip", 784),          # expansion + relu6
    (16, 96, 112, "clip", 12544),        # short reduction: channel tiles outermost
    (24, 40, 20, "resclip", 400),        # 400 = 25 vectors: one vector per tile
]


@pytest.mark.parametrize("cin,cout,hw,epi,size", FLAT,
                         ids=[f"{c[0]}to{c[1]}_{c[2]}_{c[3]}" for c in FLAT])
def test_flat_1x1_mode_matches_numpy(target, cin, cout, hw, epi, size):
    got, want, scripts = build_and_run(cin, cout, hw, 1, 1, epi, target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = conv_kernel_script(scripts)
    assert '"nnef.schedule_rule": "conv_channel_vector"' in text
    # the accumulator is indexed over the flattened map, full 16-lane vectors
    assert f"T.int64({size})))" in text
    assert "T.vectorized(T.int64(16))" in text
    assert "T.parallel" in text


@pytest.mark.parametrize("const_weights", [True, False], ids=["const", "param"])
def test_flat_mode_with_weights_as_parameters(target, const_weights):
    """Runtime weights are packed in the kernel (once per call), constants at compile time."""
    got, want, scripts = build_and_run(48, 32, 16, 1, 1, "res", target,
                                       const_weights=const_weights)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = conv_kernel_script(scripts)
    assert "T.int64(256)))" in text
    # constants arrive packed (a kernel parameter); runtime weights get an in-kernel copy
    assert ("w_global = T.sblock_alloc_buffer" in text) == (not const_weights)
    assert ("param_0_global: T.Buffer" in text) == const_weights


def _flat_settings(func, target):
    from nnef_tvm.schedules import default as sched_default
    space = sched_default.knob_space(func, target.tvm())
    return [s for s in space if s.get("conv.channel_vector.vector") == "flat"]


@pytest.mark.parametrize("cin,cout,hw,tile", [
    (144, 32, 28, (2, 112)),        # 49 vectors, long reduction: 2 channels x 7 vectors
    (192, 32, 28, (2, 112)),
    (32, 192, 28, (2, 112)),        # short reduction (already 2 x 7)
    (144, 32, 56, (4, 64)),         # 196 vectors: 4 channels x 4 vectors
])
def test_flat_default_register_tile(target, cin, cout, hw, tile):
    from schedules_kernels import fused_primfuncs
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin, 1, 1)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    (func,) = fused_primfuncs(conv_module(cin, cout, hw, 1, 1, "none", w, b), target).values()
    first = _flat_settings(func, target)[0]
    assert (first["conv.channel_vector.fi"], first["conv.channel_vector.xt"]) == tile


def test_every_flat_setting_in_the_knob_space_is_correct(target):
    """Register tiles (channels x vectors) and both tile orders: each one computes the conv."""
    from schedules_kernels import fused_primfuncs
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 48, 1, 1)).astype("float32")
    b = rng.standard_normal(32).astype("float32")
    mod = conv_module(48, 32, 16, 1, 1, "res", w, b, const_weights=False)
    funcs = fused_primfuncs(mod, target)
    (func,) = funcs.values()
    settings = _flat_settings(func, target)
    assert settings and settings[0]["conv.channel_vector.vector"] == "flat"   # the default
    orders = {s["conv.channel_vector.order"] for s in settings}
    tiles = {(s["conv.channel_vector.fi"], s["conv.channel_vector.xt"]) for s in settings}
    assert orders == {"spatial", "channel"} and len(tiles) >= 4
    for s in settings:
        got, want, _ = build_and_run(48, 32, 16, 1, 1, "res", target, knobs=s, seed=1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(s))


def test_flat_mode_does_not_fire_where_the_map_is_not_whole_vectors(target):
    """14x14 = 196 and 7x7 = 49 floats are not whole 16-lane vectors: another mode runs."""
    for hw in (14, 7):
        got, want, scripts = build_and_run(64, 32, hw, 1, 1, "res", target)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        text = conv_kernel_script(scripts)
        assert f"T.int64({hw * hw})))" not in text


def test_bad_flat_knobs_are_refused_not_miscompiled(target):
    """A tile that does not divide the map (or the channels) makes the rule decline."""
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 48, 1, 1)).astype("float32")
    b = rng.standard_normal(32).astype("float32")
    (func,) = fused_primfuncs(conv_module(48, 32, 16, 1, 1, "none", w, b, False), target).values()
    base = {"conv.channel_vector.vector": "flat", "conv.channel_vector.order": "spatial"}
    for fi, xt in ((3, 16), (4, 24), (4, 512), (4, 8)):
        with knob_overrides(dict(base, **{"conv.channel_vector.fi": fi,
                                          "conv.channel_vector.xt": xt})):
            assert not schedule_channel_vector(s_tir.Schedule(func), 16, 2)
    with knob_overrides(dict(base, **{"conv.channel_vector.order": "diagonal"})):
        assert not schedule_channel_vector(s_tir.Schedule(func), 16, 2)


# ------------------------------------------------------------------ other channel-rule kernels
OTHER = [
    # (cin, cout, hw, k, stride, epilogue)
    (64, 128, 56, 1, 2, "none"),         # ResNet-18 downsample 1x1 stride 2
    (128, 256, 28, 1, 2, "none"),
    (576, 96, 14, 1, 1, "res"),          # MobileNetV2 14x14 projection + residual
    (960, 160, 7, 1, 1, "res"),
    (160, 960, 7, 1, 1, "clip"),
    (128, 128, 7, 3, 1, "res"),          # 3x3 at 7x7 (ResNet-18's last stage, fewer channels)
    (64, 64, 9, 3, 1, "clip"),           # 3x3 s1 below the Winograd rule's 16 tiles
    (32, 64, 15, 3, 2, "none"),
]


@pytest.mark.parametrize("cin,cout,hw,k,stride,epi", OTHER,
                         ids=[f"{c[0]}to{c[1]}_{c[2]}_k{c[3]}s{c[4]}_{c[5]}" for c in OTHER])
def test_channel_rule_kernels_match_numpy(target, cin, cout, hw, k, stride, epi):
    got, want, scripts = build_and_run(cin, cout, hw, k, stride, epi, target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert '"nnef.schedule_rule": "conv_channel_vector"' in conv_kernel_script(scripts)


def test_flat_geometry_rejects_padded_and_strided_1x1(target):
    """Only a 1x1, stride-1 convolution reading its input directly has a flat map."""
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import _channel_plan, _flat_geometry
    rng = np.random.default_rng(0)

    def geometry(cin, cout, hw, k, stride):
        w = rng.standard_normal((cout, cin, k, k)).astype("float32")
        b = rng.standard_normal(cout).astype("float32")
        mod = conv_module(cin, cout, hw, k, stride, "none", w, b, False)
        (func,) = fused_primfuncs(mod, target).values()
        return _flat_geometry(_channel_plan(s_tir.Schedule(func)), 16)

    assert geometry(16, 32, 16, 1, 1) is not None
    assert geometry(16, 32, 16, 3, 1) is None          # 3x3 window
    assert geometry(16, 32, 32, 1, 2) is None          # strided rows


def test_row_vector_mode_where_the_map_is_not_whole_vectors(target):
    """18x18 = 324 floats (not whole vectors), rows longer than a vector: row-vector mode."""
    from schedules_kernels import fused_primfuncs
    from nnef_tvm.schedules.default import knob_space
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8, 1, 1)).astype("float32")
    b = rng.standard_normal(16).astype("float32")
    (func,) = fused_primfuncs(conv_module(8, 16, 18, 1, 1, "none", w, b, False), target).values()
    assert knob_space(func, target.tvm())[0]["conv.channel_vector.vector"] == "x"
    got, want, _ = build_and_run(8, 16, 18, 1, 1, "clip", target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("const_weights", [True, False], ids=["packed_once", "packed_per_call"])
def test_flat_trace_replays_on_the_unscheduled_function(target, const_weights):
    """The tuner stores ``sch.trace``: a flat-mode trace (block re-indexing included) replays."""
    from schedules_kernels import fused_primfuncs
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    from nnef_tvm.schedules.default import knob_space
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 48, 1, 1)).astype("float32")
    b = rng.standard_normal(32).astype("float32")
    (func,) = fused_primfuncs(conv_module(48, 32, 16, 1, 1, "res", w, b, False), target).values()
    if const_weights:
        func = func.with_attr("layout_free_buffers", [1])
    flat = [s for s in knob_space(func, target.tvm())
            if s.get("conv.channel_vector.vector") == "flat"][:3]
    assert flat
    for setting in flat:
        sch = s_tir.Schedule(func)
        with knob_overrides(setting):
            assert schedule_channel_vector(sch, 16, 2)
        replay = s_tir.Schedule(func)
        sch.trace.apply_to_schedule(replay, remove_postproc=False)
        tvm.ir.assert_structural_equal(replay.mod["main"], sch.mod["main"])


def test_flat_mode_on_a_256_bit_target(target):
    """AVX2 (8 lanes, 16 registers): flat tiles of at most 8 accumulators, still the conv."""
    from schedules_kernels import fused_primfuncs, run_primfunc
    from nnef_tvm.schedules.default import schedule_cpu_func
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("host without AVX2")
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 40, 12, 12)).astype("float32")
    w = rng.standard_normal((24, 40, 1, 1)).astype("float32")
    b = rng.standard_normal(24).astype("float32")
    r = rng.standard_normal((1, 24, 12, 12)).astype("float32")
    (func,) = fused_primfuncs(conv_module(40, 24, 12, 1, 1, "res", w, b, False),
                              target).values()
    scheduled, rule = schedule_cpu_func(func, avx2)
    assert rule == "conv_channel_vector"
    text = scheduled.script()
    assert 'T.int64(144)))' in text and "T.vectorized(T.int64(8))" in text
    out = np.zeros((1, 24, 12, 12), "float32")
    got = run_primfunc(scheduled, avx2, [x, w, b.reshape(1, 24, 1, 1), r, out])
    want = conv_reference(x, w, b, 1, 0) + r
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_short_reduction_tile_is_held_in_registers(target):
    """32 input channels: 2 channels x 7 vectors; the 896-byte accumulator needs no workspace."""
    from schedules_kernels import fused_primfuncs
    from nnef_tvm.schedules.default import schedule_cpu_func
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 32, 1, 1)).astype("float32")
    b = rng.standard_normal(48).astype("float32")
    (func,) = fused_primfuncs(conv_module(32, 48, 28, 1, 1, "clip", w, b, False), target).values()
    scheduled, rule = schedule_cpu_func(func.with_attr("layout_free_buffers", [1]), target.tvm())
    text = scheduled.script()
    assert "T.unroll(T.int64(7))" in text and "T.unroll(T.int64(2))" in text
    lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}),
                      target.tvm())
    ir = lib.mod.inspect_source("ll") if hasattr(lib, "mod") else lib.inspect_source("ll")
    calls = [ln for ln in ir.splitlines() if "call" in ln and "conv2d_nchw_intermediate" in ln]
    assert not calls, calls[:2]                   # no TVMBackendAllocWorkspace for the tile
    got, want, _ = build_and_run(32, 48, 28, 1, 1, "clip", target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ strided row vectors (column phases)
PHASE = [
    # (cin, cout, hw, k, stride, epilogue): output rows of whole 16-lane vectors
    (3, 16, 64, 7, 2, "none"),           # ResNet-18 stem shape, smaller map (32 columns)
    (3, 32, 64, 3, 2, "clip"),           # MobileNetV2 stem + relu6
    (5, 24, 96, 5, 2, "clip"),           # padded width 100: 48 columns = 3 vectors
    (4, 8, 94, 3, 3, "none"),            # stride 3: three column phases (96 = 3 x 32)
]


@pytest.mark.parametrize("cin,cout,hw,k,stride,epi", PHASE,
                         ids=[f"{c[0]}to{c[1]}_{c[2]}_k{c[3]}s{c[4]}_{c[5]}" for c in PHASE])
@pytest.mark.parametrize("const_weights", [True, False], ids=["const", "param"])
def test_strided_row_vectors_match_numpy(target, cin, cout, hw, k, stride, epi, const_weights):
    got, want, scripts = build_and_run(cin, cout, hw, k, stride, epi, target,
                                       const_weights=const_weights)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = conv_kernel_script(scripts)
    assert '"nnef.schedule_rule": "conv_channel_vector"' in text
    padded = hw + 2 * (k // 2)
    # the padding copy is stored by column phase: [.., row, phase, column // stride]
    assert f"T.int64({stride}), T.int64({padded // stride})))" in text
    assert "T.vectorized(T.int64(16))" in text


def _phase_func(cin, cout, hw, k, stride, target, seed=0):
    from schedules_kernels import fused_primfuncs
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, cin, k, k)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    (func,) = fused_primfuncs(conv_module(cin, cout, hw, k, stride, "clip", w, b, False),
                              target).values()
    return func


def test_every_strided_row_vector_setting_is_correct(target):
    """Channels x rows tiles (and parallel task counts) over column phases: each one is the conv."""
    from nnef_tvm.schedules.default import knob_space
    space = knob_space(_phase_func(3, 16, 32, 3, 2, target), target.tvm())
    phased = [s for s in space if s["conv.channel_vector.vector"] == "x"]
    assert space[0]["conv.channel_vector.vector"] == "x" and space[0]["conv.channel_vector.yt"] == 2
    assert {(s["conv.channel_vector.fi"], s["conv.channel_vector.yt"]) for s in phased} >= \
        {(8, 2), (16, 1), (4, 4), (8, 1)}
    for s in phased + [s for s in space if s["conv.channel_vector.vector"] == "f"][:2]:
        got, want, _ = build_and_run(3, 16, 32, 3, 2, "clip", target, knobs=s, seed=2)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(s))


def test_strided_row_vectors_need_whole_vectors_and_phase_aligned_padding(target):
    """Odd padded widths and rows that are not whole vectors keep channel vectors."""
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    from nnef_tvm.schedules.default import knob_space
    x_knobs = {"conv.channel_vector.vector": "x", "conv.channel_vector.fi": 8,
               "conv.channel_vector.xt": 16}
    for hw, k in ((63, 3),          # padded width 65: not a multiple of the stride
                  (40, 3)):         # 20 output columns: not whole vectors
        func = _phase_func(3, 16, hw, k, 2, target)
        assert knob_space(func, target.tvm())[0]["conv.channel_vector.vector"] == "f"
        with knob_overrides(x_knobs):
            assert not schedule_channel_vector(s_tir.Schedule(func), 16, 2)
        got, want, _ = build_and_run(3, 16, hw, k, 2, "clip", target)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # a row tile that does not divide the rows left per task is refused
    with knob_overrides(dict(x_knobs, **{"conv.channel_vector.yt": 3})):
        assert not schedule_channel_vector(s_tir.Schedule(_phase_func(3, 16, 32, 3, 2, target)),
                                           16, 2)


def test_strided_row_vector_trace_replays(target):
    """Phase layout, padding split and row tiles are traced primitives: the trace replays."""
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    func = _phase_func(3, 16, 32, 3, 2, target).with_attr("layout_free_buffers", [1])
    sch = s_tir.Schedule(func)
    assert schedule_channel_vector(sch, 16, 2)
    assert "pad_temp_pad_const" in sch.mod["main"].script()      # zero fill split off
    replay = s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replay, remove_postproc=False)
    tvm.ir.assert_structural_equal(replay.mod["main"], sch.mod["main"])


def test_strided_row_vectors_with_batch_two(target):
    """Batch 2, asymmetric-free 'same' padding, residual-free stem: vs numpy per image."""
    rng = np.random.default_rng(5)
    cin, cout, hw, k = 3, 16, 32, 5
    x = rng.standard_normal((2, cin, hw, hw)).astype("float32")
    w = (rng.standard_normal((cout, cin, k, k)) / 8).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    xv = relax.Var("x", relax.TensorType((2, cin, hw, hw), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(xv, relax.const(w), strides=2, padding=k // 2))
            y = bb.emit(op.clip(op.add(y, relax.const(b.reshape(1, cout, 1, 1))), 0.0, 6.0))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    lowered = run_phases(bb.get(), target, build_phases(target))
    text = conv_kernel_script({gv.name_hint: f.script() for gv, f in lowered.functions_items()
                               if isinstance(f, tvm.tirx.PrimFunc)})
    assert "T.int64(2), T.int64(18)))" in text          # phase planes of the 36-wide rows
    vm = relax.VirtualMachine(relax.build(lowered, target.tvm(), relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    want = np.clip(conv_reference(x, w, b, 2, k // 2), 0.0, 6.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ parallel split
def test_row_split_keeps_the_task_count_a_multiple_of_the_cores():
    from nnef_tvm.schedules.conv_cpu import _row_split
    assert _row_split(3, 14, 8, 2) == 14        # 3 x 7 = 21 tasks would leave one thread a task more
    assert _row_split(3, 14, 8, 1) == 7         # one core: the fewest chunks reaching 8 tasks
    assert _row_split(4, 28, 8, 2) == 2         # 8 tasks, balanced already
    assert _row_split(16, 7, 8, 2) == 1         # enough channel tiles, even
    assert _row_split(5, 14, 4, 2) == 2         # odd tile count: rows halved -> 10 tasks
    assert _row_split(5, 7, 8, 2) == 7          # no even total possible: reach the task count
    assert _row_split(25, 7, 8, 2) == 1         # many tasks: a one-task difference is small
    assert _row_split(3, None, 8, 2) == 1       # no row loop to share


def test_three_channel_tiles_on_two_cores_get_an_even_task_count(target):
    """96 output channels = 3 tiles of 32 on a 14-row map: 42 one-row tasks, the conv still right."""
    got, want, scripts = build_and_run(24, 96, 14, 1, 1, "res", target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert "T.parallel(T.int64(42))" in conv_kernel_script(scripts)


def test_row_split_with_fewer_rows_than_wanted_tasks_and_row_bands_first():
    from nnef_tvm.schedules.conv_cpu import _row_split
    assert _row_split(1, 20, 32, 2) == 20       # every row its own task (was an empty choice)
    assert _row_split(8, 112, 8, 2) == 1        # enough channel tiles
    assert _row_split(8, 112, 8, 2, rows_first=True) == 2     # ... but row bands per thread
    assert _row_split(4, 112, 8, 2, rows_first=True) == 2
    assert _row_split(3, 7, 2, 2, rows_first=True) == 7       # 21 tasks: 11 / 10 beats 2 / 1


def test_strided_row_vector_tasks_are_row_bands_first(target):
    """The phase copy and the conv tasks both run rows outermost (each thread reads its own rows)."""
    from tvm import s_tir
    from nnef_tvm.schedules.conv_channel_cpu import schedule_channel_vector
    sch = s_tir.Schedule(_phase_func(3, 16, 32, 3, 2, target))
    assert schedule_channel_vector(sch, 16, 2)
    text = sch.mod["main"].script()
    assert "for yy_0_nn_ff_0_fused in T.parallel(" in text
    assert "for i2_i0_i1_fused in T.parallel(" in text             # interior copy: rows first


def test_strided_row_vectors_on_a_256_bit_target(target):
    """AVX2 (8 lanes): a 3x3 stride-2 conv with 24 output columns takes 8-lane row vectors."""
    from schedules_kernels import run_primfunc
    from nnef_tvm.schedules.default import schedule_cpu_func
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("host without AVX2")
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    rng = np.random.default_rng(6)
    cin, cout, hw, k = 3, 16, 48, 3
    x = rng.standard_normal((1, cin, hw, hw)).astype("float32")
    w = rng.standard_normal((cout, cin, k, k)).astype("float32")
    b = rng.standard_normal(cout).astype("float32")
    func = _phase_func(cin, cout, hw, k, 2, target, seed=6)
    scheduled, rule = schedule_cpu_func(func, avx2)
    assert rule == "conv_channel_vector"
    text = scheduled.script()
    assert "T.int64(2), T.int64(25)))" in text and "T.vectorized(T.int64(8))" in text
    out = np.zeros((1, cout, 24, 24), "float32")
    got = run_primfunc(scheduled, avx2, [x, w, b.reshape(1, cout, 1, 1), out])
    want = np.clip(conv_reference(x, w, b, 2, 1), 0.0, 6.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin,cout,hw,k", [(64, 128, 56, 1), (64, 128, 56, 3), (32, 64, 60, 3)],
                         ids=["1x1_56", "3x3_56", "3x3_60"])
def test_strided_channel_vectors_on_wide_maps_split_rows_first(target, cin, cout, hw, k):
    """ResNet-18's downsampling convs (stride 2, 28-wide output) take row bands per thread."""
    got, want, scripts = build_and_run(cin, cout, hw, k, 2, "clip", target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = conv_kernel_script(scripts)
    par = next(line.strip() for line in text.splitlines() if "T.parallel(" in line
               and "nn_ff" in line)
    assert par.startswith("for yy_0_nn_ff_0_fused"), par


def test_strided_channel_vectors_on_narrow_maps_stay_channel_first(target):
    """14-wide outputs (ResNet-18's 128 -> 256): output channels first, as measured faster."""
    got, want, scripts = build_and_run(64, 128, 28, 3, 2, "clip", target)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = conv_kernel_script(scripts)
    assert "yy_0_nn_ff_0_fused" not in text
