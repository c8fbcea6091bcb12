"""Default (untuned) schedules: every fused PrimFunc gets a reasonable schedule.

TVM 0.27's CPU pipeline leaves every kernel as the plain loop nest that
legalization produced (``dlight`` has no CPU rule for convolution), which runs
convolutions at scalar, single-threaded speed. ``default_schedule_passes``
returns the passes the target's ``schedule_passes`` runs after FuseTIR (and
after a tuning database, whose functions are already marked scheduled and are
left alone):

* CPU (LLVM): :class:`CpuDefaultSchedule` tries, per PrimFunc, the rules of
  :data:`CPU_RULES` in order on a fresh schedule; the first that succeeds wins.
  A rule that does not recognise the function, or fails half-way, leaves it to
  the next one; a function no rule takes keeps its original (correct) body.
* GPU: dlight's rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback),
  which bind every kernel to threads.

The name of the rule that fired is stored as the function attribute
``nnef.schedule_rule`` (tests read it; handy when dumping the scheduled IR).

Tuning contract (used by :mod:`.tuning` / ``template_search``): the rules read
their tile and parallelism choices through :func:`.cpu_common.knob`;
:func:`knob_space` lists the valid settings of one kernel under the rule that
fires by default, and scheduling inside ``with knob_overrides(setting):``
gives that variant. Every rule step is a traced ``s_tir.Schedule`` primitive,
so ``sch.trace`` of a variant replays on the unscheduled PrimFunc.
"""
from __future__ import annotations

import logging

from . import (conv_channel_cpu, conv_spatial_cpu, dense_cpu, generic_cpu, pool_cpu,
               winograd_cpu)
from .cpu_common import num_cores, vector_lanes

log = logging.getLogger(__name__)

RULE_ATTR = "nnef.schedule_rule"

# (name, function(sch, lanes, cores) -> bool), most specific first
CPU_RULES = [
    # the Winograd kernel (schedules/winograd.py legalizes eligible 3x3 convs to it):
    # recognised by its block names, before any rule that would take its GEMM alone
    ("winograd", winograd_cpu.schedule_winograd),
    # a dense layer on <= 4 rows (batch-1 linear): a weight-streaming GEMV, before
    # the channel rule (which would take it as a 1-column convolution)
    ("dense_rows", dense_cpu.schedule_dense_rows),
    ("conv_channel_vector", conv_channel_cpu.schedule_channel_vector),
    ("conv_spatial_vector", conv_spatial_cpu.schedule_spatial_vector),
    ("pool_rows", pool_cpu.schedule_pool_rows),
    ("plane_sum", pool_cpu.schedule_plane_sum),
    ("generic_parallel", generic_cpu.schedule_generic),
]

GPU_KINDS = ("cuda", "rocm", "vulkan", "metal", "opencl", "webgpu")


def _tvm_target(target):
    """Accept an nnef_tvm Target, a tvm Target or a target dict."""
    import tvm
    if hasattr(target, "tvm") and callable(target.tvm):
        return target.tvm()
    if isinstance(target, tvm.target.Target):
        return target
    return tvm.target.Target(target)


def schedule_cpu_func(func, target, rules=None):
    """(scheduled PrimFunc, rule name) for one PrimFunc, or (func, None) if no rule fits."""
    from tvm import s_tir
    lanes = vector_lanes(target)
    cores = num_cores(target)
    for name, rule in (rules or CPU_RULES):
        sch = s_tir.Schedule(func)
        try:
            if rule(sch, lanes, cores):
                return sch.mod["main"], name
        except Exception as exc:  # a rule that misjudged the function: try the next
            log.debug("schedule rule %s failed: %s", name, exc)
    return func, None


# rule name -> function(sch, lanes, cores) -> list of knob settings (default first)
KNOB_SPACES = {
    "winograd": winograd_cpu.winograd_space,
    "dense_rows": dense_cpu.dense_rows_space,
    "conv_channel_vector": conv_channel_cpu.channel_vector_space,
    "conv_spatial_vector": conv_spatial_cpu.spatial_vector_space,
    "pool_rows": pool_cpu.pool_rows_space,
}

MAX_KNOB_SETTINGS = 24


def knob_space(func, target) -> list:
    """Valid knob settings for ``func`` under the rule that fires by default.

    At most :data:`MAX_KNOB_SETTINGS` dicts (knob name -> value), the rule's
    default first; ``[]`` when that rule has no knobs (or no rule fires).
    Every listed setting schedules to a correct kernel.
    """
    from tvm import s_tir
    t = _tvm_target(target)
    lanes = vector_lanes(t)
    cores = num_cores(t)
    _, name = schedule_cpu_func(func, t)
    space_fn = KNOB_SPACES.get(name)
    if space_fn is None:
        return []
    try:
        space = space_fn(s_tir.Schedule(func), lanes, cores)
    except Exception as exc:  # analysis failed: only the default is known to be valid
        log.debug("knob space of %s failed: %s", name, exc)
        return []
    return space[:MAX_KNOB_SETTINGS]


# knob values whose benefit is data locality between kernels: a kernel measured
# alone (tuning) cannot show it, so tuning keeps such a default's structure
LOCALITY_KNOBS = {"conv.channel_vector.split_k": 1}


def locality_bound(func, target) -> bool:
    """Whether ``func``'s default schedule was chosen for data locality in the model.

    Today: a 1x1 convolution split over input channels (``split_k``, see
    :func:`.conv_channel_cpu._split_k_pays`); standalone it is no faster
    than the unsplit kernel, in MobileNetV2 it is 1.8x faster. MetaSchedule's
    search (standalone measurements, its own schedules) leaves such kernels to
    the template search, whose settings all keep the split.
    """
    space = knob_space(func, target)
    if not space:
        return False
    return any(space[0].get(k, off) != off for k, off in LOCALITY_KNOBS.items())


def _is_scheduled(func) -> bool:
    attrs = func.attrs
    return attrs is not None and "tirx.is_scheduled" in attrs and bool(attrs["tirx.is_scheduled"])


def cpu_default_schedule(rules=None):
    """The module pass scheduling every not-yet-scheduled PrimFunc for an LLVM target."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="NNEFCpuDefaultSchedule")
    def apply(mod, _ctx):
        target = tvm.target.Target.current(allow_none=True)
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc) or _is_scheduled(func):
                continue
            tgt = func.attrs.get("target") if func.attrs is not None else None
            tgt = tgt or target or tvm.target.Target({"kind": "llvm"})
            new, name = schedule_cpu_func(func, tgt, rules)
            if name is not None:
                updates[gv] = new.with_attr("tirx.is_scheduled", True).with_attr(RULE_ATTR, name)
        for gv, func in updates.items():
            mod[gv] = func
        return mod
    return apply


def gpu_default_schedule():
    """dlight's GPU rules: every kernel gets thread bindings."""
    from tvm.s_tir import dlight as dl
    return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                   dl.gpu.GeneralReduction(), dl.gpu.Fallback())


def default_schedule_passes(target) -> list:
    """The passes that give every kernel of ``target`` a default schedule."""
    t = _tvm_target(target)
    kind = t.kind.name
    if kind == "llvm":
        return [cpu_default_schedule()]
    if kind in GPU_KINDS:
        return [gpu_default_schedule()]
    return []
