"""Representative fused PrimFuncs for the default-schedule tests.

Each case is a small Relax function (BlockBuilder, not the NNEF frontend, so
these tests only depend on the schedules) pushed through the project's own
legalize -> fuse -> fuse_tir phases, which yields exactly the kind of fused
PrimFuncs the schedule phase sees in a real model.
"""
from __future__ import annotations

import numpy as np


def _var(name, shape):
    from tvm import relax
    return relax.Var(name, relax.TensorType(shape, "float32"))


def emit_epilogue(bb, y, epi: str, residual=None):
    """The conv tests' epilogues after the bias: ``+ residual`` ('res' in epi), clip(0, 6) ('clip')."""
    from tvm.relax import op
    if "res" in epi:
        y = bb.emit(op.add(y, residual))
    if "clip" in epi:
        y = bb.emit(op.clip(y, 0.0, 6.0))
    return y


def conv3x3_relu_conv1x1(shape, w3, w1):
    """relu(conv3x3(x, w3, padding 1)) -> conv1x1(., w1), constant weights: two tunable kernels."""
    from tvm import relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(x, relax.const(w3),
                                                                      padding=1))))
            out = bb.emit_output(bb.emit(relax.op.nn.conv2d(y, relax.const(w1))))
        bb.emit_func_output(out)
    return bb.get()


def squeeze_excite_case(c, f, hw):
    """EfficientNet's SE tail: x * sigmoid(conv1x1(s) + b), s = [1, C, 1, 1], x = [1, F, H, W]."""
    from tvm import relax
    from tvm.relax import op
    s = relax.Var("s", relax.TensorType((1, c, 1, 1), "float32"))
    w = relax.Var("w", relax.TensorType((f, c, 1, 1), "float32"))
    b = relax.Var("b", relax.TensorType((1, f, 1, 1), "float32"))
    x = relax.Var("x", relax.TensorType((1, f, hw, hw), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [s, w, b, x]):
        with bb.dataflow():
            g = bb.emit(op.sigmoid(op.add(op.nn.conv2d(s, w), b)))
            out = bb.emit_output(bb.emit(op.multiply(x, g)))
        bb.emit_func_output(out)
    return bb.get()


def conv_case(cin, cout, hw, k, stride, groups, *, epilogue=True):
    """conv2d (NCHW/OIHW, 'same' padding) + bias + residual-or-not + relu."""
    from tvm import relax
    from tvm.relax import op
    pad = k // 2
    out_hw = (hw + 2 * pad - k) // stride + 1
    x = _var("x", (1, cin, hw, hw))
    w = _var("w", (cout, cin // groups, k, k))
    b = _var("b", (1, cout, 1, 1))
    params = [x, w, b]
    res = None
    if epilogue and stride == 1 and cin == cout:
        res = _var("r", (1, cout, out_hw, out_hw))
        params.append(res)
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(x, w, strides=stride, padding=pad, groups=groups))
            if epilogue:
                y = bb.emit(op.add(y, b))
                if res is not None:
                    y = bb.emit(op.add(y, res))
                y = bb.emit(op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def dense_case(n, k, m):
    from tvm import relax
    from tvm.relax import op
    x, w, b = _var("x", (n, k)), _var("w", (k, m)), _var("b", (1, m))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(op.add(op.matmul(x, w), b))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def pool_case(kind):
    from tvm import relax
    from tvm.relax import op
    x = _var("x", (1, 64, 32, 32))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            if kind == "max":
                y = bb.emit(op.nn.max_pool2d(x, pool_size=3, strides=2, padding=1))
            elif kind == "avg":
                y = bb.emit(op.nn.avg_pool2d(x, pool_size=2, strides=2))
            else:
                y = bb.emit(op.mean(x, axis=[2, 3], keepdims=True))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def elementwise_case():
    from tvm import relax
    from tvm.relax import op
    x, y = _var("x", (1, 64, 32, 32)), _var("y", (1, 64, 1, 1))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, y]):
        with bb.dataflow():
            z = bb.emit(op.nn.relu(op.add(op.multiply(x, y), x)))
            out = bb.emit_output(z)
        bb.emit_func_output(out)
    return bb.get()


def softmax_case():
    from tvm import relax
    from tvm.relax import op
    x = _var("x", (64, 256))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            z = bb.emit(op.nn.softmax(x, axis=-1))
            out = bb.emit_output(z)
        bb.emit_func_output(out)
    return bb.get()


def fused_primfuncs(mod, target) -> dict:
    """{name: PrimFunc} after the project's legalize/fuse/fuse_tir phases for ``target``."""
    import tvm
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    phases = [p for p in build_phases(target) if p.name in ("legalize", "fuse", "fuse_tir")]
    fused = run_phases(mod, target, phases)
    return {gv.name_hint: f for gv, f in fused.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc)}


def single_kernel(mod, target):
    """The one fused PrimFunc of ``mod`` after legalize/fuse/fuse_tir (asserts there is one)."""
    funcs = fused_primfuncs(mod, target)
    assert len(funcs) == 1, sorted(funcs)
    return next(iter(funcs.values()))


def random_args(func, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in func.params:
        shape, dtype = [int(d) for d in p.shape], str(p.dtype)
        if dtype.startswith("int"):              # indices: small and in bounds
            out.append(rng.integers(0, 4, shape).astype(dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def run_primfunc(func, tvm_target, arrays):
    """Build one PrimFunc alone and run it on copies of ``arrays``; returns the last (output)."""
    import tvm
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      tvm_target)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a.copy(), dev) for a in arrays]
    lib(*args)
    return args[-1].numpy()


def compile_and_run(mod, target, arrays, knobs=None):
    """(first output as numpy, lowered module): ``mod`` through the project's whole pipeline
    for ``target`` (a nnef_tvm Target) under ``knobs``, run once on ``arrays``."""
    import tvm
    from tvm import relax
    from nnef_tvm.schedules.cpu_common import knob_overrides
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    with knob_overrides(knobs or {}):
        lowered = run_phases(mod, target, build_phases(target))
    ex = relax.build(lowered, target.tvm(), relax_pipeline=None)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(ex, dev)
    got = vm["main"](*[tvm.runtime.tensor(a, dev) for a in arrays]).numpy()
    return got, lowered
