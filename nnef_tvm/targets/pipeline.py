"""The Relax pipeline, split into named phases so each can be dumped and reported.

It runs the same passes as ``relax.get_default_pipeline(target)`` (library
dispatch, legalization, FuseOps + FuseTIR, lowering, finalization), with three
hooks in between:

* BYOC partitions of the target (``FuseOpsByPattern`` + ``RunCodegen``) run first;
* on CPU targets exp / sigmoid / tanh / erf / softmax legalize to polynomial
  forms LLVM vectorises (see :mod:`nnef_tvm.schedules.vector_math`), and
  float32 3x3 stride-1 convolutions to Winograd's F(4x4, 3x3) or F(2x2, 3x3) (see
  :mod:`nnef_tvm.schedules.winograd`; ``build_phases(..., winograd=False)``
  keeps the direct kernels);
* tuned schedules from a MetaSchedule database are applied right after FuseTIR;
* the target's ``schedule_passes`` (dlight for GPUs) schedule what is left;
* weights are packed once (see :mod:`nnef_tvm.schedules.prepack`): right after
  FuseTIR each kernel's weight parameters are marked ``layout_free_buffers``
  (so tuning workloads, extracted from the ``fuse_tir`` phase, carry the mark
  too and MetaSchedule's RewriteLayout packs them), and the ``prepack`` phase
  after scheduling splits the schedules' weight-packing copies into their own
  kernels and folds them into constants at compile time.

Splitting FuseOps from FuseTIR is deliberate: between the two, each fused group
is still a Relax function whose bindings carry the frontend's variable names,
which is what the fusion report reads (see :mod:`.fusion_report`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Phase:
    name: str
    passes: list


def build_phases(target, *, database=None, winograd: bool = True,
                 expand_depthwise: bool = True) -> list[Phase]:
    """Phases for ``target`` (a :class:`~nnef_tvm.targets.base.Target`).

    ``winograd``: on CPU targets, eligible float32 3x3 stride-1 convolutions
    legalize to the Winograd kernel (:mod:`nnef_tvm.schedules.winograd`).
    """
    from tvm.relax import transform as T

    t = target.tvm()
    phases = []
    if target.partitions:
        byoc = []
        for part in target.partitions:
            byoc.append(T.FuseOpsByPattern(part.patterns(), bind_constants=False,
                                           annotate_codegen=True))
        byoc.append(T.RunCodegen())
        phases.append(Phase("partition", byoc))
    backend = _backend_pipeline(t)
    dispatch = backend.library_dispatch_passes(t)
    custom = None
    fused_blocks = []
    if t.kind.name == "llvm":
        from ..schedules.vector_math import legalize_map
        custom = legalize_map()
        if winograd:
            from ..schedules import winograd as wino
            custom.update(wino.legalize_map())
        if expand_depthwise:
            from ..schedules.cpu_common import vector_lanes
            from ..schedules.expand_depthwise import fuse_expand_depthwise
            fused_blocks = [T.FoldConstant(), fuse_expand_depthwise(vector_lanes(t))]
    phases.append(Phase("legalize", fused_blocks + dispatch + [
                                                T.LegalizeOps(customize_legalize_map=custom),
                                                T.AnnotateTIROpPattern(), T.FoldConstant()]))
    phases.append(Phase("fuse", [T.FuseOps()]))
    from ..schedules.prepack import attach_layout_free_buffers, prepack_passes
    fuse_tir = [T.FuseTIR()]
    if t.kind.name == "llvm":
        fuse_tir.append(attach_layout_free_buffers())
    phases.append(Phase("fuse_tir", fuse_tir))
    sched = []
    if database is not None:
        sched.append(_apply_database(database))
    sched.extend(target.schedule_passes())
    phases.append(Phase("schedule", sched))
    phases.append(Phase("prepack", prepack_passes() if t.kind.name == "llvm" else []))
    lower = backend.dataflow_lower_passes(t) + backend.finalize_passes(t)
    phases.append(Phase("lower", lower))
    return phases


def _backend_pipeline(t):
    """TVM's per-backend pass lists (the module behind get_default_pipeline)."""
    import importlib
    kind = t.kind.name
    name = {"llvm": "cpu_generic", "cuda": "cuda", "rocm": "rocm"}.get(kind, "gpu_generic")
    return importlib.import_module(f"tvm.relax.backend.{name}.pipeline")


def _apply_database(database):
    """A pass applying ``database`` (a MetaSchedule Database) to the fused PrimFuncs."""
    import tvm
    from tvm.relax import transform as T

    @tvm.transform.module_pass(opt_level=0, name="NNEFApplyTuningDatabase")
    def apply(mod, _ctx):
        with database:
            mod = T.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        # a replayed trace keeps the rules' weight-prefetch annotation but not the
        # prefetch statements themselves (not a schedule primitive): put them back
        from ..schedules.conv_channel_cpu import materialize_prefetch
        updates = {}
        for gv, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc):
                new = materialize_prefetch(func)
                if not new.same_as(func):
                    updates[gv] = new
        for gv, func in updates.items():
            mod[gv] = func
        return mod
    return apply


def build_executable(lowered, target):
    """``relax.build`` of a module that went through :func:`build_phases` (their last
    phase lowered it): code generation with the target's TIR pipeline, which on CPU
    targets keeps small accumulators on the stack (:mod:`.stack_buffers`)."""
    from tvm import relax
    from .stack_buffers import tir_pipeline_for
    t = target.tvm()
    return relax.build(lowered, t, relax_pipeline=None, tir_pipeline=tir_pipeline_for(t))


def run_phases(mod, target, phases: list[Phase], *, opt_level: int = 3,
               on_phase: Optional[Callable[[str, object], None]] = None):
    """Run ``phases`` on ``mod`` under ``target``; ``on_phase(name, mod)`` after each."""
    import tvm
    t = target.tvm()
    with t, tvm.transform.PassContext(opt_level=opt_level):
        for phase in phases:
            if phase.passes:
                mod = tvm.transform.Sequential(phase.passes, name=phase.name)(mod)
            if on_phase is not None:
                on_phase(phase.name, mod)
    return mod
