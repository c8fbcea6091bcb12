"""Sliding-window ops through the full x86 compile pipeline (fusion + schedules), vs numpy.

The per-family tests use a plain ``relax.build``; here a mix of conv/deconv with bias and
borders, pools over channel dims, argmax/sample, resampling, local and RoI ops goes through
``nnef_tvm.compile(..., target='x86')``, where TVM fuses bias/activations/pads into the
kernels, and must still match the spec reference. float32 rtol/atol 1e-4.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402


def test_mixed_window_graph_through_x86_pipeline():
    x = rand((1, 4, 7, 6), 1)
    w = rand((4, 2, 3, 3), 2)
    b = rand((1, 4), 3)
    dw = rand((4, 1, 2, 2), 4)
    rois = np.array([[0.0, 0.0, 7.0, 6.0], [1.3, 0.7, 5.2, 4.9]], dtype=np.float32)
    bidx = np.array([0, 0], dtype=np.int32)
    conv = ref.conv(x, w, b, border="reflect-even", padding=[(1, 2), (2, 0)], groups=2)
    relu = np.maximum(conv, 0)
    size = [1, 1, 3, 3]
    idx = ref.argmax_pool(x, size, "ignore", stride=[1, 1, 2, 2])
    cases = [
        Case({"x": x, "w": w, "b": b},
             "{o} = relu(conv({x}, {w}, {b}, border = 'reflect-even', padding = [(1, 2), (2, 0)], groups = 2));",
             ["o"], [relu]),
        Case({"x": x, "w": dw},
             "{o} = deconv({x}, {w}, 0.5, border = 'replicate', stride = [2, 2], groups = 0);", ["o"],
             [ref.deconv(x, dw, 0.5, "replicate", stride=[2, 2], groups=0)]),
        Case({"x": x}, "{v}, {i} = max_pool_with_index({x}, size = [1, 1, 3, 3], border = 'ignore', "
                       "stride = [1, 1, 2, 2]);",
             ["v", "i"], [ref.max_pool(x, size, "ignore", stride=[1, 1, 2, 2]), idx]),
        Case({"x": x}, "{o} = avg_pool({x}, size = [1, 3, 2, 2], border = 'ignore');", ["o"],
             [ref.avg_pool(x, [1, 3, 2, 2], "ignore")]),
        Case({"x": x}, "{o} = local_response_normalization({x}, size = [1, 3, 1, 1], alpha = 0.2);", ["o"],
             [ref.local_response_normalization(x, [1, 3, 1, 1], alpha=0.2)]),
        Case({"x": x}, "{o} = multilinear_upsample({x}, factor = [2, 2], method = 'asymmetric', "
                       "border = 'constant');", ["o"],
             [ref.multilinear_upsample(x, [2, 2], "asymmetric", "constant")]),
        Case({"x": x, "r": rois, "n": bidx}, "{o} = avg_roi_align({x}, {r}, {n}, output_size = [2, 2], "
                                             "sampling_rate = [2, 2]);", ["o"],
             [ref.avg_roi_align(x, rois, bidx, [2, 2], [2, 2])]),
    ]
    for c in cases:
        c.rtol = c.atol = 1e-4
    run_cases(cases, our_shapes=True, target="x86")
