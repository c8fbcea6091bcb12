"""Keep the accumulators of parallel CPU tasks on the stack (a TIR pass + a TIR pipeline).

Why: TVM 0.27's ``LowerTVMBuiltin`` (the first host finalisation pass of
``tvm.tirx.build``) keeps a CPU allocation as a stack array only when its
storage scope is ``"global"`` and it is smaller than 1 KiB
(``runtime::kMaxStackAlloca``). Every other buffer allocated inside a parallel
task -- a ``"local"`` accumulator of any size, a ``"global"`` one of 1 KiB or
more -- becomes a ``TVMBackendAllocWorkspace`` / ``TVMBackendFreeWorkspace``
pair executed per task (per tile when the allocation sits in a serial loop of
the task), and LLVM sees an opaque pointer: it can neither keep the
accumulator in registers nor widen its loads. The pass here marks chosen
allocations with TVM's own ``"disable_lower_builtin"`` annotation, which
``LowerTVMBuiltin`` honours by leaving the allocation alone; the LLVM code
generator then emits an ``alloca`` in the entry block of the parallel task's
function (one stack array per task, on the worker thread's stack).

Which allocations (all must hold):

* inside a ``parallel`` loop of a CPU (``llvm``) function, with a constant size;
* an *accumulator*: some store into the buffer reads the buffer itself
  (``acc[i] = acc[i] + a * b``, what ``cache_write`` of a reduction and
  ``rfactor`` produce). Every element of an accumulator is written (its
  initialisation) before any is read. Padded input planes are excluded by
  this test: they are only copied into, and on the stack a column-phase plane
  reads slots whose zero stores LLVM dropped (nothing reads them by name), so
  a widened vector load picks up stale stack bytes, often denormals that cost
  a microcode assist per multiply (see ``conv_spatial_cpu.default_chunk``);
* at least ``min_bytes`` (1 KiB, TVM's own stack limit): below it a rule
  chose ``"global"`` (a stack array already) or ``"local"`` on purpose
  (measured on the stack, paired per kernel: MobileNetV2's 160-byte dense
  accumulator 12% slower, its 448-byte depthwise ones mixed, one 10% slower,
  one 12% faster);
* at most ``max_bytes``, by default the target's vector register file
  (:func:`register_file_bytes`, 2 KiB on AVX-512): an accumulator that fits
  can live in registers once LLVM sees a stack array; a larger one stays in
  memory (MobileNetV2's 6272-byte 7x7 accumulators ran 7-8% slower on the
  stack, probably because TVM's LLVM code generator aligns an ``alloca`` to
  16 bytes only, the workspace pool to 64);
* storage scope ``"global"`` or ``"local"``.

Measured (paired ``ab_libs.py``, untuned, two runs at 2 and at 1 thread):
MobileNetV2 0.976-0.985x, EfficientNet-B0 0.991-0.995x, ResNet-18
0.990-0.997x; per kernel the 1792-byte accumulators of 14x14 1x1 convs 2-3%
faster, the first 3x3 conv's 1 KiB one 6-10%, the 1 KiB 4x4 flat tile of the
56x56 144->24 projection 4-10%.

:func:`allocations` lists every allocation of a lowered function with what the
pass decides about it (for reports and tests). :data:`PIPELINE` names the TIR
pipeline (TVM's default s_tir pipeline with this pass at its end, right before
the host finalisation) for ``relax.build(..., tir_pipeline=...)``;
:func:`tir_pipeline_for` picks it for CPU targets.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Optional

# TVM's own annotation key (``tirx::transform::kDisableLowerTVMBuiltin``).
ANNOTATION = "disable_lower_builtin"
# LowerTVMBuiltin keeps "global" CPU allocations smaller than this on the stack.
TVM_STACK_BYTES = 1024
DEFAULT_SCOPES = ("global", "local")
PIPELINE = "nnef_cpu_stack_buffers"

_SETTINGS = contextvars.ContextVar("nnef_stack_buffers", default=None)


@dataclass(frozen=True)
class Settings:
    """What the pass marks: sizes ``min_bytes`` .. ``max_bytes``, storage ``scopes``.

    ``max_bytes`` None: the target's vector register file (:func:`register_file_bytes`).
    """

    max_bytes: Optional[int] = None
    min_bytes: int = TVM_STACK_BYTES
    scopes: tuple = DEFAULT_SCOPES
    enabled: bool = True

    def limit(self, target) -> int:
        return self.max_bytes if self.max_bytes is not None else register_file_bytes(target)


def current_settings() -> Settings:
    return _SETTINGS.get() or Settings()


@contextlib.contextmanager
def stack_buffer_settings(max_bytes: Optional[int] = None, min_bytes: Optional[int] = None,
                          scopes=None, enabled: bool = True):
    """Build with other pass settings (A/B measurements, tests); the old ones come back on exit."""
    base = current_settings()
    new = Settings(base.max_bytes if max_bytes is None else int(max_bytes),
                   base.min_bytes if min_bytes is None else int(min_bytes),
                   tuple(base.scopes if scopes is None else scopes), bool(enabled))
    token = _SETTINGS.set(new)
    try:
        yield new
    finally:
        _SETTINGS.reset(token)


@dataclass
class Allocation:
    """One allocation of a lowered function and what the pass makes of it."""

    function: str
    name: str
    scope: str
    nbytes: Optional[int]          # None: not a constant size
    in_parallel: bool
    executions: Optional[int]      # times the allocation runs per call (None: loop bounds vary)
    accumulator: bool
    tvm_stack: bool                # LowerTVMBuiltin keeps it on the stack unmarked
    marked: bool                   # carries the annotation (after the pass)

    @property
    def workspace(self) -> bool:
        """Whether it ends as a TVMBackendAllocWorkspace call."""
        return not (self.tvm_stack or self.marked)


# ---------------------------------------------------------------- IR walking

_EXPR_FIELDS = ("a", "b", "value", "args", "vectors", "condition", "true_value", "false_value",
                "base", "stride", "indices", "body", "source")


def _reads_buffer(expr, buf) -> bool:
    """Whether ``expr`` loads from ``buf``.

    Buffers are compared as objects: in TVM 0.27 a Buffer is a Var of its own
    and ``buffer.data`` builds a new Var on each access (never ``same_as``).
    """
    from tvm.ir.expr import Expr as PrimExpr
    from tvm.ir.expr import TensorLoad        # what tirx's BufferLoad builds in TVM 0.27
    stack = [expr]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if isinstance(node, TensorLoad):
            if node.source.same_as(buf):
                return True
        if isinstance(node, PrimExpr):
            for field in _EXPR_FIELDS:
                child = getattr(node, field, None)
                if child is None:
                    continue
                if isinstance(child, PrimExpr):
                    stack.append(child)
                elif not isinstance(child, (str, int, float)) and hasattr(child, "__iter__"):
                    stack.extend(c for c in child if isinstance(c, PrimExpr))
    return False


def _children(stmt) -> list:
    from tvm import tirx
    if isinstance(stmt, tirx.SeqStmt):
        return list(stmt.seq)
    if isinstance(stmt, (tirx.For, tirx.While, tirx.AttrStmt)):
        return [stmt.body]
    if isinstance(stmt, tirx.IfThenElse):
        return [stmt.then_case] + ([stmt.else_case] if stmt.else_case is not None else [])
    return []


def _with_children(stmt, kids: list):
    """``stmt`` rebuilt with new child statements (same order as :func:`_children`)."""
    from tvm import tirx
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt(kids, stmt.span)
    if isinstance(stmt, tirx.For):
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, kids[0],
                        stmt.thread_binding, stmt.annotations, stmt.step, stmt.span)
    if isinstance(stmt, tirx.While):
        return tirx.While(stmt.condition, kids[0], stmt.span)
    if isinstance(stmt, tirx.AttrStmt):
        return tirx.AttrStmt(stmt.node, stmt.attr_key, stmt.value, kids[0], stmt.span)
    if isinstance(stmt, tirx.IfThenElse):
        return tirx.IfThenElse(stmt.condition, kids[0], kids[1] if len(kids) > 1 else None,
                               stmt.span)
    raise TypeError(f"no children to replace in {type(stmt).__name__}")


def _self_updated(body) -> list:
    """The buffers some store in ``body`` updates from themselves (accumulators)."""
    from tvm import tirx
    out = []
    stack = [body]
    while stack:
        s = stack.pop()
        if isinstance(s, tirx.BufferStore):
            if not any(s.buffer.same_as(b) for b in out) and _reads_buffer(s.value, s.buffer):
                out.append(s.buffer)
        else:
            stack.extend(_children(s))
    return out


def _nbytes(buf) -> Optional[int]:
    import tvm
    total = 1
    for d in buf.shape:
        if not hasattr(d, "value"):
            return None
        total *= int(d.value)
    dt = tvm.DataType(str(buf.dtype))
    return total * dt.bits * dt.lanes // 8


def _extent(loop) -> Optional[int]:
    return int(loop.extent.value) if hasattr(loop.extent, "value") else None


def _chosen(a: Allocation, settings: Settings, limit: int) -> bool:
    """Whether the pass marks allocation ``a`` (see the module docstring)."""
    return (settings.enabled and a.in_parallel and a.accumulator and not a.tvm_stack
            and a.nbytes is not None and settings.min_bytes <= a.nbytes <= limit
            and a.scope in settings.scopes)


def _walk(func_name, body, settings: Settings, limit: int, updated: list, mark: bool):
    """(new body, [Allocation]) -- marks the chosen allocations when ``mark``."""
    from tvm import tirx
    found = []

    def visit(stmt, in_par: bool, execs: Optional[int]):
        if isinstance(stmt, tirx.AllocBuffer):
            buf = stmt.buffer
            scope = buf.scope()
            nbytes = _nbytes(buf) if len(buf.shape) == 1 else None
            already = ANNOTATION in stmt.annotations and bool(stmt.annotations[ANNOTATION])
            a = Allocation(func_name, buf.name, scope, nbytes, in_par, execs,
                           any(buf.same_as(b) for b in updated),
                           scope == "global" and nbytes is not None and 0 < nbytes < TVM_STACK_BYTES,
                           already)
            found.append(a)
            if not already and _chosen(a, settings, limit):
                a.marked = True
                if mark:
                    ann = dict(stmt.annotations)
                    ann[ANNOTATION] = tirx.const(1, "int32")   # LowerTVMBuiltin reads an IntImm
                    return tirx.AllocBuffer(buf, ann, stmt.span)
            return stmt
        kids = _children(stmt)
        if not kids:
            return stmt
        if isinstance(stmt, tirx.For):
            ext = _extent(stmt)
            execs = execs * ext if (execs is not None and ext is not None) else None
            in_par = in_par or stmt.kind == tirx.ForKind.PARALLEL
        new = [visit(k, in_par, execs) for k in kids]
        if all(n.same_as(k) for n, k in zip(new, kids)):
            return stmt
        return _with_children(stmt, new)

    return visit(body, False, 1), found


def _target(func):
    return func.attrs.get("target") if func.attrs is not None else None


def register_file_bytes(target) -> int:
    """Bytes of the target's float vector registers (x86 AVX-512 and AArch64: 32, else 16).

    An accumulator up to this size can live in registers once LLVM sees it as a
    stack array; a larger one stays in memory, where a workspace buffer is
    better aligned (64 bytes, against the 16 bytes TVM's LLVM code generator
    gives a stack array).
    """
    from ..schedules.cpu_common import vector_lanes
    if target is None:
        return 16 * 16
    lanes = vector_lanes(target)
    triple = str(target.attrs.get("mtriple", "") or "")
    many = lanes >= 16 or triple.startswith("aarch64")
    return (32 if many else 16) * lanes * 4


def _on_cpu(func) -> bool:
    target = _target(func)
    return target is None or target.kind.name == "llvm"


def _scan(func, name, settings, mark):
    settings = settings or current_settings()
    if not _on_cpu(func):
        settings = Settings(enabled=False)
    limit = settings.limit(_target(func)) if settings.enabled else 0
    return _walk(name, func.body, settings, limit, _self_updated(func.body), mark)


def allocations(func, name: str = "", settings: Optional[Settings] = None) -> list:
    """Every allocation of lowered PrimFunc ``func`` and what the pass decides about it.

    ``marked`` reports what the pass *would* mark (or did, on an already marked function).
    """
    return _scan(func, name, settings, mark=False)[1]


def mark_stack_buffers(func, settings: Optional[Settings] = None):
    """``func`` with the chosen allocations annotated (the same object when none is)."""
    body, _ = _scan(func, "", settings, mark=True)
    if body.same_as(func.body):
        return func
    return func.with_body(body)


def stack_buffers_pass(settings: Optional[Settings] = None):
    """The TIR pass (on lowered, flattened functions; run it before ``LowerTVMBuiltin``)."""
    import tvm

    @tvm.tirx.transform.prim_func_pass(opt_level=0, name="nnef.StackBuffers")
    def _pass(func, _mod, _ctx):
        return mark_stack_buffers(func, settings or current_settings())

    return _pass


def module_allocations(mod, settings: Optional[Settings] = None) -> list:
    """:func:`allocations` of every PrimFunc of a lowered IRModule."""
    from tvm import tirx
    out = []
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            out.extend(allocations(func, gv.name_hint, settings))
    return out


# ---------------------------------------------------------------- the pipeline

def _pipeline_factory():
    import tvm
    from tvm.s_tir.pipeline import default_s_tir_pipeline
    base, finalize_host, finalize_device = default_s_tir_pipeline()
    settings = current_settings()

    @tvm.transform.module_pass(opt_level=0, name="nnef.CpuStackBuffersPipeline")
    def _pipeline(mod, _ctx):
        mod = base(mod)
        return stack_buffers_pass(settings)(mod)

    return _pipeline, finalize_host, finalize_device


def register() -> str:
    """Register :data:`PIPELINE` with TVM (idempotent); returns its name."""
    from tvm.tirx.compilation_pipeline import register_tir_pipeline
    register_tir_pipeline(PIPELINE, _pipeline_factory)
    return PIPELINE


def tir_pipeline_for(tvm_target) -> str:
    """The ``tir_pipeline`` argument of ``relax.build`` for ``tvm_target``.

    CPU (``llvm``) targets get :data:`PIPELINE`, others TVM's ``"default"``.
    """
    if tvm_target.kind.name == "llvm":
        return register()
    return "default"
