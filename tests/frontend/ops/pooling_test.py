"""max_pool / avg_pool / rms_pool converters vs the numpy spec reference (one compiled graph).

Traps covered: max_pool's default 'constant' border lets zero padding win over negative
values; avg 'constant' divides by the full window volume, 'ignore' by the real cells;
windows over batch/channel dims; borders replicate/reflect/reflect-even; dilation;
negative padding; windows whose all cells are padding under 'ignore' (average 0).
Tolerance float32 rtol/atol 1e-5.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import run_cases  # noqa: E402
from window_test import window_case  # noqa: E402

POOL_SPECS = [
    dict(shape=(1, 2, 5, 5), size=[1, 1, 3, 3], label="default constant border, auto pad"),
    dict(shape=(1, 2, 5, 5), size=[1, 1, 3, 3], border="ignore", label="ignore, auto pad"),
    dict(shape=(2, 3, 6, 7), size=[1, 1, 2, 3], stride=[1, 1, 2, 2], padding=[(0, 0), (0, 0), (1, 0), (1, 1)],
         border="constant", label="explicit padding, constant"),
    dict(shape=(2, 3, 6, 7), size=[1, 1, 3, 2], stride=[1, 1, 2, 1], dilation=[1, 1, 2, 1], border="ignore",
         padding=[(0, 0), (0, 0), (2, 1), (0, 1)], label="dilation, ignore"),
    dict(shape=(1, 6, 3, 3), size=[1, 3, 1, 1], border="ignore", label="channel window"),
    dict(shape=(3, 2, 4), size=[3, 1, 2], stride=[1, 1, 2], label="batch window, rank 3"),
    dict(shape=(1, 2, 4, 5), size=[1, 1, 3, 3], border="replicate", padding=[(0, 0), (0, 0), (1, 1), (2, 0)],
         label="replicate"),
    dict(shape=(1, 2, 4, 5), size=[1, 1, 3, 3], border="reflect", stride=[1, 1, 2, 2], label="reflect auto pad"),
    dict(shape=(1, 2, 4, 5), size=[1, 1, 2, 2], border="reflect-even", padding=[(0, 0), (0, 0), (1, 1), (1, 1)],
         label="reflect-even"),
    dict(shape=(1, 1, 6, 6), size=[1, 1, 2, 2], padding=[(0, 0), (0, 0), (-1, 1), (1, -2)], border="ignore",
         label="negative padding"),
    dict(shape=(1, 1, 3, 4, 5), size=[1, 1, 2, 3, 2], stride=[1, 1, 1, 2, 2], border="ignore", label="3-D"),
    dict(shape=(1, 1, 3), size=[1, 1, 2], padding=[(0, 0), (0, 0), (3, 0)], border="ignore",
         label="window entirely in padding"),
]


def _cases(op, fn, data_offset=0.0, seed=0):
    cases = []
    for k, spec in enumerate(POOL_SPECS):
        spec = dict(spec)
        shape, label = spec.pop("shape"), spec.pop("label")
        if op == "max_pool" and label == "window entirely in padding":
            continue   # max over an empty set: -inf (undefined, not tested)
        rng = np.random.default_rng(seed + k)
        x = (rng.uniform(-2, 2, size=shape) + data_offset).astype(np.float32)
        cases.append(window_case(op, fn, shape, 0, label=f"{op} {label}", data=x, **spec))
    return cases


def test_pool_cases():
    # all-negative data make the 'constant' max_pool trap visible (zeros win at the edges)
    cases = _cases("max_pool", ref.max_pool, data_offset=-3.0, seed=10)
    cases += _cases("avg_pool", ref.avg_pool, seed=20)
    cases += _cases("rms_pool", ref.rms_pool, seed=30)
    run_cases(cases)


def test_max_pool_constant_border_really_includes_zeros():
    x = -np.ones((1, 1, 3, 3), dtype=np.float32)
    want = ref.max_pool(x, [1, 1, 3, 3])
    assert want[0, 0, 0, 0] == 0.0 and want[0, 0, 1, 1] == -1.0   # zeros win only at the edges
    run_cases([window_case("max_pool", ref.max_pool, x.shape, 0, data=x, size=[1, 1, 3, 3]),
               window_case("max_pool", ref.max_pool, x.shape, 0, data=x, size=[1, 1, 3, 3], border="ignore")])
