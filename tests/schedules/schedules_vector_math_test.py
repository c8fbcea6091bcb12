"""exp / sigmoid / tanh / erf / softmax through the CPU pipeline vs float64 numpy, and no scalar libm calls.

The references are the definitions evaluated in float64 (numpy / math.erf),
not TVM's own lowering.
"""
import math

import numpy as np
import pytest

from nnef_tvm.compiler import compile_relax

SHAPE = (3, 40, 37)          # odd inner extent: vector body plus a tail


def _inputs(dtype="float32"):
    rng = np.random.default_rng(7)
    x = np.concatenate([np.linspace(-100.0, 100.0, 2000), rng.normal(0.0, 4.0, 2440)])
    return x[: int(np.prod(SHAPE))].reshape(SHAPE).astype(dtype)


def _module(make, dtype="float32"):
    from tvm import relax
    x = relax.Var("x", relax.TensorType(SHAPE, dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(make(x))
        bb.emit_func_output(out)
    return bb.get()


def _erf(v):
    return np.vectorize(math.erf)(v)


def _softmax(v, axis):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cases():
    from tvm.relax import op
    return {
        "exp": (op.exp, np.exp),
        "sigmoid": (op.sigmoid, lambda v: 1.0 / (1.0 + np.exp(-v))),
        "tanh": (op.tanh, np.tanh),
        "erf": (op.erf, _erf),
        "silu": (lambda x: op.multiply(x, op.sigmoid(x)), lambda v: v / (1.0 + np.exp(-v))),
        "softmax_last": (lambda x: op.nn.softmax(x, axis=-1), lambda v: _softmax(v, -1)),
        "softmax_mid": (lambda x: op.nn.softmax(x, axis=1), lambda v: _softmax(v, 1)),
    }


NAMES = ["exp", "sigmoid", "tanh", "erf", "silu", "softmax_last", "softmax_mid"]


def _run(mod, x):
    compiled = compile_relax(mod, "x86")
    return compiled.run({"x": x})


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64_definition(name):
    make, ref = _cases()[name]
    x = _inputs()
    got = next(iter(_run(_module(make), x).values())).astype(np.float64)
    want = ref(x.astype(np.float64))
    if name == "exp":
        # float32 exp overflows above ln(FLT_MAX) = 88.7228 (the overflow test covers the edge)
        finite = x < 88.72
        assert np.all(np.isinf(got[~finite]))
        got, want = got[finite], want[finite]
    err = np.abs(got - want)
    # a few float32 ulps relative; softmax: 3e-6, the rounding of its normalising sum over
    # ~40 terms (TVM's exact-exp lowering measures 2.0e-6 on these inputs too); values
    # below 1e-30 (float32 underflow territory) only need to be that small
    rtol = 3e-6 if name.startswith("softmax") else 1e-6
    assert np.all(err <= rtol * np.abs(want) + 1e-30), \
        (name, float(np.max(err / (np.abs(want) + 1e-30))))


def test_exp_overflow_and_large_arguments():
    """fast_exp alone clamps at 88.376; the lowering keeps expf's values up to inf."""
    from tvm.relax import op
    x = np.full(SHAPE, 88.5, np.float32)
    x[0, 0, :6] = [88.0, 88.3, 88.6, 88.72, 88.73, 1000.0]
    got = next(iter(_run(_module(op.exp), x).values()))
    want = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):
        want32 = np.exp(x)
    assert np.array_equal(np.isinf(got), np.isinf(want32))
    fin = ~np.isinf(want32)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6)


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh"])
def test_float64_keeps_the_exact_lowering(name):
    make, ref = _cases()[name]
    x = _inputs("float64")
    x = np.clip(x, -60.0, 60.0)
    got = next(iter(_run(_module(make, "float64"), x).values()))
    np.testing.assert_allclose(got, ref(x), rtol=1e-12, atol=1e-300)


def _ir_text(executable) -> str:
    """The LLVM IR of a built executable's kernels (the library and its imports)."""
    lib = executable.mod if hasattr(executable, "mod") else executable
    texts = [lib.inspect_source("ll")] if hasattr(lib, "inspect_source") else []
    for sub in getattr(lib, "imports", []) or []:
        try:
            texts.append(sub.inspect_source("ll"))
        except Exception:
            pass
    return "\n".join(texts)


def _llvm_ir(mod) -> str:
    return _ir_text(compile_relax(mod, "x86").executable)


@pytest.mark.parametrize("name", ["sigmoid", "silu", "tanh", "softmax_last"])
def test_no_scalar_libm_call_left(name):
    """The polynomial forms leave no call to expf / tanhf (16 of which replaced one vector op)."""
    make, _ = _cases()[name]
    ir = _llvm_ir(_module(make))
    assert "define" in ir           # we did read the kernels' LLVM IR
    for fn in ("@expf", "@tanhf", "@llvm.exp.f32", "@llvm.exp.v"):
        assert fn not in ir, (name, fn)


def test_default_lowering_does_call_expf():
    """The check above can fail: TVM's own sigmoid lowering calls expf / llvm.exp."""
    import tvm
    from tvm import relax
    from tvm.relax import op
    mod = relax.transform.LegalizeOps()(_module(op.sigmoid))
    ir = _ir_text(relax.build(mod, tvm.target.Target({"kind": "llvm"})))
    assert "exp" in ir and ("@expf" in ir or "@llvm.exp" in ir)


def _conv_silu_module(cin, cout, hw, k, groups):
    """conv2d (same padding) + bias + SiLU, the EfficientNet expansion / depthwise epilogue."""
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((1, cin, hw, hw), "float32"))
    w = relax.Var("w", relax.TensorType((cout, cin // groups, k, k), "float32"))
    b = relax.Var("b", relax.TensorType((1, cout, 1, 1), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(op.add(op.nn.conv2d(x, w, padding=k // 2, groups=groups), b))
            out = bb.emit_output(op.multiply(y, op.sigmoid(y)))
        bb.emit_func_output(out)
    return bb.get()


def _conv_silu_reference(x, w, b, groups):
    """float64 conv (same padding, stride 1) + bias, then v / (1 + exp(-v))."""
    x, w, b = (a.astype(np.float64) for a in (x, w, b))
    cout, cpg, k, _ = w.shape
    pad = k // 2
    hw = x.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((1, cout, hw, hw))
    per_group = cout // groups
    for o in range(cout):
        g = o // per_group
        for c in range(cpg):
            for ky in range(k):
                for kx in range(k):
                    out[0, o] += w[o, c, ky, kx] * xp[0, g * cpg + c, ky:ky + hw, kx:kx + hw]
    v = out + b
    return v / (1.0 + np.exp(-v))


@pytest.mark.parametrize("cin,cout,hw,k,groups,rule", [
    (16, 32, 14, 1, 1, "conv_channel_vector"),      # expansion 1x1
    (24, 24, 14, 3, 24, "conv_spatial_vector"),      # depthwise 3x3
    (16, 16, 7, 5, 16, "conv_spatial_vector"),       # depthwise 5x5
])
def test_silu_epilogue_fuses_into_the_conv_write_back(tmp_path, cin, cout, hw, k, groups, rule):
    """One stage per SiLU reads its input once, so the whole epilogue joins the write-back.

    With a separate argument stage (TOPI's fast_exp reads it 20 times, too big to
    inline) the epilogue ran as two extra parallel passes over the output.
    """
    import re
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (1, cin, hw, hw)).astype(np.float32)
    w = rng.normal(0, 0.5, (cout, cin // groups, k, k)).astype(np.float32)
    b = rng.normal(0, 0.5, (1, cout, 1, 1)).astype(np.float32)
    compiled = compile_relax(_conv_silu_module(cin, cout, hw, k, groups), "x86",
                             dump_ir=str(tmp_path))
    got = next(iter(compiled.run({"x": x, "w": w, "b": b}).values()))
    np.testing.assert_allclose(got, _conv_silu_reference(x, w, b, groups), rtol=2e-5, atol=2e-5)
    text = (tmp_path / "03_scheduled.relax.py").read_text()
    kernels = [part for part in re.split(r"@T\.prim_func", text) if f'"{rule}"' in part]
    assert len(kernels) == 1, "the fused conv + SiLU kernel took the conv rule"
    assert kernels[0].count("T.parallel(") == 1, "SiLU left as a separate pass"
    assert "sigmoid_x" in kernels[0]
