"""The sliding-window kernels without a Relax operator still compile for CUDA.

argmax_pool, sample, desample, debox, the >3-dim box kernel and the RoI kernels are
tensor expressions; GPU builds schedule them with dlight, whose rules assert on some
shapes of TIR (tuple reducers, reductions reading a buffer at several points). This
compiles one graph with all of them for the 'cuda' target (code generation only: no GPU
is needed, numbers are checked on the CPU by the other tests).
"""
import pytest

from nnef_tvm.reader.graph import Model
from nnef_tvm.reader.shapes import infer_shapes

from frontend.support_frontend import graph_of

TEXT = """version 1.0;
graph G( x, y, w, r, b ) -> ( o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13 )
{
    x = external(shape = [1, 4, 8, 8]);
    y = external(shape = [2, 2, 3, 4, 3]);
    w = external(shape = [4, 1, 3, 3]);
    r = external(shape = [3, 4]);
    b = external<integer>(shape = [3]);
    o1 = argmax_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');
    o2 = sample(x, o1, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');
    o3 = desample(o2, o1, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], output_shape = [1, 4, 8, 8]);
    o4 = debox(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], normalize = true, border = 'ignore');
    o5 = box(y, size = [2, 2, 2, 2, 1], normalize = true, border = 'ignore');
    o6 = avg_roi_pool(x, r, b, output_size = [2, 2]);
    o7 = max_roi_align(x, r, b, output_size = [2, 2], sampling_rate = [2, 2]);
    o8 = multilinear_upsample(x, factor = [2, 2], border = 'constant');
    o9 = local_response_normalization(x, size = [1, 3, 1, 1]);
    o10 = conv(x, w, border = 'reflect-even', groups = 0);
    o11, o12 = max_pool_with_index(x, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], border = 'constant');
    o13 = roi_resample(x, r, b, output_size = [3, 3], method = 'aligned');
}
"""


def test_window_kernels_compile_for_cuda():
    import nnef_tvm
    try:
        from nnef_tvm.targets import get_target
        get_target("cuda")
    except Exception as e:  # pragma: no cover - depends on the targets package
        pytest.skip(f"cuda target unavailable: {e}")
    graph = graph_of(TEXT, infer_shapes=False)
    infer_shapes(graph)          # ours: Khronos wants sample's index to have the input shape (O3)
    compiled = nnef_tvm.compile(Model(graph=graph), target="cuda")
    assert compiled is not None
