"""Fallback CPU schedule for any fused PrimFunc the specialised rules do not claim.

Pooling, reductions (mean, softmax, norms), matmul/dense at batch 1, layout
changes and elementwise chains all get the same treatment: every root block
whose loops are bound one-to-one gets its outer spatial loops fused into one
parallel loop, and its innermost spatial loop vectorised when it divides into
whole SIMD vectors (for a reduction the reduction loops are moved outside that
vector loop, which keeps the result exact: each output element still sums in
the original order). Blocks it cannot analyse are left as they are, which is
always correct.
"""
from __future__ import annotations

from .cpu_common import (inline_elementwise, is_reduction, iter_kinds, parallel_worthwhile,
                         root_blocks, schedule_spatial_nest, static_extents, trivial_binding)


def _schedule_reduction(sch, block, lanes: int) -> bool:
    if not trivial_binding(sch, block):
        return False
    kinds = iter_kinds(sch, block)
    if "O" in kinds:
        return False
    nsp = kinds.count("S")
    if kinds[:nsp] != ["S"] * nsp:
        return False
    loops = sch.get_loops(block)
    exts = static_extents(sch, loops)
    if exts is None or nsp == 0:
        return False
    spatial, reds = list(loops[:nsp]), list(loops[nsp:])
    total = 1
    for e in exts[:nsp]:
        total *= e
    last = exts[nsp - 1]
    if lanes > 1 and last % lanes == 0 and last >= lanes:
        lo, vi = sch.split(spatial[-1], [None, lanes])
        sch.reorder(*spatial[:-1], lo, *reds, vi)
        sch.vectorize(vi)
        spatial = spatial[:-1] + [lo]
    work = total
    for e in exts[nsp:]:
        work *= e
    if spatial and parallel_worthwhile(work, total):
        par = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        sch.parallel(par)
    return True


def schedule_generic(sch, lanes: int, cores: int) -> bool:
    """Parallel + vectorised loop nests for every analysable root block."""
    keep = set()
    for blk in root_blocks(sch):
        if is_reduction(sch, blk):
            # padding feeding a reduction stays a separate (cheap) copy
            keep |= {sch.get(p).name_hint for p in sch.get_producers(blk)}
    inline_elementwise(sch, keep)
    changed = False
    for blk in root_blocks(sch):
        try:
            if is_reduction(sch, blk):
                changed |= _schedule_reduction(sch, blk, lanes)
            elif trivial_binding(sch, blk):
                schedule_spatial_nest(sch, blk, lanes)
                changed = True
        except Exception:   # one block it cannot handle: leave that block alone
            continue
    return changed
