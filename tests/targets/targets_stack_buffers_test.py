"""The stack-buffer pass: which allocations it marks, and that marked builds still compute right.

Hand-built lowered PrimFuncs (flat buffers, a parallel loop) check the choice:
sizes at / under / over the limits, inside / outside a parallel loop, scopes,
and that a plane only copied into (a padded input) is never marked. Built
kernels are checked against numpy written from the definition.
"""
import numpy as np
import pytest

import tvm
from tvm import tirx

from nnef_tvm.targets import stack_buffers as sb

SETTINGS = sb.Settings(max_bytes=4096, min_bytes=1024, scopes=("global", "local"))


def _acc_func(n_floats, scope="global", parallel=True, accumulate=True, extent=4):
    """out[i, j] = sum_k k through a per-task accumulator ``acc`` of ``n_floats`` floats."""
    out = tirx.decl_buffer((extent * n_floats,), "float32", "out")
    acc = tirx.decl_buffer((n_floats,), "float32", "acc", scope=scope)
    i, j, k = (tirx.Var(n, "int32") for n in "ijk")
    init = tirx.For(j, 0, n_floats, tirx.ForKind.SERIAL,
                    tirx.BufferStore(acc, tirx.const(0.0, "float32"), [j]))
    k_f = tirx.Cast("float32", k)
    value = acc[j] + k_f if accumulate else k_f
    update = tirx.For(k, 0, 3, tirx.ForKind.SERIAL,
                      tirx.For(j, 0, n_floats, tirx.ForKind.SERIAL,
                               tirx.BufferStore(acc, value, [j])))
    write = tirx.For(j, 0, n_floats, tirx.ForKind.SERIAL,
                     tirx.BufferStore(out, acc[j], [i * n_floats + j]))
    body = tirx.SeqStmt([tirx.AllocBuffer(acc), init, update, write])
    kind = tirx.ForKind.PARALLEL if parallel else tirx.ForKind.SERIAL
    return tirx.PrimFunc([out], tirx.For(i, 0, extent, kind, body))


def _padded_func(plane_floats=1024, acc_floats=512):
    """A task pads its input plane (zero fill + copy, never self-updated) and accumulates from it."""
    inp = tirx.decl_buffer((plane_floats,), "float32", "inp")
    out = tirx.decl_buffer((4 * acc_floats,), "float32", "out")
    pad = tirx.decl_buffer((plane_floats + 2,), "float32", "pad_temp")
    acc = tirx.decl_buffer((acc_floats,), "float32", "acc", scope="local")
    i, j = tirx.Var("i", "int32"), tirx.Var("j", "int32")
    fill = tirx.SeqStmt([tirx.BufferStore(pad, tirx.const(0.0, "float32"), [0]),
                         tirx.BufferStore(pad, tirx.const(0.0, "float32"), [plane_floats + 1])])
    copy = tirx.For(j, 0, plane_floats, tirx.ForKind.SERIAL,
                    tirx.BufferStore(pad, inp[j], [j + 1]))
    init = tirx.For(j, 0, acc_floats, tirx.ForKind.SERIAL,
                    tirx.BufferStore(acc, tirx.const(0.0, "float32"), [j]))
    update = tirx.For(j, 0, acc_floats, tirx.ForKind.SERIAL,
                      tirx.BufferStore(acc, acc[j] + pad[j] + pad[j + 2], [j]))
    write = tirx.For(j, 0, acc_floats, tirx.ForKind.SERIAL,
                     tirx.BufferStore(out, acc[j], [i * acc_floats + j]))
    body = tirx.SeqStmt([tirx.AllocBuffer(pad), fill, copy, tirx.AllocBuffer(acc), init,
                         update, write])
    return tirx.PrimFunc([inp, out], tirx.For(i, 0, 4, tirx.ForKind.PARALLEL, body))


def _only(func, settings=SETTINGS):
    (alloc,) = sb.allocations(func, "f", settings)
    return alloc


@pytest.mark.parametrize("floats, scope, marked", [
    (256, "local", True),      # 1024 bytes: the lower limit (TVM's stack limit) itself
    (1024, "global", True),    # 4096 bytes: at the upper limit
    (1025, "global", False),   # over it
    (255, "local", False),     # under the lower limit: a "local" request stays a workspace
])
def test_size_limits(floats, scope, marked):
    a = _only(_acc_func(floats, scope))
    assert a.accumulator and a.in_parallel and a.nbytes == 4 * floats
    assert a.marked is marked
    assert a.workspace is not marked


def test_small_global_buffer_is_already_on_the_stack():
    a = _only(_acc_func(100, "global"))
    assert a.tvm_stack and not a.marked and not a.workspace


def test_outside_parallel_loop_not_marked():
    a = _only(_acc_func(512, parallel=False))
    assert not a.in_parallel and not a.marked
    assert a.executions == 4          # inside the serial loop all the same


def test_executions_count_enclosing_loops():
    assert _only(_acc_func(512, extent=6)).executions == 6


def test_buffer_not_updated_from_itself_not_marked():
    a = _only(_acc_func(512, accumulate=False))
    assert not a.accumulator and not a.marked


def test_padded_plane_never_marked():
    found = {a.name: a for a in sb.allocations(_padded_func(), "f", SETTINGS)}
    assert not found["pad_temp"].accumulator and not found["pad_temp"].marked
    assert found["pad_temp"].workspace
    assert found["acc"].accumulator and found["acc"].marked
    # even under a limit the plane fits
    wide = sb.Settings(max_bytes=1 << 20, min_bytes=0)
    assert not {a.name: a for a in sb.allocations(_padded_func(), "f", wide)}["pad_temp"].marked


def test_scopes_filter():
    only_global = sb.Settings(max_bytes=4096, scopes=("global",))
    assert not _only(_acc_func(512, "local"), only_global).marked
    assert _only(_acc_func(512, "global"), only_global).marked


def test_mark_sets_tvm_annotation():
    func = _padded_func()
    marked = sb.mark_stack_buffers(func, SETTINGS)
    assert not marked.same_as(func)
    found = {a.name: a for a in sb.allocations(marked, "f", sb.Settings(enabled=False))}
    assert found["acc"].marked and not found["pad_temp"].marked
    assert "disable_lower_builtin" in marked.script()
    # nothing to mark / disabled: the same function back
    plain = _acc_func(512, parallel=False)
    assert sb.mark_stack_buffers(plain, SETTINGS).same_as(plain)
    assert sb.mark_stack_buffers(func, sb.Settings(enabled=False)).same_as(func)


@pytest.mark.parametrize("target, nbytes", [
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}, 2048),
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}, 512),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, 512),
])
def test_default_limit_is_register_file(target, nbytes):
    tgt = tvm.target.Target(target)
    assert sb.register_file_bytes(tgt) == nbytes
    func = _acc_func(nbytes // 4).with_attr("target", tgt)
    assert _only(func, sb.Settings()).marked is (nbytes >= sb.TVM_STACK_BYTES)
    assert not _only(_acc_func(nbytes // 4 + 1).with_attr("target", tgt), sb.Settings()).marked


def test_pipeline_only_for_cpu():
    assert sb.tir_pipeline_for(tvm.target.Target({"kind": "llvm"})) == sb.PIPELINE
    assert sb.tir_pipeline_for(tvm.target.Target({"kind": "cuda"})) == "default"


def _build(func, **settings):
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    target = tvm.target.Target({"kind": "llvm"})
    with sb.stack_buffer_settings(**settings):
        return tvm.tirx.build(mod, target=target, pipeline=sb.tir_pipeline_for(target))


def test_built_accumulator_leaves_workspace_and_stays_right():
    func = _acc_func(384, "local")                   # 1536 bytes
    on = _build(func, max_bytes=4096)
    off = _build(func, enabled=False)
    assert "TVMBackendAllocWorkspace" not in on.inspect_source("ll")
    assert "TVMBackendAllocWorkspace" in off.inspect_source("ll")
    for lib in (on, off):
        out = tvm.runtime.tensor(np.full(4 * 384, -1.0, "float32"))
        lib["main"](out)
        np.testing.assert_array_equal(out.numpy(), np.full(4 * 384, 3.0, "float32"))


def _conv_module(cin, cout, hw):
    from tvm import relax
    from tvm.relax import op
    rng = np.random.default_rng(7)
    w = rng.standard_normal((cout, cin, 1, 1)).astype("float32") / np.sqrt(cin)
    b = rng.standard_normal((1, cout, 1, 1)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, cin, hw, hw), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            c = bb.emit(op.nn.conv2d(x, relax.const(w)), name_hint="conv")
            o = bb.emit_output(bb.emit(op.add(c, relax.const(b)), name_hint="out"))
        bb.emit_func_output(o)
    return bb.get(), w, b


def test_conv_kernel_with_stack_accumulator_matches_numpy(monkeypatch):
    """A 1x1 conv at 14x14 (a 32-channel x 14-column accumulator, 1792 bytes) built with the pass."""
    from nnef_tvm.compiler import compile_relax
    seen = []
    real = sb.stack_buffers_pass

    def recording(settings=None):
        marking = real(settings)

        @tvm.transform.module_pass(opt_level=0)
        def _record(mod, _ctx):
            mod = marking(mod)
            seen.extend(sb.module_allocations(mod, sb.Settings(enabled=False)))
            return mod
        return _record

    monkeypatch.setattr(sb, "stack_buffers_pass", recording)
    mod, w, b = _conv_module(64, 64, 14)
    with sb.stack_buffer_settings(max_bytes=8192):
        cm = compile_relax(mod, "x86")
    assert any(a.marked and a.accumulator for a in seen), seen
    assert not any(a.marked and not a.accumulator for a in seen)
    x = np.random.default_rng(3).standard_normal((1, 64, 14, 14)).astype("float32")
    got = list(cm.run({"x": x}).values())[0]
    want = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
