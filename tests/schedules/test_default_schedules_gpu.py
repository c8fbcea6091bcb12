"""Default GPU schedules: every kernel of a CUDA build is bound to blocks and threads.

No GPU is needed: the kernels are scheduled and CUDA code is generated (TVM
keeps the CUDA source without a driver); a kernel left without thread
bindings would run as one GPU thread or fail TVM's memory verification.
"""
import pytest

from schedules_kernels import (conv_case, dense_case, elementwise_case, pool_case,
                               softmax_case)


@pytest.fixture(scope="module")
def cuda():
    from nnef_tvm.targets import get_target
    return get_target("cuda", arch="sm_80")


def _scheduled(mod, target):
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    phases = build_phases(target)
    names = [p.name for p in phases]
    return run_phases(mod, target, phases[:names.index("schedule") + 1]), phases


def _thread_bound(func) -> bool:
    text = func.script()
    return "threadIdx.x" in text and "blockIdx.x" in text


CASES = {
    "conv3x3_residual": lambda: conv_case(32, 32, 14, 3, 1, 1),
    "conv3x3_s2": lambda: conv_case(16, 32, 15, 3, 2, 1),
    "conv1x1": lambda: conv_case(24, 48, 7, 1, 1, 1),
    "depthwise": lambda: conv_case(32, 32, 14, 3, 1, 32),
    "grouped": lambda: conv_case(16, 32, 12, 3, 1, 4),
    "dense": lambda: dense_case(1, 64, 48),
    "max_pool": lambda: pool_case("max"),
    "mean": lambda: pool_case("mean"),
    "elementwise": elementwise_case,
    "softmax": softmax_case,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_cuda_kernel_is_thread_bound(cuda, case):
    import tvm
    mod, _ = _scheduled(CASES[case](), cuda)
    funcs = [(gv.name_hint, f) for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs
    unbound = [name for name, f in funcs if not _thread_bound(f)]
    assert unbound == []


def test_cuda_code_generation_of_a_small_network(cuda):
    """conv + depthwise + pool + dense in one module lowers and generates CUDA."""
    from tvm import relax
    from tvm.relax import op
    from nnef_tvm.targets.pipeline import run_phases
    x = relax.Var("x", relax.TensorType((1, 8, 16, 16), "float32"))
    w1 = relax.Var("w1", relax.TensorType((16, 8, 3, 3), "float32"))
    w2 = relax.Var("w2", relax.TensorType((16, 1, 3, 3), "float32"))
    fc = relax.Var("fc", relax.TensorType((16, 10), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w1, w2, fc]):
        with bb.dataflow():
            y = bb.emit(op.nn.relu(op.nn.conv2d(x, w1, padding=1)))
            y = bb.emit(op.nn.conv2d(y, w2, padding=1, groups=16))
            y = bb.emit(op.nn.max_pool2d(y, pool_size=2, strides=2))
            y = bb.emit(op.mean(y, axis=[2, 3]))
            y = bb.emit(op.nn.softmax(op.matmul(y, fc)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod, phases = _scheduled(bb.get(), cuda)
    lowered = run_phases(mod, cuda, [p for p in phases if p.name == "lower"])
    ex = relax.build(lowered, cuda.tvm(), relax_pipeline=None)
    sources = []

    def visit(m):
        if m.kind == "cuda":
            sources.append(str(m.inspect_source()))
        for sub in m.imports:
            visit(sub)
    visit(ex.mod)
    assert sources and "__global__" in sources[0]


def test_binding_check_rejects_unscheduled_kernels(cuda):
    """The check above is not vacuous: before the schedule phase nothing is bound."""
    from schedules_kernels import fused_primfuncs
    funcs = fused_primfuncs(conv_case(16, 16, 8, 3, 1, 1), cuda)
    assert funcs and not any(_thread_bound(f) for f in funcs.values())
