"""Whole modules: the default CPU schedules change no output of a varied op mix.

Runs the project pipeline twice on the same Relax module, with the schedule
phase emptied (TVM's unscheduled kernels, the reference) and with
``default_schedule_passes``, and compares every output. The op mix covers
structures the rules were not written for (transposed convolution, resize,
layer norm, argmax, cumulative sum, strided slices, concatenation, batched
matmul, symbolic batch size), which must fall back safely.
"""
import numpy as np
import pytest


def _build(mod, rules: bool):
    import tvm
    from tvm import relax
    from nnef_tvm.schedules.default import default_schedule_passes
    from nnef_tvm.targets import get_target
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    tgt = get_target("x86", threads=2)
    phases = build_phases(tgt)
    for ph in phases:
        if ph.name == "schedule":
            ph.passes = default_schedule_passes(tgt) if rules else []
    lowered = run_phases(mod, tgt, phases)
    scheduled = {gv.name_hint: f.attrs.get("nnef.schedule_rule") if f.attrs else None
                 for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    ex = relax.build(lowered, tgt.tvm(), relax_pipeline=None)
    return relax.VirtualMachine(ex, tvm.cpu()), scheduled


def _run(vm, arrays):
    import tvm
    out = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
    items = list(out) if not hasattr(out, "numpy") else [out]
    return [o.numpy() for o in items]


def _mixed_module(batch):
    from tvm import relax
    from tvm.relax import op
    x = relax.Var("x", relax.TensorType((batch, 8, 12, 12), "float32"))
    w = relax.Var("w", relax.TensorType((8, 4, 3, 3), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w]):
        with bb.dataflow():
            up = bb.emit(op.nn.conv2d_transpose(x, w, strides=2, padding=1))
            rs = bb.emit(op.image.resize2d(x, (18, 18), method="linear"))
            ln = bb.emit(op.nn.layer_norm(x, relax.const(np.ones(12, "float32")),
                                          relax.const(np.zeros(12, "float32")), axes=[-1]))
            am = bb.emit(op.argmax(x, axis=1))
            cs = bb.emit(op.cumsum(x, axis=3))
            sl = bb.emit(op.strided_slice(x, axes=[2, 3], begin=[1, 0], end=[11, 12],
                                          strides=[3, 2]))
            cat = bb.emit(op.concat([x, ln], axis=1))
            mm = bb.emit(op.matmul(x, op.permute_dims(x, [0, 1, 3, 2])))
            mx = bb.emit(op.max(x, axis=[2, 3]))
            out = bb.emit_output(relax.Tuple([up, rs, ln, am, cs, sl, cat, mm, mx]))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("batch", [1, "symbolic"])
def test_mixed_ops_match_unscheduled(batch):
    from tvm import tirx
    dim = tirx.Var("n", "int64") if batch == "symbolic" else 1
    mod = _mixed_module(dim)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2 if batch == "symbolic" else 1, 8, 12, 12)).astype("float32"),
              rng.standard_normal((8, 4, 3, 3)).astype("float32")]
    ref_vm, _ = _build(mod, rules=False)
    vm, rules = _build(mod, rules=True)
    if batch == 1:
        assert any(r is not None for r in rules.values())     # the rules did act
    for got, want in zip(_run(vm, arrays), _run(ref_vm, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
