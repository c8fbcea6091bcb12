"""Pooling, global mean and few-row dense rules: numbers vs numpy, and the rules fire.

References are numpy written from the definitions (NNEF ``linear``:
``x @ w + b``; ``max_pool``/``avg_pool``/``box`` windows with their border
rules), never our own unscheduled output alone. The dense rule keeps each
output element's summation order, so it matches to float rounding.
"""
import numpy as np
import pytest

from schedules_kernels import (dense_case, fused_primfuncs, random_args, run_primfunc,
                               single_kernel, squeeze_excite_case)


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def _schedule(func, target, rules=None):
    from nnef_tvm.schedules.default import schedule_cpu_func
    return schedule_cpu_func(func, target.tvm(), rules)


def _dense_transposed_kernel(n, k, m):
    """``linear`` with its filter stored [M, K] (NNEF's layout) read in place: x @ w.T + b."""
    from tvm import te
    x = te.placeholder((n, k), name="x")
    w = te.placeholder((m, k), name="w")
    b = te.placeholder((1, m), name="b")
    r = te.reduce_axis((0, k), name="k")
    mm = te.compute((n, m), lambda i, j: te.sum(x[i, r] * w[j, r], axis=r), name="matmul")
    y = te.compute((n, m), lambda i, j: mm[i, j] + b[0, j], name="T_add")
    return te.create_prim_func([x, w, b, y])


# ------------------------------------------------------------------ dense

DENSE = [(1, 512, 1000), (1, 1280, 1000), (3, 512, 1000), (1, 64, 48), (2, 96, 24)]


@pytest.mark.parametrize("packed", [True, False], ids=["weight_const", "weight_runtime"])
@pytest.mark.parametrize("n,k,m", DENSE, ids=[f"{n}x{k}x{m}" for n, k, m in DENSE])
def test_dense_rows_matches_numpy(target, n, k, m, packed):
    func = single_kernel(dense_case(n, k, m), target)
    if packed:   # as the pipeline marks bound constants (prepack.attach_layout_free_buffers)
        func = func.with_attr("layout_free_buffers", [1, 2])
    scheduled, rule = _schedule(func, target)
    assert rule == "dense_rows"
    text = scheduled.script()
    assert "T.vectorized" in text and 'scope="local"' in text
    assert ("w_global" in text) == packed          # the packed [N / nt, K, nt] copy
    x, w, b, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, w, b, out])
    want = x.astype(np.float64) @ w.astype(np.float64) + b
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dense_rows_parallel_over_column_tiles(target):
    func = single_kernel(dense_case(1, 1280, 1000), target).with_attr("layout_free_buffers", [1, 2])
    scheduled, rule = _schedule(func, target)
    text = scheduled.script()
    # 1000 columns = 25 tiles of 40 (5 vectors of 8), the weight packed [25, 1280, 40]
    assert "T.parallel(T.int64(25))" in text
    assert "(T.int64(25), T.int64(1280), T.int64(40))" in text


def test_dense_rows_weight_stored_transposed(target):
    """NNEF's linear filter [M, K]: packed once when constant, else left to the channel rule."""
    func = _dense_transposed_kernel(1, 256, 96)
    _, rule = _schedule(func, target)
    assert rule == "conv_channel_vector"       # a runtime [M, K] weight would need a copy per call
    func = func.with_attr("layout_free_buffers", [1, 2])
    scheduled, rule = _schedule(func, target)
    assert rule == "dense_rows"
    x, w, b, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, w, b, out])
    np.testing.assert_allclose(got, x.astype(np.float64) @ w.T.astype(np.float64) + b,
                               rtol=1e-4, atol=1e-4)


def test_dense_rows_leaves_large_batches_and_convs(target):
    import sys
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from schedules_kernels import conv_case
    _, rule = _schedule(single_kernel(dense_case(8, 64, 48), target), target)
    assert rule == "conv_channel_vector"
    _, rule = _schedule(single_kernel(conv_case(16, 32, 1, 1, 1, 1), target), target)
    assert rule != "dense_rows"


def test_dense_rows_knob_space(target):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space
    func = single_kernel(dense_case(1, 512, 1000), target).with_attr("layout_free_buffers", [1, 2])
    space = knob_space(func, target.tvm())
    assert space[0] == {"dense.rows.nt": 40, "dense.rows.ku": 8}
    assert len(space) > 2
    arrays = random_args(func)
    want = arrays[0].astype(np.float64) @ arrays[1] + arrays[2]
    for setting in space[1:4]:
        with knob_overrides(setting):
            scheduled, rule = _schedule(func, target)
        assert rule == "dense_rows"
        np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), arrays), want,
                                   rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ pooling

def _pool_case(kind, c, hw, k, s, p, include_pad=False):
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((1, c, hw, hw), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            if kind == "max":
                y = bb.emit(op.nn.max_pool2d(x, pool_size=k, strides=s, padding=p))
            else:
                y = bb.emit(op.nn.avg_pool2d(x, pool_size=k, strides=s, padding=p,
                                             count_include_pad=include_pad))
            if kind == "avg_relu":
                y = bb.emit(op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def numpy_pool(x, kind, k, s, p, include_pad):
    """Window max / average over H, W (NCHW) with symmetric padding ``p``.

    Max: padding cells never win (NNEF 'ignore' border). Average: divided by the
    full window (``include_pad``, NNEF 'constant') or by the real cells only ('ignore').
    """
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((n, c, h + 2 * p, w + 2 * p), fill)
    xp[:, :, p:p + h, p:p + w] = x
    real = np.zeros((h + 2 * p, w + 2 * p))
    real[p:p + h, p:p + w] = 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                cells = k * k if include_pad else real[i * s:i * s + k, j * s:j * s + k].sum()
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cells
    return out


POOLS = [
    # (kind, channels, width, window, stride, padding, count_include_pad)
    ("max", 4, 112, 3, 2, 1, False),       # ResNet-18's stem pool
    ("max", 3, 56, 3, 1, 1, False),
    ("max", 5, 14, 2, 2, 0, False),
    ("max", 6, 7, 3, 2, 1, False),
    ("max", 2, 15, 3, 3, 0, False),
    ("avg", 4, 56, 3, 1, 1, True),
    ("avg", 4, 56, 3, 1, 1, False),
    ("avg", 3, 14, 3, 2, 1, False),
    ("avg", 8, 7, 2, 2, 0, False),
    ("avg_relu", 4, 28, 3, 1, 1, True),
]


@pytest.mark.parametrize("kind,c,hw,k,s,p,inc", POOLS,
                         ids=[f"{c[0]}{c[3]}x{c[3]}_s{c[4]}_w{c[2]}{'_incpad' if c[6] else ''}"
                              for c in POOLS])
def test_pool_rows_matches_numpy(target, kind, c, hw, k, s, p, inc):
    func = single_kernel(_pool_case(kind, c, hw, k, s, p, inc), target)
    _check_pool_rows(func, target, kind, k, s, p, inc, atol=1e-5)


def _check_pool_rows(func, target, kind, k, s, p, inc, atol):
    """pool_rows takes ``func``; its result matches numpy and TVM's unscheduled kernel bit for bit."""
    scheduled, rule = _schedule(func, target)
    assert rule == "pool_rows"
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    want = numpy_pool(x.astype(np.float64), "max" if kind == "max" else "avg", k, s, p, inc)
    if kind == "avg_relu":
        want = np.maximum(want, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    # and bit-identical to TVM's unscheduled kernel (window cells reduced in the same order)
    np.testing.assert_array_equal(got, run_primfunc(func, target.tvm(), [x, out]))


def test_pool_rows_structure(target):
    """Per band of output rows: padded rows produced in a small buffer, border split from the copy."""
    func = single_kernel(_pool_case("max", 64, 112, 3, 2, 1), target)
    scheduled, rule = _schedule(func, target)
    text = scheduled.script()
    assert rule == "pool_rows"
    assert "T.parallel(T.int64(448))" in text              # 64 channels x 7 bands of 8 rows
    assert 'T.sblock("pad_temp_pad_const")' in text         # the border fill ...
    assert "T.if_then_else" not in text                     # ... no bounds test per element
    assert "range(T.int64(1938))" in text                   # ... one flat run: 17 rows x 114
    # padded rows stored by column phase (stride 2): [.., row, col % 2, col // 2]
    assert "pad_temp = T.sblock_alloc_buffer((T.int64(1), T.int64(64), T.int64(114), " \
           "T.int64(2), T.int64(57)))" in text
    # 8 rows x 7 vectors of 8, each reducing its 3 x 3 window unrolled (in a register)
    assert "for ax2_1, ax3_0 in T.grid(T.int64(8), T.int64(7))" in text
    assert "for rv0 in T.unroll(T.int64(3))" in text and "for rv1 in T.unroll(T.int64(3))" in text
    assert "T.vectorized(T.int64(8))" in text


def test_pool_rows_one_row_per_task(target):
    """Band 1 (knob): padded window rows made per output row, window loops outside the row."""
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_pool_case("max", 64, 112, 3, 2, 1), target)
    with knob_overrides({"pool.rows.band": 1}):
        scheduled, rule = _schedule(func, target)
    text = scheduled.script()
    assert rule == "pool_rows"
    assert "T.parallel(T.int64(3584))" in text            # 64 channels x 56 output rows
    assert "for rv1, ax3_0 in T.grid(T.int64(3), T.int64(7))" in text


def test_pool_rows_default_band():
    """Largest of 8 / 4 / 2 rows dividing the height, with enough tasks and a small buffer."""
    from nnef_tvm.schedules.pool_cpu import _default_band
    assert _default_band([1, 64, 56, 56, 3, 3], 4, 2, 114) == 8
    assert _default_band([1, 64, 28, 28, 3, 3], 4, 2, 58) == 4      # 28 = 7 x 4
    assert _default_band([1, 64, 7, 7, 3, 3], 4, 2, 16) == 1        # 7 rows: no divisor
    assert _default_band([1, 1, 16, 16, 3, 3], 4, 2, 18) == 2       # 8 tasks need bands of 2
    assert _default_band([1, 1, 8, 8, 3, 3], 4, 2, 10) == 1         # too few tasks
    assert _default_band([1, 8, 56, 2000, 3, 3], 4, 2, 2002) == 1   # band rows beyond 16 KiB
    assert _default_band([1, 56, 3], 2, 2, 58) == 1                 # one spatial axis + width


BANDS = [("max", 5, 56, 3, 2, 1, 1), ("max", 5, 56, 3, 2, 1, 2), ("max", 5, 56, 3, 2, 1, 4),
         ("max", 3, 56, 3, 1, 1, 8), ("max", 4, 28, 2, 2, 0, 7), ("max", 2, 30, 5, 2, 2, 3),
         ("max", 6, 7, 3, 2, 1, 4), ("avg", 4, 28, 3, 2, 1, 2), ("avg_relu", 4, 28, 3, 1, 1, 4)]


@pytest.mark.parametrize("kind,c,hw,k,s,p,band", BANDS,
                         ids=[f"{b[0]}{b[1]}x{b[2]}_k{b[3]}s{b[4]}_band{b[6]}" for b in BANDS])
def test_pool_rows_bands_match_numpy(target, kind, c, hw, k, s, p, band):
    """Every band (a divisor of the height or not: then one row per task) is exact."""
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_pool_case(kind, c, hw, k, s, p, False), target)
    with knob_overrides({"pool.rows.band": band, "pool.rows.direct": False}):
        _check_pool_rows(func, target, kind, k, s, p, False, atol=1e-6)


@pytest.mark.parametrize("setting", [{"pool.rows.phase": False}, {"pool.rows.vector": False},
                                     {"pool.rows.direct": True},
                                     {"pool.rows.band": 4, "pool.rows.phase": False},
                                     {"pool.rows.band": 2, "pool.rows.vector": False}],
                         ids=["no_phase", "llvm_vectors", "in_place", "band_no_phase",
                              "band_llvm_vectors"])
def test_pool_rows_knob_variants_match_numpy(target, setting):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_pool_case("max", 3, 56, 3, 2, 1), target)
    with knob_overrides(setting):
        scheduled, rule = _schedule(func, target)
    assert rule == "pool_rows"
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    np.testing.assert_allclose(got, numpy_pool(x.astype(np.float64), "max", 3, 2, 1, False),
                               rtol=1e-6, atol=1e-6)


def test_pool_rows_average_reads_input_in_place(target):
    """Knob direct: no padded copy; the row is split into border and interior column loops."""
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_pool_case("avg", 8, 56, 3, 1, 1), target)
    with knob_overrides({"pool.rows.direct": True}):
        scheduled, rule = _schedule(func, target)
    assert rule == "pool_rows"
    text = scheduled.script()
    assert 'T.sblock("pad_temp' not in text
    assert "range(T.int64(1), T.int64(55))" in text        # interior columns 1..54
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    np.testing.assert_allclose(got, numpy_pool(x.astype(np.float64), "avg", 3, 1, 1, False),
                               rtol=1e-5, atol=1e-6)


def test_pool_rows_leaves_other_reductions(target):
    """Global mean (no window along the width) and convolutions are not pools."""
    from schedules_kernels import conv_case, pool_case
    for mod in (pool_case("mean"), conv_case(8, 8, 8, 3, 1, 8)):
        for func in fused_primfuncs(mod, target).values():
            _, rule = _schedule(func, target)
            assert rule != "pool_rows"


# ------------------------------------------------------------------ global mean

def _mean_case(c, hw, keepdims=True):
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((1, c, hw, hw), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(op.mean(x, axis=[2, 3], keepdims=keepdims))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


MEANS = [(32, 112, True), (12, 56, True), (24, 28, False), (40, 14, True), (16, 4, True)]


@pytest.mark.parametrize("c,hw,keep", MEANS, ids=[f"{c}x{hw}x{hw}" for c, hw, _ in MEANS])
def test_plane_sum_mean_matches_numpy(target, c, hw, keep):
    func = single_kernel(_mean_case(c, hw, keep), target)
    scheduled, rule = _schedule(func, target)
    assert rule == "plane_sum"
    text = scheduled.script()
    assert "T.vectorized" in text and "_rf_local" in text      # vector partial sums
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    want = x.astype(np.float64).mean(axis=(2, 3), keepdims=keep)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_plane_sum_of_last_axis(target):
    """A sum over the innermost axis (not a pool) is a plane sum too."""
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((48, 256), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(op.sum(x, axis=[1])))
        bb.emit_func_output(out)
    func = single_kernel(bb.get(), target)
    scheduled, rule = _schedule(func, target)
    assert rule == "plane_sum"
    xs, out = random_args(func)
    np.testing.assert_allclose(run_primfunc(scheduled, target.tvm(), [xs, out]),
                               xs.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-5)


ROW_MEANS = [(1152, 7, True), (64, 7, False), (5, 7, True), (24, 5, True)]


@pytest.mark.parametrize("c,hw,keep", ROW_MEANS, ids=[f"{c}x{hw}x{hw}" for c, hw, _ in ROW_MEANS])
def test_plane_sum_rows_of_odd_planes(target, c, hw, keep):
    """7 x 7 = 49 (no vector width tiles it): one row-wide vector of column sums per channel."""
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_mean_case(c, hw, keep), target)
    with knob_overrides({"pool.plane.rows": True}):
        scheduled, rule = _schedule(func, target)
    assert rule == "plane_sum"
    text = scheduled.script()
    assert f"T.vectorized(T.int64({hw}))" in text and "_rf_local" in text
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    want = x.astype(np.float64).mean(axis=(2, 3), keepdims=keep)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_plane_sum_rows_off_by_default(target):
    """pool.plane.rows is off by default (pool_cpu.PLANE_ROWS_DEFAULT): 7 x 7 stays generic."""
    _, rule = _schedule(single_kernel(_mean_case(64, 7), target), target)
    assert rule == "generic_parallel"


def test_plane_sum_leaves_odd_planes_and_inner_axes(target):
    """3 x 3 = 9 (no vector width, rows under 4 floats) and a sum over channels stay generic."""
    from tvm import relax
    from tvm.relax import op
    from nnef_tvm.schedules.cpu_common import knob_overrides
    with knob_overrides({"pool.plane.rows": True}):
        _, rule = _schedule(single_kernel(_mean_case(64, 3), target), target)
    assert rule == "generic_parallel"
    x = relax.Var("x", relax.TensorType((1, 32, 8, 16), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(op.sum(x, axis=[1])))
        bb.emit_func_output(out)
    _, rule = _schedule(single_kernel(bb.get(), target), target)
    assert rule != "plane_sum"


@pytest.mark.parametrize("c,f,hw", [(8, 32, 28), (6, 144, 14), (48, 1152, 7)])
def test_dense_rows_squeeze_excite_gate(target, c, f, hw):
    """A 1x1 conv on a 1x1 map is a GEMV; its sigmoid runs once per channel, not per pixel."""
    func = single_kernel(squeeze_excite_case(c, f, hw), target).with_attr(
        "layout_free_buffers", [1, 2])
    scheduled, rule = _schedule(func, target)
    assert rule == "dense_rows"
    text = scheduled.script()
    # the per-pixel block is a plain product of two loads: the gate (sigmoid, whichever
    # way it is lowered) was computed once per channel into its own buffer
    mul = next(line for line in text.splitlines() if "T_multiply_intermediate[" in
               line.split("=")[0] and "] = " in line)
    rhs = mul.split("] = ", 1)[1]
    assert rhs.count(" * ") == 1 and not any(f in rhs for f in ("sigmoid", "exp", "/", "max"))
    s, w, b, x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [s, w, b, x, out])
    z = np.einsum("fc,c->f", w[:, :, 0, 0].astype(np.float64), s[0, :, 0, 0]) + b[0, :, 0, 0]
    want = x * (1 / (1 + np.exp(-z)))[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_nnef_pool_specs_through_the_x86_pipeline():
    """The frontend's NNEF pooling cases (every border mode, dilation, negative padding,
    3-D and channel windows) compiled with the default schedules vs the numpy spec reference."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.path.join(here, "..", "frontend", "ops"), os.path.join(here, "..")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import pooling_test as spec
    import window_reference as ref
    from window_harness import run_cases
    cases = spec._cases("max_pool", ref.max_pool, data_offset=-3.0, seed=10)
    cases += spec._cases("avg_pool", ref.avg_pool, seed=20)
    run_cases(cases, target="x86")
