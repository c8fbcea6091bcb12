"""The fused expansion + depthwise kernel and the Relax rewrite that introduces it.

References are numpy written from the operations' definitions (1x1 conv = a
channel matmul, depthwise 3x3 with zero padding 1, clamp), independent of TVM.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnef_tvm.schedules import expand_depthwise as ed


def block_reference(x, w1, b1, w2, b2, stride, act1=(0.0, 6.0), act2=(0.0, 6.0)):
    """conv1x1 + bias + clamp -> depthwise 3x3 (pad 1, ``stride``) + bias + clamp, NCHW, batch 1."""
    cm = w1.shape[0]
    e = np.einsum("ck,kyx->cyx", w1.reshape(cm, -1).astype(np.float64), x[0].astype(np.float64))
    e = np.clip(e + b1.reshape(cm, 1, 1), *act1)
    p = np.pad(e, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[2], x.shape[3]
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    d = np.zeros((cm, oh, ow))
    w2 = w2.reshape(cm, 3, 3)
    for ky in range(3):
        for kx in range(3):
            d += p[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride] * w2[:, ky, kx][:, None, None]
    return np.clip(d + b2.reshape(cm, 1, 1), *act2)[None].astype(np.float32)


def _weights(cin, cm, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((cm, cin, 1, 1)).astype(np.float32) * 0.4,
            rng.standard_normal(cm).astype(np.float32),
            rng.standard_normal((cm, 1, 3, 3)).astype(np.float32) * 0.4,
            rng.standard_normal(cm).astype(np.float32))


@pytest.mark.parametrize("cin,cm,h,w,stride,act1,act2", [
    (8, 16, 28, 28, 1, (0.0, 6.0), (0.0, 6.0)),
    (8, 16, 28, 28, 2, (0.0, 6.0), (0.0, 6.0)),
    (3, 8, 20, 36, 2, (0.0, math.inf), (-math.inf, math.inf)),   # relu, none; H != W
    (5, 24, 17, 56, 1, (-1.0, 1.0), (0.0, math.inf)),            # odd height, 4-channel tiles
    (4, 16, 6, 112, 2, (0.0, 6.0), (0.0, 6.0)),                  # 2-channel tiles, 7 full vectors
])
def test_kernel_matches_numpy(cin, cm, h, w, stride, act1, act2):
    import tvm
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, cin, h, w)).astype(np.float32)
    w1, b1, w2, b2 = _weights(cin, cm)
    func = ed.expand_depthwise_kernel(cin, cm, h, w, stride, act1, act2)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      tvm.target.Target({"kind": "llvm"}))
    dev = tvm.cpu()
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    args = [x, w1.reshape(cm, cin), b1, w2.reshape(cm, 3, 3), b2, np.zeros((1, cm, oh, ow), np.float32)]
    targs = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args]
    lib(*targs)
    want = block_reference(x, w1, b1, w2, b2, stride, act1, act2)
    np.testing.assert_allclose(targs[-1].numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [dict(cm=12), dict(stride=3), dict(h=27, stride=2)])
def test_kernel_refuses_unsupported_shapes(bad):
    spec = dict(cin=4, cm=16, h=28, w=28, stride=1)
    spec.update(bad)
    with pytest.raises(ValueError):
        ed.expand_depthwise_kernel(spec["cin"], spec["cm"], spec["h"], spec["w"], spec["stride"])


def block_module(cin, cm, h, w, stride, *, act="clip", extra_use=False, dw_groups=None, seed=0):
    """A Relax ``main`` with the pattern (optionally the expansion read a second time)."""
    from tvm import relax
    from tvm.relax import op
    w1, b1, w2, b2 = _weights(cin, cm, seed)
    if dw_groups is not None:
        w2 = w2[:, :1].repeat(cm // dw_groups, axis=1)[:, :cm // dw_groups]
    x = relax.Var("x", relax.TensorType((1, cin, h, w), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            e = bb.emit(op.nn.conv2d(x, relax.const(w1)))
            e = bb.emit(op.add(e, relax.const(b1.reshape(1, cm, 1, 1))))
            e = bb.emit(op.clip(e, 0.0, 6.0) if act == "clip" else op.nn.relu(e))
            y = bb.emit(op.nn.conv2d(e, relax.const(w2), strides=stride, padding=1,
                                     groups=dw_groups or cm))
            y = bb.emit(op.add(y, relax.const(b2.reshape(1, cm, 1, 1))))
            y = bb.emit(op.clip(y, 0.0, 6.0) if act == "clip" else op.nn.relu(y))
            if extra_use:
                y = bb.emit(op.add(y, op.mean(e, axis=[2, 3], keepdims=True)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), (w1, b1, w2, b2)


def _fused_kernels(mod):
    import tvm
    return sorted(gv.name_hint for gv, f in mod.functions_items()
                  if isinstance(f, tvm.tirx.PrimFunc)
                  and f.attrs is not None and f.attrs.get("nnef.schedule_rule") == ed.RULE_NAME)


def _rewrite(mod, lanes=16):
    from tvm.relax import transform as T
    return ed.fuse_expand_depthwise(lanes)(T.FoldConstant()(mod))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("act", ["clip", "relu"])
def test_rewrite_fuses_the_block_and_keeps_the_numbers(stride, act):
    import tvm
    from tvm import relax
    mod, (w1, b1, w2, b2) = block_module(8, 16, 28, 28, stride, act=act)
    fused = _rewrite(mod)
    assert _fused_kernels(fused) == ["fused_expand_dwconv0"]
    assert "nn.conv2d" not in fused["main"].script()
    # the fusion report learns which values the call computes (all six bindings)
    tensors = {str(k): [str(n) for n in v] for k, v in fused.attrs[ed.FUSED_TENSORS_ATTR].items()}
    (root, names), = tensors.items()
    assert len(names) == 6 and names[-1] == root
    x = np.random.default_rng(2).standard_normal((1, 8, 28, 28)).astype(np.float32)
    ex = relax.build(fused, tvm.target.Target({"kind": "llvm"}))
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    bounds = (0.0, 6.0) if act == "clip" else (0.0, math.inf)
    np.testing.assert_allclose(got, block_reference(x, w1, b1, w2, b2, stride, bounds, bounds),
                               rtol=1e-4, atol=1e-4)


def test_identical_blocks_share_one_kernel():
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((1, 8, 28, 28), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            outs = []
            for seed in range(2):           # same shapes, other weights: one kernel, two calls
                w1, b1, w2, b2 = _weights(8, 16, seed)
                e = bb.emit(op.clip(op.add(op.nn.conv2d(x, relax.const(w1)),
                                           relax.const(b1.reshape(1, 16, 1, 1))), 0.0, 6.0))
                y = bb.emit(op.clip(op.add(op.nn.conv2d(e, relax.const(w2), padding=1, groups=16),
                                           relax.const(b2.reshape(1, 16, 1, 1))), 0.0, 6.0))
                outs.append(y)
            out = bb.emit_output(bb.emit(op.add(outs[0], outs[1])))
        bb.emit_func_output(out)
    fused = _rewrite(bb.get())
    assert _fused_kernels(fused) == ["fused_expand_dwconv0"]
    assert fused["main"].script().count("fused_expand_dwconv0") == 2


@pytest.mark.parametrize("case", ["narrow", "extra_use", "grouped", "lanes8"])
def test_rewrite_leaves_what_it_cannot_take(case):
    kwargs = dict(cin=8, cm=16, h=28, w=28, stride=1)
    lanes = 16
    if case == "narrow":
        kwargs.update(h=14, w=14)                  # under MIN_WIDTH: the per-kernel rules win
    elif case == "extra_use":
        kwargs["extra_use"] = True                  # the expansion is read elsewhere too
    elif case == "grouped":
        kwargs["dw_groups"] = 8                     # not depthwise (2 channels per group)
    else:
        lanes = 8                                   # AVX2: the register tile does not fit
    mod, _ = block_module(**kwargs)
    assert _fused_kernels(_rewrite(mod, lanes)) == []


def test_pipeline_switch():
    """build_phases(expand_depthwise=False) keeps the two kernels; the default fuses (AVX-512)."""
    from nnef_tvm.schedules.cpu_common import vector_lanes
    from nnef_tvm.targets import get_target
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    target = get_target("x86")
    mod, _ = block_module(8, 16, 28, 28, 1)
    off = [p for p in build_phases(target, expand_depthwise=False) if p.name == "legalize"]
    assert _fused_kernels(run_phases(mod, target, off)) == []
    on = [p for p in build_phases(target) if p.name == "legalize"]
    want = ["fused_expand_dwconv0"] if vector_lanes(target.tvm()) == 16 else []
    assert _fused_kernels(run_phases(mod, target, on)) == want
