"""The depthwise / grouped convolution rule (``conv_spatial_vector``) against numpy.

Every kernel is a Relax ``conv2d`` with ``groups == input channels`` (channel
multiplier 1: depthwise; 2: each input channel feeds two output channels)
plus an epilogue, pushed through the project's legalize / fuse phases and
scheduled by the rule alone. The reference is numpy written from the
convolution's definition (cross-correlation over a zero-padded input, output
channel ``o`` reading input channel ``o // multiplier``), in float64.

The shapes cover what the rule's defaults branch on: stride 1 and 2, 3x3 and
5x5 windows, output widths 7 / 14 / 28 / 56 / 112 (whole-row tiles, one-vector
tiles, pad strips for planes over 32 KiB, chunks of channels for small
column-phase planes), and clip / residual epilogues fused into the write-back.
"""
import numpy as np
import pytest

from schedules_kernels import fused_primfuncs, run_primfunc, single_kernel


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def depthwise_module(channels, hw, k, stride, mult=1, epilogue="clip"):
    """conv2d(groups=channels, 'same'-style padding k//2) + bias + clip(0, 6) or + residual."""
    from tvm import relax
    from tvm.relax import op

    def var(name, shape):
        return relax.Var(name, relax.TensorType(shape, "float32"))

    pad = k // 2
    out_hw = (hw + 2 * pad - k) // stride + 1
    cout = channels * mult
    params = [var("x", (1, channels, hw, hw)), var("w", (cout, 1, k, k)),
              var("b", (1, cout, 1, 1))]
    if epilogue == "residual":
        params.append(var("r", (1, cout, out_hw, out_hw)))
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(params[0], params[1], strides=stride, padding=pad,
                                     groups=channels))
            y = bb.emit(op.add(y, params[2]))
            if epilogue == "clip":
                y = bb.emit(op.clip(y, 0.0, 6.0))
            elif epilogue == "residual":
                y = bb.emit(op.add(y, params[3]))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def numpy_depthwise(x, w, b, stride, mult, epilogue, residual=None):
    """out[o, i, j] = b[o] + sum_{u,v} xpad[o // mult, i*stride + u, j*stride + v] * w[o, 0, u, v]."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (x.shape[2] + 2 * p - k) // stride + 1
    out = np.zeros((1, w.shape[0], oh, oh))
    for o in range(w.shape[0]):
        for u in range(k):
            for v in range(k):
                window = xp[0, o // mult, u:u + stride * oh:stride, v:v + stride * oh:stride]
                out[0, o] += window * float(w[o, 0, u, v])
    out += b.reshape(1, -1, 1, 1)
    if epilogue == "clip":
        out = np.clip(out, 0.0, 6.0)
    elif epilogue == "residual":
        out = out + residual
    return out


def _kernel(target, *args, **kw):
    return single_kernel(depthwise_module(*args, **kw), target)


def _arrays(func, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in func.params:
        shape = [int(d) for d in p.shape]
        # inputs around the clip's knees, so both bounds are exercised
        out.append((rng.standard_normal(shape) * 2).astype("float32"))
    out[-1][...] = np.nan                       # the output must be fully written
    return out


def _schedule(func, target, knobs=None):
    from nnef_tvm.schedules.conv_spatial_cpu import schedule_spatial_vector
    from nnef_tvm.schedules.cpu_common import knob_overrides, num_cores, vector_lanes
    from tvm import s_tir
    t = target.tvm()
    sch = s_tir.Schedule(func)
    with knob_overrides(knobs or {}):
        assert schedule_spatial_vector(sch, vector_lanes(t), num_cores(t))
    return sch.mod["main"]


def _check(func, target, stride, mult, epilogue, knobs=None):
    scheduled = _schedule(func, target, knobs)
    arrays = _arrays(func)
    got = run_primfunc(scheduled, target.tvm(), arrays)
    want = numpy_depthwise(arrays[0], arrays[1], arrays[2], stride, mult, epilogue,
                           arrays[3] if epilogue == "residual" else None)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return scheduled


CASES = [
    # (channels, input hw, k, stride, multiplier, epilogue)
    (3, 7, 3, 1, 1, "clip"),          # 7x7 plane: one partial vector per row
    (5, 14, 3, 1, 1, "residual"),
    (4, 28, 3, 1, 2, "clip"),         # grouped: two output channels per input plane
    (2, 56, 3, 1, 1, "clip"),         # whole 56-wide row x 2 rows per tile
    (2, 112, 3, 1, 1, "residual"),    # plane > 32 KiB: padded in strips of rows
    (32, 14, 3, 2, 1, "clip"),        # small column-phase planes: chunks of channels
    (4, 28, 3, 2, 2, "clip"),
    (3, 56, 3, 2, 1, "residual"),
    (2, 112, 3, 2, 1, "clip"),        # strided and stripped
    (4, 14, 5, 1, 1, "clip"),         # 5x5: 4-accumulator tiles
    (3, 28, 5, 1, 2, "residual"),
    (6, 14, 5, 2, 1, "clip"),
    (2, 56, 5, 2, 1, "clip"),
    (3, 7, 5, 1, 1, "residual"),
    (2, 15, 3, 2, 1, "clip"),         # odd input width: the phase split does not apply
    (3, 15, 3, 1, 1, "residual"),     # 15x15 one-vector rows: 5-row tiles
]


@pytest.mark.parametrize("channels,hw,k,stride,mult,epilogue", CASES,
                         ids=[f"c{c}_hw{hw}_k{k}_s{s}_m{m}_{e}" for c, hw, k, s, m, e in CASES])
def test_depthwise_matches_numpy(target, channels, hw, k, stride, mult, epilogue):
    func = _kernel(target, channels, hw, k, stride, mult, epilogue=epilogue)
    text = _check(func, target, stride, mult, epilogue).script()
    assert "T.parallel" in text and "T.vectorized" in text


@pytest.mark.parametrize("hw,stride,padding", [(14, 2, (0, 0, 1, 1)), (28, 2, (1, 1, 1, 1)),
                                               (15, 2, (1, 1, 1, 1)), (14, 1, (2, 0, 0, 2))],
                         ids=["s2_pad_end", "s2", "s2_odd", "s1_skewed"])
def test_batch_of_two_and_asymmetric_padding(target, hw, stride, padding):
    """Batch 2 (tasks must not straddle images) and padding other than k // 2 on each side."""
    from tvm import relax
    from tvm.relax import op
    ch, k = 16, 3
    x = relax.Var("x", relax.TensorType((2, ch, hw, hw), "float32"))
    w = relax.Var("w", relax.TensorType((ch, 1, k, k), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(x, w, strides=stride, padding=padding, groups=ch))
            out = bb.emit_output(bb.emit(op.nn.relu(y)))
        bb.emit_func_output(out)
    funcs = fused_primfuncs(bb.get(), target)
    func = next(iter(funcs.values()))
    arrays = _arrays(func)
    got = run_primfunc(_schedule(func, target), target.tvm(), arrays)
    top, left, bottom, right = padding
    xp = np.pad(arrays[0].astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (xp.shape[2] - k) // stride + 1
    ow = (xp.shape[3] - k) // stride + 1
    want = np.zeros((2, ch, oh, ow))
    for u in range(k):
        for v in range(k):
            want += xp[:, :, u:u + stride * oh:stride, v:v + stride * ow:stride] * \
                arrays[1][None, :, 0, u, v, None, None]
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_rule_fires_in_the_default_pass(target):
    """The CPU default-schedule pass picks this rule and records it on the function."""
    import tvm
    from nnef_tvm.schedules.default import RULE_ATTR, cpu_default_schedule
    func = _kernel(target, 8, 14, 3, 2)
    mod = tvm.IRModule({"main": func})
    with target.tvm():
        out = cpu_default_schedule()(mod)
    assert str(out["main"].attrs[RULE_ATTR]) == "conv_spatial_vector"


def test_stride_two_pads_by_column_phase_without_bounds_tests(target):
    """Stride 2, zero fill + copy (border parts off): the padded plane is [.., row, phase,
    col // 2], filled then copied."""
    func = _kernel(target, 4, 28, 3, 2)
    text = _schedule(func, target, {"conv.spatial_vector.border_parts": False}).script()
    assert "pad_temp_pad_const" in text                 # zero fill apart from the copy
    assert "T.int64(2), T.int64(15)" in text            # 30 padded columns -> 2 phases x 15
    copy = text[text.index('T.sblock("pad_temp")'):]
    copy = copy[:copy.index("T.sblock(", 10)]
    assert "if_then_else" not in copy                   # interior copy: no bounds test


def test_stride_two_copies_border_and_interior_parts(target):
    """Default for planes wider than a vector: no zero fill; the plane's rows and column
    pairs are cut into border parts and an interior (pairs 1..13 of 15 for 28 columns)."""
    func = _kernel(target, 4, 28, 3, 2)
    text = _schedule(func, target).script()
    assert "pad_temp_pad_const" not in text
    assert "T.int64(2), T.int64(15)" in text
    assert "in range(T.int64(1), T.int64(29))" in text          # rows 1..28: the input rows
    assert "in range(T.int64(1), T.int64(14))" in text          # interior column pairs
    assert "T.unroll(T.int64(2))" in text                       # the two phases of a pair


def test_border_parts_default_and_cuts(target):
    """Border parts by default only for whole planes wider than 1.5 vectors; the cuts."""
    from nnef_tvm.schedules.conv_spatial_cpu import _interior_parts
    # 16 padded columns (14x14 input): two 8-float phase rows, zero fill + copy kept
    assert "pad_temp_pad_const" in _schedule(_kernel(target, 16, 14, 3, 2), target).script()
    assert "pad_temp_pad_const" not in _schedule(_kernel(target, 16, 28, 3, 2), target).script()
    # strips of a 112x112 plane keep the zero fill (their rows' bounds depend on the strip)
    assert "pad_temp_pad_const" in _schedule(_kernel(target, 2, 112, 3, 2), target).script()
    assert _interior_parts(15, 1, 14) == ([1, 13, None], 1)
    assert _interior_parts(29, 1, 29) == ([1, None], 1)         # interior runs to the end
    assert _interior_parts(8, 0, 7) == ([7, None], 0)           # no padding before
    assert _interior_parts(8, 0, 8) == ([None], 0)              # nothing to cut
    assert _interior_parts(8, 3, 3) is None


@pytest.mark.parametrize("parts", [True, False], ids=["parts", "fill"])
@pytest.mark.parametrize("channels,hw,k,stride,epilogue",
                         [(4, 28, 3, 2, "clip"), (3, 56, 3, 2, "residual"),
                          (2, 112, 3, 2, "clip"), (16, 14, 3, 2, "clip"),
                          (6, 14, 5, 2, "clip"), (2, 56, 5, 2, "residual"),
                          (3, 30, 5, 2, "clip")],
                         ids=["28", "56_res", "112_strips", "14_chunks", "14_5x5", "56_5x5_res",
                              "30_5x5"])
def test_phase_copy_modes_match_numpy(target, channels, hw, k, stride, epilogue, parts):
    """Both pad copies of a column-phase plane (border / interior parts, zero fill + copy)
    compute the convolution: 3x3 and 5x5 windows (1 and 2 padded columns a side), whole
    planes, strips of rows, chunks of channels."""
    func = _kernel(target, channels, hw, k, stride, epilogue=epilogue)
    text = _check(func, target, stride, 1, epilogue,
                  {"conv.spatial_vector.border_parts": parts}).script()
    assert ("pad_temp_pad_const" in text) != parts


def test_small_phase_planes_are_padded_per_chunk(target):
    """A 16x16 phase plane (1 KiB) is padded several channels per task (a workspace buffer)."""
    from nnef_tvm.schedules.conv_spatial_cpu import STACK_ALLOCA_BYTES, default_chunk
    assert default_chunk(576, 16 * 16 * 4, 1, 2) == 8
    assert default_chunk(192, 30 * 30 * 4, 1, 2) == 4        # <= 16 KiB a task
    assert default_chunk(576, 16 * 16 * 4, 2, 2) == 8        # two channels per plane
    assert default_chunk(8, 16 * 16 * 4, 1, 2) == 1          # too few tasks to group
    assert default_chunk(16, 16 * 16 * 4, 1, 2) == 2         # >= 8 tasks kept, past 1 KiB
    assert default_chunk(96, 58 * 58 * 4, 1, 2) == 1         # already a workspace
    assert 16 * 16 * 4 * 2 > STACK_ALLOCA_BYTES
    # unit stride: small planes grouped, 9x9 ones kept on the stack (3 x 324 B)
    assert default_chunk(960, 9 * 9 * 4, 1, 2, phased=False) == 3
    assert default_chunk(384, 16 * 16 * 4, 1, 2, phased=False) == 8
    assert default_chunk(192, 30 * 30 * 4, 1, 2, phased=False) == 4      # <= 16 KiB a task
    assert default_chunk(144, 58 * 58 * 4, 1, 2, phased=False) == 1
    assert default_chunk(24, 16 * 16 * 4, 1, 2, phased=False) == 3       # >= 8 tasks kept
    func = _kernel(target, 32, 14, 3, 2)
    text = _schedule(func, target).script()
    assert "T.parallel(T.int64(8))" in text                 # 32 channels / 4 per task


def test_large_planes_are_padded_in_strips(target):
    from nnef_tvm.schedules.conv_spatial_cpu import STRIP_BYTES
    func = _kernel(target, 2, 112, 3, 1)
    text = _schedule(func, target).script()
    # 112 output rows in strips of 28: each strip pads 30 input rows of 114 floats
    assert "T.grid(T.int64(30), T.int64(114))" in text
    assert 30 * 114 * 4 <= STRIP_BYTES


def test_accumulator_scope():
    """One-vector rows: a 'global' (stack) accumulator, no per-task workspace allocation."""
    from nnef_tvm.schedules.conv_spatial_cpu import default_acc_scope
    assert default_acc_scope(14, 16) == "global" and default_acc_scope(28, 16) == "local"


def test_default_tiles():
    from nnef_tvm.schedules.conv_spatial_cpu import default_tile
    assert default_tile(56, 56, 9, 16) == (56, 2)       # 4 vectors x 2 rows
    assert default_tile(28, 28, 9, 16) == (28, 4)
    assert default_tile(28, 28, 25, 16) == (28, 2)      # 5x5: 4 accumulators
    assert default_tile(7, 7, 25, 16) == (7, 7)         # the whole 7x7 plane
    # one-vector-wide tiles under a 3x3 or 5x5 window stack up to 7 rows
    assert default_tile(14, 14, 25, 16) == (14, 7)
    assert default_tile(10, 10, 25, 16) == (10, 5)
    assert default_tile(14, 14, 9, 16) == (14, 7)
    assert default_tile(7, 7, 9, 16) == (7, 7)
    assert default_tile(15, 15, 9, 16) == (15, 5)
    assert default_tile(112, 112, 9, 16) == (16, 7)     # wide rows: one vector
    assert default_tile(112, 1, 9, 16) == (16, 1)       # a single row
    assert default_tile(56, 56, 9, 8) == (8, 7)         # AVX2: 56 is 7 vectors
    assert default_tile(56, 56, 25, 8) == (8, 1)        # 5x5: one row


@pytest.mark.parametrize("shape", [(4, 14, 3, 2, 1), (2, 56, 3, 1, 2), (2, 112, 3, 1, 1)],
                         ids=["s2_14", "grouped_56", "strips_112"])
def test_every_knob_setting_computes_the_convolution(target, shape):
    """The knob space lists only settings that schedule to a correct kernel."""
    from nnef_tvm.schedules.conv_spatial_cpu import spatial_vector_space
    from nnef_tvm.schedules.cpu_common import num_cores, vector_lanes
    from tvm import s_tir
    channels, hw, k, stride, mult = shape
    func = _kernel(target, channels, hw, k, stride, mult)
    t = target.tvm()
    space = spatial_vector_space(s_tir.Schedule(func), vector_lanes(t), num_cores(t))
    assert len(space) >= 4
    keys = {frozenset(s.items()) for s in space}
    assert len(keys) == len(space)                      # no duplicates
    # the default first: it schedules exactly like no knobs at all
    assert _schedule(func, target, space[0]).script() == _schedule(func, target).script()
    for setting in space[1:8]:
        _check(func, target, stride, mult, "clip", setting)


def test_invalid_knob_settings_are_refused(target):
    from nnef_tvm.schedules.conv_spatial_cpu import schedule_spatial_vector
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from tvm import s_tir
    func = _kernel(target, 4, 28, 3, 1)
    for bad in ({"conv.spatial_vector.xt": 5}, {"conv.spatial_vector.yt": 3},
                {"conv.spatial_vector.acc_scope": "shared"},
                {"conv.spatial_vector.chunk": 3}, {"conv.spatial_vector.strip": 5},
                {"conv.spatial_vector.strip": 4, "conv.spatial_vector.chunk": 2}):
        with knob_overrides(bad):
            assert not schedule_spatial_vector(s_tir.Schedule(func), 16, 2), bad


def test_window_unrolled_for_one_vector_tiles_under_5x5(target):
    """7x7 planes under a 5x5 window: the window's loops are unrolled (rows share input vectors)."""
    from nnef_tvm.schedules.conv_spatial_cpu import default_unroll_window
    assert default_unroll_window(7, 25, 16) and default_unroll_window(14, 25, 16)
    assert not default_unroll_window(7, 9, 16)          # 3x3: LLVM unrolls it itself
    assert not default_unroll_window(28, 25, 16)        # wider tiles: measured slower
    # 32 channels: 4 planes a task (1.9 KiB, past the stack limit), window unrolled
    text = _check(_kernel(target, 32, 7, 5, 1), target, 1, 1, "clip").script()
    assert "for ry in T.unroll(T.int64(5))" in text and "for rx in T.unroll(T.int64(5))" in text
    assert "T.parallel(T.int64(8))" in text
    text = _schedule(_kernel(target, 32, 7, 3, 1), target).script()
    assert "ry in T.unroll" not in text
    # the knob turns it off (and on) with the same numbers
    func = _kernel(target, 4, 14, 5, 2)
    _check(func, target, 2, 1, "clip", {"conv.spatial_vector.unroll_window": False})
    func = _kernel(target, 2, 28, 5, 1)
    _check(func, target, 1, 1, "clip", {"conv.spatial_vector.unroll_window": True})


def test_unrolled_window_never_reads_a_stack_plane(target):
    """Too few channels to group past the stack limit: the window stays rolled, and the
    unrolled setting is refused and left out of the knob space (stale stack lanes)."""
    from nnef_tvm.schedules.conv_spatial_cpu import schedule_spatial_vector, spatial_vector_space
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from tvm import s_tir
    func = _kernel(target, 4, 7, 5, 1)              # 4 tasks of one 11x11 plane (484 B)
    text = _check(func, target, 1, 1, "clip").script()
    assert "ry in T.unroll" not in text
    with knob_overrides({"conv.spatial_vector.unroll_window": True}):
        assert not schedule_spatial_vector(s_tir.Schedule(func), 16, 2)
    space = spatial_vector_space(s_tir.Schedule(func), 16, 2)
    assert not any(s["conv.spatial_vector.unroll_window"] for s in space)
    # 32 channels: chunks of 1 or 2 planes stay on the stack, so no unrolled setting has them
    space = spatial_vector_space(s_tir.Schedule(_kernel(target, 32, 7, 5, 1)), 16, 2)
    assert all(s["conv.spatial_vector.chunk"] >= 4 for s in space
               if s["conv.spatial_vector.unroll_window"])


@pytest.mark.parametrize("channels,hw,k,stride", [(16, 56, 3, 1), (32, 7, 5, 1), (8, 28, 3, 2)],
                         ids=["8x7_tiles", "7x7_5x5_unrolled", "s2_28"])
def test_depthwise_on_a_256_bit_target(target, channels, hw, k, stride):
    """AVX2 (8 lanes): a 56-wide map takes one-vector 8-column tiles of 7 rows, a 7x7 plane
    under 5x5 its unrolled window; still the convolution."""
    import tvm
    from nnef_tvm.schedules.conv_spatial_cpu import schedule_spatial_vector
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("host without AVX2")
    from tvm import s_tir
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    func = _kernel(target, channels, hw, k, stride)
    sch = s_tir.Schedule(func)
    assert schedule_spatial_vector(sch, 8, 2)
    text = sch.mod["main"].script()
    if hw == 56:
        assert "T.vectorized(T.int64(8))" in text and "T.unroll(T.int64(7))" in text
    if k == 5:
        assert "for rx in T.unroll(T.int64(5))" in text
    arrays = _arrays(func)
    got = run_primfunc(sch.mod["main"], avx2, arrays)
    want = numpy_depthwise(arrays[0], arrays[1], arrays[2], stride, 1, "clip")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(32, 7, 5, 1), (8, 14, 3, 1), (4, 112, 3, 1), (4, 28, 3, 2),
                                   (2, 112, 3, 2)],
                         ids=["unrolled_5x5", "7_row_tiles", "7_row_strips", "s2_parts",
                              "s2_strip_parts"])
def test_trace_replays_to_the_same_kernel(target, shape):
    """Tuning replays the rule's trace: the new tile / unroll choices are traced primitives."""
    import tvm
    from nnef_tvm.schedules.conv_spatial_cpu import schedule_spatial_vector
    from tvm import s_tir
    func = _kernel(target, *shape)
    sch = s_tir.Schedule(func)
    assert schedule_spatial_vector(sch, 16, 2)
    replay = s_tir.Schedule(func)
    sch.trace.apply_to_schedule(replay, remove_postproc=False)
    tvm.ir.assert_structural_equal(replay.mod["main"], sch.mod["main"])
