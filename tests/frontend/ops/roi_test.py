"""RoI converters vs the numpy reference of SPEC-NOTES §7.14's reading (see nnef_tvm/frontend/ops/roi.py).

No external implementation follows NNEF's RoI definitions (nnef_tools and the Khronos runtime
implement none), so the oracle is the loop-based numpy reference; roi_resample of the full-image
RoI is additionally checked against multilinear_upsample (reference self-test). float32 1e-5.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402

ROIS = np.array([[0.0, 0.0, 8.0, 8.0],       # whole map
                 [1.4, 2.6, 6.2, 7.9],       # rounding both ways
                 [2.0, 1.0, 3.0, 9.5],       # smaller than output in y, sticks out in x
                 [5.5, -1.2, 7.7, 3.3]], dtype=np.float32)
BIDX = np.array([0, 1, 1, 0], dtype=np.int32)


def _case(op, fn, x, rois, bidx, body_attrs, **kw):
    return Case({"x": x, "r": rois, "b": bidx}, f"{{o}} = {op}({{x}}, {{r}}, {{b}}, {body_attrs});", ["o"],
                [fn(x, rois, bidx, **kw)], label=f"{op} {body_attrs}")


def test_roi_cases():
    x = rand((2, 3, 8, 8), 1)
    cases = [
        _case("avg_roi_pool", ref.avg_roi_pool, x, ROIS, BIDX, "output_size = [2, 3]", output_size=[2, 3]),
        _case("max_roi_pool", ref.max_roi_pool, x, ROIS, BIDX, "output_size = [3, 2]", output_size=[3, 2]),
        _case("max_roi_pool", ref.max_roi_pool, x, ROIS[1:3], BIDX[1:3].reshape(2, 1), "output_size = [2, 2]",
              output_size=[2, 2]),
    ]
    for method in ("symmetric", "asymmetric", "aligned"):
        cases.append(_case("roi_resample", ref.roi_resample, x, ROIS, BIDX,
                           f"output_size = [3, 4], method = '{method}'", output_size=[3, 4], method=method))
    cases += [
        _case("avg_roi_align", ref.avg_roi_align, x, ROIS, BIDX, "output_size = [2, 2], sampling_rate = [2, 2]",
              output_size=[2, 2], sampling_rate=[2, 2]),
        _case("max_roi_align", ref.max_roi_align, x, ROIS, BIDX,
              "output_size = [2, 3], sampling_rate = [1, 2], resize_method = 'aligned'",
              output_size=[2, 3], sampling_rate=[1, 2], resize_method="aligned"),
    ]
    run_cases(cases, our_shapes=True)   # Khronos wants batch_index rank 1; ours accepts [N, 1] too
