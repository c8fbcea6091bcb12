"""Weights packed once at compile time, and the tuning knobs of the convolution rules.

References are independent numpy computations written from the convolution /
matmul definitions (NCHW data, OIHW weights, zero padding), never an earlier
output of ours. Structural checks read the module after the pipeline's
``prepack`` phase: the compute kernel's weight parameter must arrive already
packed (a 5-D constant), and no packing copy may be left in it.
"""
import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402
from tvm.relax import op  # noqa: E402

from schedules_kernels import conv_case, fused_primfuncs, random_args, run_primfunc  # noqa: E402


@pytest.fixture(scope="module")
def x86():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def numpy_conv(x, w, stride=1, pad=0, groups=1, dilation=1):
    """Cross-correlation, NCHW / OIHW, symmetric zero padding, float64."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    w = w.astype(np.float64)
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    oh = (h - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd - dilation * (kw - 1) - 1) // stride + 1
    og = cout // groups
    out = np.zeros((n, cout, oh, ow))
    for o in range(cout):
        g = o // og
        for i in range(kh):
            for j in range(kw):
                y0, x0 = i * dilation, j * dilation
                patch = x[:, g * cg:(g + 1) * cg, y0:y0 + stride * oh:stride,
                          x0:x0 + stride * ow:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


def _conv_module(x_shape, w, b, *, stride=1, pad=0, groups=1, dilation=1, clip=False,
                 weights_as_params=False):
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    params = [x]
    if weights_as_params:
        wv = relax.Var("w", relax.TensorType(w.shape, "float32"))
        bv = relax.Var("b", relax.TensorType(b.shape, "float32"))
        params += [wv, bv]
    else:
        wv, bv = relax.const(w), relax.const(b)
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = op.add(op.nn.conv2d(x, wv, strides=stride, padding=pad, groups=groups,
                                    dilation=dilation), bv)
            y = op.clip(y, 0.0, 6.0) if clip else op.nn.relu(y)
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    mod = bb.get()
    if weights_as_params:         # the model's inputs come first, then its weights
        mod["main"] = mod["main"].with_attr("num_input", 1)
    return mod


def _compile(mod, target, database=None):
    """(VirtualMachine, {phase name: module}) through the project's full pipeline."""
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    snaps = {}
    lowered = run_phases(mod, target, build_phases(target, database=database),
                         on_phase=lambda name, m: snaps.__setitem__(name, m))
    ex = relax.build(lowered, target.tvm(), relax_pipeline=None)
    return relax.VirtualMachine(ex, tvm.cpu()), snaps


def _prim_funcs(mod):
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _packed_kernels(mod):
    """Kernels taking a weight that arrives packed (the former copy buffer is now a parameter)."""
    return [n for n, f in _prim_funcs(mod).items() if not n.endswith("_weight_prepack")
            and any(p.name.endswith("_global") for p in f.params)]


def _reference(x, w, b, stride, pad, groups, dilation, clip):
    y = numpy_conv(x, w, stride, pad, groups, dilation) + b
    return np.clip(y, 0, 6) if clip else np.maximum(y, 0)


CONVS = [
    # (name, x shape, cout, k, stride, pad, groups, dilation)
    ("conv3x3", (1, 16, 10, 10), 32, 3, 1, 1, 1, 1),
    ("conv1x1_7px", (1, 64, 7, 7), 32, 1, 1, 0, 1, 1),
    ("conv1x1_wide_rows", (1, 8, 40, 40), 24, 1, 1, 0, 1, 1),
    ("conv1x1_s2_wide_rows", (1, 8, 40, 40), 16, 1, 2, 0, 1, 1),
    ("conv3x3_s2_odd", (1, 8, 11, 11), 16, 3, 2, 1, 1, 1),
    ("conv3x3_dilated", (1, 8, 12, 12), 16, 3, 1, 2, 1, 2),
    ("conv5x5_cout24_odd_width", (1, 4, 9, 13), 24, 5, 1, 2, 1, 1),
    ("conv_cout_not_multiple_of_4", (1, 8, 8, 8), 6, 3, 1, 1, 1, 1),
    ("depthwise_s2", (1, 16, 14, 14), 16, 3, 2, 1, 16, 1),
    ("depthwise_s2_odd_padded_width", (1, 16, 13, 13), 16, 3, 2, 1, 16, 1),
    ("depthwise_s2_no_padding", (1, 16, 15, 15), 16, 3, 2, 0, 16, 1),
    ("grouped_s2", (1, 16, 12, 12), 32, 3, 2, 1, 4, 1),
]


@pytest.mark.parametrize("name,xs,cout,k,stride,pad,groups,dil", CONVS, ids=[c[0] for c in CONVS])
def test_compiled_convs_match_numpy(x86, name, xs, cout, k, stride, pad, groups, dil):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((cout, xs[1] // groups, k, k)).astype("float32")
    b = rng.standard_normal((1, cout, 1, 1)).astype("float32")
    x = rng.standard_normal(xs).astype("float32")
    clip = groups > 1
    vm, _ = _compile(_conv_module(xs, w, b, stride=stride, pad=pad, groups=groups,
                                  dilation=dil, clip=clip), x86)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, _reference(x, w, b, stride, pad, groups, dil, clip),
                               rtol=1e-4, atol=1e-4)


def test_weights_arrive_packed_and_the_copy_left_the_kernel(x86):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 16, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 64, 1, 1)).astype("float32")
    _, snaps = _compile(_conv_module((1, 16, 8, 8), w, b, pad=1), x86)
    fused = _prim_funcs(snaps["fuse_tir"])
    (fname, ffunc), = fused.items()
    assert [int(i) for i in ffunc.attrs["layout_free_buffers"]] == [1, 2]   # weight, bias
    scheduled = _prim_funcs(snaps["schedule"])[fname]
    assert "meta_schedule.layout_rewrite_preproc" in scheduled.script()   # before the split
    funcs = _prim_funcs(snaps["prepack"])
    assert list(funcs) == [fname]     # the copy was folded away; the kernel keeps its name
    assert _packed_kernels(snaps["prepack"]) == [fname]
    kernel = funcs[fname]
    text = kernel.script()
    assert "layout_rewrite_preproc" not in text
    assert 'T.sblock("param_0_global")' not in text          # no copy block left inside
    wshape = [int(d) for d in kernel.params[1].shape]
    fi = wshape[-1]
    assert len(wshape) == 5 and wshape == [64 // fi, 16, 3, 3, fi]
    # the constant handed to the kernel is the packed weight: [tile, c, kh, kw, channel in tile]
    call = [bd.value for blk in snaps["prepack"]["main"].body.blocks for bd in blk.bindings
            if isinstance(bd.value, relax.Call) and fname in str(bd.value.args[0])][0]
    packed = call.args[1].fields[1].value.numpy()
    np.testing.assert_array_equal(packed,
                                  w.reshape(64 // fi, fi, 16, 3, 3).transpose(0, 2, 3, 4, 1))


def test_keep_params_weights_are_packed_by_a_separate_kernel(x86):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 8, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 32, 1, 1)).astype("float32")
    x = rng.standard_normal((1, 8, 9, 9)).astype("float32")
    vm, snaps = _compile(_conv_module(x.shape, w, b, pad=1, weights_as_params=True), x86)
    names = sorted(_prim_funcs(snaps["prepack"]))
    assert any(n.endswith("_weight_prepack") for n in names), names
    assert len(_packed_kernels(snaps["prepack"])) == 1, names
    got = vm["main"](*[tvm.runtime.tensor(a) for a in (x, w, b)]).numpy()
    np.testing.assert_allclose(got, _reference(x, w, b, 1, 1, 1, 1, False), rtol=1e-4, atol=1e-4)
    # a second call with other weights: nothing was baked in
    w2 = rng.standard_normal(w.shape).astype("float32")
    got2 = vm["main"](*[tvm.runtime.tensor(a) for a in (x, w2, b)]).numpy()
    np.testing.assert_allclose(got2, _reference(x, w2, b, 1, 1, 1, 1, False), rtol=1e-4,
                               atol=1e-4)


def test_frontend_keep_params_marks_the_variables(x86):
    """``from_nnef(keep_params=True)`` names its inputs (nnef_input_names): the rest are weights."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((16, 4, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 16, 1, 1)).astype("float32")
    mod = _conv_module((1, 4, 6, 6), w, b, pad=1, weights_as_params=True)
    mod["main"] = mod["main"].without_attr("num_input").with_attr("nnef_input_names", ["x"])
    (func,) = fused_primfuncs(mod, x86).values()
    assert [int(i) for i in func.attrs["layout_free_buffers"]] == [1, 2]


def test_plain_param_weights_stay_unmarked_and_pack_per_task(x86):
    """Without num_input every main parameter is an input: no mark, the old in-kernel copy."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((32, 8, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 32, 1, 1)).astype("float32")
    mod = _conv_module((1, 8, 9, 9), w, b, pad=1, weights_as_params=True)
    mod["main"] = mod["main"].without_attr("num_input")
    funcs = fused_primfuncs(mod, x86)
    assert all(f.attrs is None or "layout_free_buffers" not in f.attrs for f in funcs.values())
    from nnef_tvm.schedules.default import schedule_cpu_func
    scheduled, rule = schedule_cpu_func(next(iter(funcs.values())), x86.tvm())
    assert rule == "conv_channel_vector"
    assert "layout_rewrite_preproc" not in scheduled.script()


def test_extern_kernels_beside_packed_convolutions(x86):
    """argsort lowers to an extern call (no blocks): the split must leave it alone."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((16, 8, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 16, 1, 1)).astype("float32")
    xa = rng.standard_normal((1, 8, 6, 6)).astype("float32")
    x = relax.Var("x", relax.TensorType(xa.shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(op.nn.relu(op.add(op.nn.conv2d(x, relax.const(w), padding=1),
                                          relax.const(b))))
            flat = bb.emit(op.reshape(y, (16, 36)))
            order = bb.emit(op.argsort(flat, axis=1, descending=True, dtype="int32"))
            out = bb.emit_output(relax.Tuple([y, order]))
        bb.emit_func_output(out)
    vm, snaps = _compile(bb.get(), x86)
    assert _packed_kernels(snaps["prepack"])
    got_y, got_order = [o.numpy() for o in vm["main"](tvm.runtime.tensor(xa))]
    want = _reference(xa, w, b, 1, 1, 1, 1, False)
    np.testing.assert_allclose(got_y, want, rtol=1e-4, atol=1e-4)
    flat = want.reshape(16, 36)
    np.testing.assert_allclose(np.take_along_axis(flat, got_order.astype(np.int64), axis=1),
                               -np.sort(-flat, axis=1), rtol=1e-4, atol=1e-4)


def test_dense_layer_weights_packed(x86):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((40, 96)).astype("float32")       # NNEF linear: [out, in]
    b = rng.standard_normal((1, 40)).astype("float32")
    for m in (1, 3):
        x = relax.Var("x", relax.TensorType((m, 96), "float32"))
        bb = relax.BlockBuilder()
        with bb.function("main", [x]):
            with bb.dataflow():
                y = bb.emit(op.add(op.matmul(x, op.permute_dims(relax.const(w))),
                                   relax.const(b)))
                out = bb.emit_output(y)
            bb.emit_func_output(out)
        vm, snaps = _compile(bb.get(), x86)
        assert _packed_kernels(snaps["prepack"])
        xa = rng.standard_normal((m, 96)).astype("float32")
        got = vm["main"](tvm.runtime.tensor(xa)).numpy()
        np.testing.assert_allclose(got, xa.astype(np.float64) @ w.T.astype(np.float64) + b,
                                   rtol=1e-4, atol=1e-4)


def test_clamp_epilogue_is_fused_into_the_write_back(x86):
    """relu6 as where(x < 6, x, 6) reads x twice: still inlined (no extra pass over the output)."""
    from nnef_tvm.schedules.cpu_common import root_blocks
    from nnef_tvm.schedules.default import schedule_cpu_func
    from tvm import s_tir
    rng = np.random.default_rng(6)
    w = rng.standard_normal((32, 8, 1, 1)).astype("float32")
    b = rng.standard_normal((1, 32, 1, 1)).astype("float32")
    x = relax.Var("x", relax.TensorType((1, 8, 7, 7), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            six, zero = relax.const(6.0), relax.const(0.0)
            y = op.add(op.nn.conv2d(x, relax.const(w)), relax.const(b))
            y = op.where(op.less(y, six), y, six)
            y = op.where(op.greater(y, zero), y, zero)
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    func = next(iter(fused_primfuncs(bb.get(), x86).values()))
    scheduled, rule = schedule_cpu_func(func, x86.tvm())
    assert rule == "conv_channel_vector"
    sch = s_tir.Schedule(scheduled)
    names = [sch.get(blk).name_hint for blk in root_blocks(sch)]
    assert not any("where" in n for n in names), names
    arrays = random_args(func)
    scalars = [i for i, a in enumerate(arrays) if a.ndim == 0]
    assert len(scalars) == 2                     # the clamp bounds, in order of use
    arrays[scalars[0]][...] = 6.0
    arrays[scalars[1]][...] = 0.0
    xa, wa, ba = arrays[0], arrays[1], arrays[2]
    got = run_primfunc(scheduled, x86.tvm(), arrays)
    np.testing.assert_allclose(got, np.clip(numpy_conv(xa, wa) + ba, 0, 6), rtol=1e-4, atol=1e-4)


def test_long_multi_read_chains_stay_materialised(x86):
    """Fake-quant-like chains (each value read 3 times) must not be inlined without bound."""
    from nnef_tvm.schedules.default import schedule_cpu_func
    x = relax.Var("x", relax.TensorType((1, 16, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for i in range(8):
                lo, hi = relax.const(-1.0 - i), relax.const(1.0 + i)
                y = bb.emit(op.where(op.less(y, lo), lo, op.where(op.greater(y, hi), hi, y)))
                y = bb.emit(op.multiply(y, relax.const(1.01)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    for func in fused_primfuncs(bb.get(), x86).values():
        scheduled, _ = schedule_cpu_func(func, x86.tvm())
        assert len(scheduled.script()) < 60000
        arrays = random_args(func)          # (the bounds are parameters here: random too)
        np.testing.assert_allclose(run_primfunc(scheduled, x86.tvm(), arrays),
                                   run_primfunc(func, x86.tvm(), arrays), rtol=1e-6)


# ------------------------------------------------------------------ tuning knobs
KNOB_CASES = [
    ("conv3x3", dict(cin=16, cout=32, hw=8, k=3, stride=1, groups=1)),
    ("conv1x1_14px", dict(cin=24, cout=48, hw=14, k=1, stride=1, groups=1)),
    ("conv1x1_wide_rows", dict(cin=8, cout=16, hw=48, k=1, stride=1, groups=1)),
    ("depthwise_s2", dict(cin=16, cout=16, hw=16, k=3, stride=2, groups=16)),
    ("depthwise_14px", dict(cin=8, cout=8, hw=14, k=3, stride=1, groups=8)),
]


@pytest.mark.parametrize("name,kw", KNOB_CASES, ids=[c[0] for c in KNOB_CASES])
def test_every_knob_setting_gives_a_correct_kernel(x86, name, kw):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space, schedule_cpu_func
    func = next(iter(fused_primfuncs(conv_case(**kw), x86).values()))
    func = func.with_attr("layout_free_buffers", [1])
    space = knob_space(func, x86)
    assert 2 <= len(space) <= 24
    _, default_rule = schedule_cpu_func(func, x86.tvm())
    arrays = random_args(func)
    x, w, b = arrays[:3]
    want = numpy_conv(x, w, kw["stride"], kw["k"] // 2, kw["groups"]) + b
    if len(arrays) == 5:
        want = want + arrays[3]
    want = np.maximum(want, 0)
    texts = set()
    for setting in space:
        with knob_overrides(setting):
            scheduled, rule = schedule_cpu_func(func, x86.tvm())
        assert rule == default_rule, setting
        texts.add(scheduled.script())
        np.testing.assert_allclose(run_primfunc(scheduled, x86.tvm(), arrays), want,
                                   rtol=1e-4, atol=1e-4, err_msg=str(setting))
    assert len(texts) == len(space)         # every setting is a different kernel


def test_knob_defaults_and_overrides_scope():
    from nnef_tvm.schedules.cpu_common import KNOBS, knob, knob_overrides
    assert knob("conv.x.y", 3) == 3
    with knob_overrides({"conv.x.y": 5}):
        assert knob("conv.x.y", 3) == 5
        with knob_overrides({"conv.x.z": 1}):
            assert knob("conv.x.y", 3) == 5 and knob("conv.x.z", 0) == 1
        assert knob("conv.x.z", 0) == 0
    with pytest.raises(RuntimeError):
        with knob_overrides({"conv.x.y": 7}):
            raise RuntimeError("boom")
    assert knob("conv.x.y", 3) == 3 and KNOBS.get() == {}


def test_first_setting_is_the_default_schedule(x86):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space, schedule_cpu_func
    func = next(iter(fused_primfuncs(conv_case(16, 32, 8, 3, 1, 1), x86).values()))
    plain, _ = schedule_cpu_func(func, x86.tvm())
    with knob_overrides(knob_space(func, x86)[0]):
        first, _ = schedule_cpu_func(func, x86.tvm())
    tvm.ir.assert_structural_equal(plain, first)


def test_wide_1x1_rows_vectorise_along_the_row(x86):
    """1x1 over rows longer than a vector: column vectors by default, output stored in NCHW.

    (18x18: a plane of whole vectors, 48x48, takes the flat mode instead.)
    """
    from nnef_tvm.schedules.default import knob_space
    func = next(iter(fused_primfuncs(conv_case(8, 16, 18, 1, 1, 1), x86).values()))
    assert knob_space(func, x86)[0]["conv.channel_vector.vector"] == "x"
    func48 = next(iter(fused_primfuncs(conv_case(8, 16, 48, 1, 1, 1), x86).values()))
    assert knob_space(func48, x86)[0]["conv.channel_vector.vector"] == "flat"
    func3 = next(iter(fused_primfuncs(conv_case(8, 16, 48, 3, 1, 1), x86).values()))
    assert knob_space(func3, x86)[0]["conv.channel_vector.vector"] == "f"


def test_no_knobs_for_the_generic_rule(x86):
    from nnef_tvm.schedules.default import knob_space
    from schedules_kernels import softmax_case
    for func in fused_primfuncs(softmax_case(), x86).values():
        assert knob_space(func, x86) == []


def test_trace_replays_on_the_unscheduled_function(x86):
    """What the tuner stores is ``sch.trace``: it must rebuild the same kernel from scratch."""
    from tvm import s_tir
    from nnef_tvm.schedules.cpu_common import knob_overrides, num_cores, vector_lanes
    from nnef_tvm.schedules.default import CPU_RULES, knob_space, schedule_cpu_func
    t = x86.tvm()
    for case in (conv_case(16, 32, 8, 3, 1, 1), conv_case(16, 16, 16, 3, 2, 16)):
        func = next(iter(fused_primfuncs(case, x86).values()))
        func = func.with_attr("layout_free_buffers", [1])
        _, name = schedule_cpu_func(func, t)
        rule = dict(CPU_RULES)[name]
        for setting in knob_space(func, x86)[:3]:
            sch = s_tir.Schedule(func)
            with knob_overrides(setting):
                assert rule(sch, vector_lanes(t), num_cores(t))
            replay = s_tir.Schedule(func)
            sch.trace.apply_to_schedule(replay, remove_postproc=False)
            tvm.ir.assert_structural_equal(replay.mod["main"], sch.mod["main"])


def test_tuned_record_with_prepack_builds_and_stays_correct(x86):
    """A record made from our rule's trace (with its packing step) applies from a database."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space
    from nnef_tvm.schedules import conv_channel_cpu
    from nnef_tvm.schedules.tuning import fused_module, tuning_target
    from tvm import s_tir
    rng = np.random.default_rng(7)
    w = rng.standard_normal((32, 16, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 32, 1, 1)).astype("float32")
    x = rng.standard_normal((1, 16, 8, 8)).astype("float32")
    mod = _conv_module(x.shape, w, b, pad=1)
    fused = fused_module(mod, x86)
    (gv, func), = [(g, f) for g, f in fused.functions_items()
                   if isinstance(f, tvm.tirx.PrimFunc)]
    ttarget = tuning_target(x86)
    setting = knob_space(func, x86)[-1]               # a non-default variant
    wmod = _normalize_mod(func)
    sch = s_tir.Schedule(wmod)
    with knob_overrides(setting):
        assert conv_channel_cpu.schedule_channel_vector(sch, 16, 2)
    db = ms.database.MemoryDatabase()
    workload = db.commit_workload(wmod)
    db.commit_tuning_record(ms.database.TuningRecord(
        sch.trace, workload, [1e-6], ttarget, ms.arg_info.ArgInfo.from_prim_func(wmod["main"])))
    vm, snaps = _compile(mod, x86, database=db)
    scheduled = _prim_funcs(snaps["schedule"])[gv.name_hint]
    assert "nnef.schedule_rule" not in scheduled.attrs          # the record, not our rule
    assert _packed_kernels(snaps["prepack"])
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, _reference(x, w, b, 1, 1, 1, 1, False), rtol=1e-4, atol=1e-4)
