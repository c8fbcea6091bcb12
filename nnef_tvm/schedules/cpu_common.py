"""Shared analysis for the hand-written CPU schedules (see :mod:`.default`).

The rules recognise a fused PrimFunc by the *structure* of its blocks, not by
its name: which blocks reduce, which buffers each one reads and which block
iterators appear in which buffer index. Everything here is read-only analysis
plus the few schedule moves every rule needs (inlining elementwise chains,
parallelising and vectorising a plain loop nest).
"""
from __future__ import annotations

from typing import Optional


# Below this many loop iterations (elements x reduction steps) a kernel runs on
# one thread: waking the thread pool costs microseconds, more than the work.
PARALLEL_MIN_WORK = 1 << 16


def parallel_worthwhile(work: int, tasks: int) -> bool:
    """Whether a kernel of ``work`` loop iterations in ``tasks`` parallel chunks should
    launch TVM's thread pool (the parallel-policy of the generic and pooling rules).

    Knob ``parallel.min_work`` (default :data:`PARALLEL_MIN_WORK`) is the least work.
    A launch to TVM's spinning workers costs 1.3-1.8 us (nnef_tvm/threads.py), so
    work alone would argue for a lower bar; what decides small kernels in a model
    is whether their split matches their producer's. Global means at 2 threads,
    in the model (per-call medians, same-process A/B, bar lowered to 16384):
    MobileNetV2 1280 x 7 x 7 28 -> 17 us parallel (its producer splits by
    channel halves too), ResNet-18 512 x 7 x 7 14 -> 24 us (worse), EfficientNet
    means mixed; so the bar stays.
    """
    return tasks > 1 and work >= int(knob("parallel.min_work", PARALLEL_MIN_WORK))


def vector_lanes(target, dtype_bits: int = 32) -> int:
    """SIMD lanes of ``dtype_bits`` elements for an LLVM target.

    Read from the features LLVM enables for the target's mcpu/mattr (the x86
    target switches off what the host hides): AVX-512 -> 512-bit, AVX/AVX2 ->
    256-bit, SSE / NEON / anything else -> 128-bit.
    """
    bits = 128
    try:
        from tvm.target import codegen
        feats = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    except Exception:  # pragma: no cover - a target LLVM cannot describe
        feats = set()
    if "avx512f" in feats:
        bits = 512
    elif "avx2" in feats or "avx" in feats:
        bits = 256
    return max(1, bits // dtype_bits)


def num_cores(target) -> int:
    """``num-cores`` of the target, 1 when absent (only used to size parallel loops)."""
    try:
        n = target.attrs.get("num-cores")
        return int(n) if n else 1
    except Exception:  # pragma: no cover
        return 1


def root_blocks(sch):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def is_reduction(sch, block) -> bool:
    return any(int(iv.iter_type) == 2 for iv in sch.get(block).iter_vars)


def iter_kinds(sch, block) -> list[str]:
    """'S' / 'R' / other per block iterator."""
    out = []
    for iv in sch.get(block).iter_vars:
        t = int(iv.iter_type)
        out.append("S" if t == 0 else "R" if t == 2 else "O")
    return out


def trivial_binding(sch, block) -> bool:
    """Each block iterator is bound to exactly its own loop, in loop order."""
    from tvm_ffi import get_global_func
    realize = get_global_func("s_tir.schedule.GetSBlockRealize")(sch, block)
    loops = sch.get_loops(block)
    values = list(realize.iter_values)
    if len(loops) != len(values):
        return False
    for loop, value in zip(loops, values):
        if not value.same_as(sch.get(loop).loop_var):
            return False
    return True


def single_accumulation(sch):
    """``(block, spatial iterator count)`` of the function's only reduction, or None.

    The rules schedule one plain accumulation per kernel (``acc[s] = f(acc[s],
    ..)`` with an init): one written buffer, each iterator bound to its own
    loop, and every spatial iterator before the reduction iterators. What the
    accumulation computes (multiply-add, max, sum) is the caller's check.
    """
    reds = [b for b in root_blocks(sch) if is_reduction(sch, b)]
    if len(reds) != 1:
        return None
    blk = reds[0]
    stmt = sch.get(blk)
    if len(stmt.writes) != 1 or stmt.init is None or not trivial_binding(sch, blk):
        return None
    kinds = iter_kinds(sch, blk)
    nsp = kinds.count("S")
    if "O" in kinds or kinds[:nsp] != ["S"] * nsp or nsp == len(kinds):
        return None
    return blk, nsp


def static_extents(sch, loops) -> Optional[list[int]]:
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        if not hasattr(ext, "value"):
            return None
        out.append(int(ext.value))
    return out


def vars_in(expr) -> set:
    """The Vars an index expression uses."""
    from tvm.tirx.analysis import undefined_vars
    return set(undefined_vars(expr))


# Largest printed expression (characters) an inlining may produce when the
# inlined value is loaded more than once per element (see _cheap_to_inline).
INLINE_MAX_EXPR = 2000


def _cheap_to_inline(sch, blk) -> bool:
    """True when inlining ``blk`` into its consumers keeps their expressions small.

    Inlining a value copies its whole expression into each load. A value
    loaded once per element, by all consumers together, always qualifies. One
    loaded several times (a
    clamp ``where(x < hi, x, hi)`` reads ``x`` twice; LLVM merges the repeated
    loads) qualifies while the consumer's expression stays under
    :data:`INLINE_MAX_EXPR` characters: along a chain of such values (a
    fake-quantizer ``where(x < lo, lo, where(x > hi, hi, x))`` reads ``x`` from
    three places) the inlined expression grows exponentially with the chain
    length, and LLVM code generation never finishes; those stay materialised.
    """
    import re

    names = [r.source.name for r in sch.get(blk).writes]
    # TVM 0.27 exposes no TIR visitor to Python; the printed body is exact enough
    # to count loads (buffer declarations print as `name = T.Buffer(...)`).
    size = len(str(sch.get(blk).body))
    total = 0
    for consumer in sch.get_consumers(blk):
        body = str(sch.get(consumer).body)
        loads = sum(len(re.findall(rf"\b{re.escape(n)}\[", body)) for n in names)
        total += loads
        if total > 1 and (len(body) + loads * size > INLINE_MAX_EXPR
                          or total * size > INLINE_MAX_EXPR):
            return False
    return True


def loop_count(sch, blk) -> Optional[int]:
    """How many times ``blk`` runs (product of its static loop extents), None if dynamic."""
    exts = static_extents(sch, sch.get_loops(blk))
    if exts is None:
        return None
    n = 1
    for e in exts:
        n *= e
    return n


def inline_elementwise(sch, keep) -> None:
    """Inline every non-output spatial block except those in ``keep`` (names).

    Chains like ``add -> add -> relu`` after a reduction collapse into the last
    block, so that a rule sees one epilogue. Blocks that cannot be inlined
    (a padding stage feeding a reduction is kept on purpose by the caller)
    simply stay. A value is never inlined into a consumer that runs more often
    than it does (a *broadcasting* consumer): a squeeze-excitation block's
    ``sigmoid(conv + bias)`` on ``[1, C, 1, 1]`` feeding a multiply over
    ``[1, C, H, W]`` would be evaluated H * W times per channel (0.28 ms for a
    32-channel 112 x 112 map); it stays materialised, once per channel.
    """
    changed = True
    while changed:
        changed = False
        for blk in root_blocks(sch):
            name = sch.get(blk).name_hint
            if name in keep or is_reduction(sch, blk) or not _cheap_to_inline(sch, blk):
                continue
            size = loop_count(sch, blk)
            if size is None or any((loop_count(sch, c) or 0) > size
                                   for c in sch.get_consumers(blk)):
                continue
            try:
                sch.compute_inline(blk)
                changed = True
                break
            except Exception:
                continue


def schedule_spatial_nest(sch, block, lanes: int) -> None:
    """Parallel outer loops + vectorised innermost loop for an injective block.

    The innermost loop stays its own loop (fusing it would put integer
    divisions into every element's index); it is split by the SIMD width when
    that divides evenly (no tail predicate). The loops above it are fused into
    one parallel loop when there is enough work to share between threads.
    """
    loops = sch.get_loops(block)
    exts = static_extents(sch, loops)
    if not loops or exts is None:
        return
    total = 1
    for e in exts:
        total *= e
    outer = list(loops[:-1])
    tasks = total // exts[-1]
    if lanes > 1 and exts[-1] % lanes == 0 and exts[-1] >= lanes:
        lo, vin = sch.split(loops[-1], [None, lanes])
        sch.vectorize(vin)
        if not outer:
            outer, tasks = [lo], exts[-1] // lanes
    elif not outer:
        outer, tasks = [loops[-1]], exts[-1]
    if parallel_worthwhile(total, tasks):
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)


# ----------------------------------------------------------------- tunable knobs
# The rules read every tile / parallelism choice through ``knob(name, default)``.
# A tuner (schedules/tuning.py, template_search.py) lists the valid settings of
# one kernel with ``default.knob_space`` and schedules it once per setting inside
# ``with knob_overrides(setting):``; the resulting trace is an ordinary
# MetaSchedule record. Names are "conv.<rule>.<name>" (see conv_channel_cpu, conv_spatial_cpu).
import contextlib as _contextlib
import contextvars as _contextvars

KNOBS: "_contextvars.ContextVar[dict]" = _contextvars.ContextVar("nnef_tvm_schedule_knobs",
                                                                 default={})


def knob(name: str, default):
    """The value of knob ``name`` in the current :func:`knob_overrides` scope, else ``default``."""
    return KNOBS.get().get(name, default)


@_contextlib.contextmanager
def knob_overrides(values: dict):
    """Schedule with ``values`` (knob name -> value) overriding the rules' defaults.

    Nested scopes merge, the inner one winning; the previous setting comes back
    on exit (also on an exception).
    """
    merged = dict(KNOBS.get())
    merged.update(values or {})
    token = KNOBS.set(merged)
    try:
        yield merged
    finally:
        KNOBS.reset(token)
