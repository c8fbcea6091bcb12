"""Parallel policy of the generic and pooling rules (cpu_common.parallel_worthwhile).

A kernel launches TVM's thread pool only when it has more than one task and at
least ``parallel.min_work`` loop iterations; the knob moves that bar (tuning,
A/B runs). Numbers are checked against numpy whichever way the policy goes.
"""
import numpy as np
import pytest

from schedules_kernels import random_args, run_primfunc, single_kernel


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


def _schedule(func, target):
    from nnef_tvm.schedules.default import schedule_cpu_func
    return schedule_cpu_func(func, target.tvm())


def _mean_case(c, hw):
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((1, c, hw, hw), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(op.mean(x, axis=[2, 3], keepdims=True)))
        bb.emit_func_output(out)
    return bb.get()


def _relu_case(shape):
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(op.nn.relu(x)))
        bb.emit_func_output(out)
    return bb.get()


def test_parallel_worthwhile_threshold_and_knob():
    from nnef_tvm.schedules.cpu_common import (PARALLEL_MIN_WORK, knob_overrides,
                                               parallel_worthwhile)
    assert parallel_worthwhile(PARALLEL_MIN_WORK, 2)
    assert not parallel_worthwhile(PARALLEL_MIN_WORK - 1, 2)
    assert not parallel_worthwhile(1 << 30, 1)            # one task: nothing to share
    with knob_overrides({"parallel.min_work": 100}):
        assert parallel_worthwhile(100, 2) and not parallel_worthwhile(99, 2)
    assert not parallel_worthwhile(100, 2)                # the scope ended


@pytest.mark.parametrize("min_work,parallel", [(None, False), (1 << 12, True)],
                         ids=["default_serial", "knob_parallel"])
def test_generic_mean_follows_the_policy(target, min_work, parallel):
    """MobileNetV2's global mean (1280 x 7 x 7 = 62720 iterations; 49 fits no vector)."""
    from nnef_tvm.schedules.cpu_common import knob_overrides
    func = single_kernel(_mean_case(1280, 7), target)
    with knob_overrides({} if min_work is None else {"parallel.min_work": min_work}):
        scheduled, rule = _schedule(func, target)
    assert rule == "generic_parallel"
    assert ("T.parallel" in scheduled.script()) == parallel
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    np.testing.assert_allclose(got, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,parallel", [((1, 64, 32, 32), True), ((1, 1, 65536), False),
                                            ((1, 8, 8, 8), False)],
                         ids=["enough_work", "one_task", "little_work"])
def test_elementwise_nest_follows_the_policy(target, shape, parallel):
    func = single_kernel(_relu_case(shape), target)
    scheduled, rule = _schedule(func, target)
    assert rule == "generic_parallel"
    assert ("T.parallel" in scheduled.script()) == parallel
    (x, out) = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_pool_policy_small_pool_stays_serial(target):
    """A pool below the bar runs on one thread (same rule, exact result)."""
    from schedules_pool_dense_test import _pool_case, numpy_pool
    func = single_kernel(_pool_case("max", 4, 14, 3, 2, 1), target)
    scheduled, rule = _schedule(func, target)
    assert rule == "pool_rows" and "T.parallel" not in scheduled.script()
    x, out = random_args(func)
    got = run_primfunc(scheduled, target.tvm(), [x, out])
    np.testing.assert_array_equal(got, numpy_pool(x.astype(np.float64), "max", 3, 2, 1,
                                                  False).astype(np.float32))
