"""Window kernels follow the conversion options' machine types (float16 scalars, int64 integers).

The TE kernels (argmax_pool, sample, RoI), the 'ignore' cell counts and the fixed
upsampling weights all take their dtype from the options. Compared with the float64 numpy
reference at float16 tolerance (atol 5e-3); indices exact.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402

from frontend.support_frontend import graph_of, run_graph  # noqa: E402
from nnef_tvm.reader.shapes import infer_shapes  # noqa: E402

TEXT = """version 1.0;
graph G( x, r, b ) -> ( i, s, a, p, u )
{
    x = external(shape = [1, 2, 6, 6]);
    r = external(shape = [2, 4]);
    b = external<integer>(shape = [2]);
    i = argmax_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');
    s = sample(x, i, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');
    a = avg_pool(x, size = [1, 2, 3, 3], border = 'ignore');
    p = max_roi_pool(x, r, b, output_size = [2, 2]);
    u = multilinear_upsample(x, factor = [2, 2], border = 'constant');
}
"""


def test_float16_and_int64_machine_types():
    graph = graph_of(TEXT, infer_shapes=False)
    infer_shapes(graph)            # ours: sample's index has the output shape (O3)
    x = np.random.default_rng(0).uniform(-2, 2, (1, 2, 6, 6)).astype("float16")
    rois = np.array([[0, 0, 6, 6], [1.2, 0.6, 4.4, 5.1]], dtype="float16")
    bidx = np.array([0, 0], dtype="int64")
    i, s, a, p, u = run_graph(graph, {"x": x, "r": rois, "b": bidx}, dtype="float16", int_dtype="int64")
    assert i.dtype == np.int64 and s.dtype == a.dtype == p.dtype == u.dtype == np.float16
    xf = x.astype(np.float64)
    kw = dict(stride=[1, 1, 2, 2])
    np.testing.assert_array_equal(i, ref.argmax_pool(xf, [1, 1, 3, 3], "ignore", **kw))
    np.testing.assert_allclose(s, ref.max_pool(xf, [1, 1, 3, 3], "ignore", **kw), atol=5e-3)
    np.testing.assert_allclose(a, ref.avg_pool(xf, [1, 2, 3, 3], "ignore"), atol=5e-3)
    np.testing.assert_allclose(p, ref.max_roi_pool(xf, rois.astype(np.float64), bidx, [2, 2]), atol=5e-3)
    np.testing.assert_allclose(u, ref.multilinear_upsample(xf, [2, 2], "symmetric", "constant"), atol=5e-3)
