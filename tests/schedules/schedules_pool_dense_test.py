"""Pooling, global mean and few-row dense rules: numbers vs numpy, and the rules fire.

References are numpy written from the definitions (NNEF ``linear``:
``x @ w + b``; ``max_pool``/``avg_pool``/``box`` windows with their border
rules), never our own unscheduled output alone. The dense rule keeps each
output element's summation order, so it matches to float rounding.
"""
import numpy as np
import pytest

from schedules_kernels import dense_case, fused_primfuncs, random_args, run_primfunc


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def _kernel(mod, target):
    funcs = fused_primfuncs(mod, target)
    assert len(funcs) == 1, sorted(funcs)
    return next(iter(funcs.values()))


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
    func = _kernel(dense_case(n, k, m), target)
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
    func = _kernel(dense_case(1, 1280, 1000), target).with_attr("layout_free_buffers", [1, 2])
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
    _, rule = _schedule(_kernel(dense_case(8, 64, 48), target), target)
    assert rule == "conv_channel_vector"
    _, rule = _schedule(_kernel(conv_case(16, 32, 1, 1, 1, 1), target), target)
    assert rule != "dense_rows"


def test_dense_rows_knob_space(target):
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.schedules.default import knob_space
    func = _kernel(dense_case(1, 512, 1000), target).with_attr("layout_free_buffers", [1, 2])
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
