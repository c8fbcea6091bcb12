"""Shared analysis for the CPU convolution rules (:mod:`.conv_channel_cpu`, :mod:`.conv_spatial_cpu`).

TVM's legalized ``conv2d`` is a plain 7-deep loop nest that LLVM cannot
vectorise well, so an untuned build runs it at scalar speed. Two direct
convolution micro-kernels cover the convolutions NNEF models contain:

* :mod:`.conv_channel_cpu` -- every output channel reads the same input
  pixels (ordinary and 1x1 convolutions, matmul / linear): a register tile of
  output channels x output columns fed by broadcast input scalars.
* :mod:`.conv_spatial_cpu` -- the output channel indexes the data too
  (depthwise, grouped): vectors along the output width.

This module holds what both need: recognising the single multiply-accumulate
block (``C[s] += A[..] * B[..]``) of a fused PrimFunc, preparing it (padding
kept as its own copy -- inlining it would put a bounds test in the inner loop
-- and the elementwise epilogue inlined into one chain), and finishing a
schedule by fusing that epilogue into the accumulator's write-back, so the
convolution result never makes a round trip through memory.
"""
from __future__ import annotations

from .cpu_common import (inline_elementwise, is_reduction, iter_kinds, root_blocks,
                         schedule_spatial_nest, single_accumulation, static_extents, vars_in)


def _divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, cap), 0, -1):
        if n % d == 0:
            return d
    return 1


def _divisor_at_least(n: int, low: int) -> int:
    for d in range(max(1, low), n + 1):
        if n % d == 0:
            return d
    return n


class MacBlock:
    """A reduction block ``C[s] += A[..] * B[..]`` with its operands' index variables."""

    def __init__(self, sch, block):
        self.block = block
        stmt = sch.get(block)
        self.ivars = [iv.var for iv in stmt.iter_vars]
        self.kinds = iter_kinds(sch, block)
        out = stmt.writes[0].source
        pos = [i for i, r in enumerate(stmt.reads) if not r.source.same_as(out)]
        self.reads = [stmt.reads[i] for i in pos]
        self.read_pos = pos          # index of each operand in the block's reads
        self.dim_vars = [[vars_in(rg.min) for rg in r.region] for r in self.reads]

    def used(self, k: int) -> set:
        out = set()
        for s in self.dim_vars[k]:
            out |= s
        return out


def _mac_block(sch):
    """The single multiply-accumulate reduction block of a function, or None."""
    found = single_accumulation(sch)
    if found is None:
        return None
    blk = found[0]
    from tvm import tirx
    body = sch.get(blk).body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return None
    if not isinstance(body.value.b, tirx.Mul):
        return None
    mac = MacBlock(sch, blk)
    if len(mac.reads) != 2:
        return None
    return mac


def _plain_copy(sch, block) -> bool:
    """A block that only copies one element (a zero-width "padding" stage)."""
    stmt = sch.get(block)
    value = getattr(stmt.body, "value", None)
    # (TVM 0.27 names the load node TensorLoad; tirx.BufferLoad is a constructor)
    return type(stmt.body).__name__ == "BufferStore" and \
        type(value).__name__ in ("BufferLoad", "TensorLoad")


def _prepare(sch):
    """Inline the epilogue chain; keep producers of the reduction (padding) apart.

    A producer that pads nothing (legalization emits a pure copy for padding 0)
    is inlined instead: the convolution then reads its input directly.
    """
    mac = _mac_block(sch)
    if mac is None:
        return None
    keep = set()
    for b in sch.get_producers(mac.block):
        if _plain_copy(sch, b) and not sch.get(b).init:
            try:
                sch.compute_inline(b)
                continue
            except Exception:
                pass
        keep.add(sch.get(b).name_hint)
    inline_elementwise(sch, keep)
    return _mac_block(sch)


def _static_mac_nest(sch, prepare=None):
    """``(mac, loops, extents, spatial loop count)`` of the prepared convolution, or None.

    ``prepare(sch) -> MacBlock or None`` readies the kernel (default
    :func:`_prepare`: padding kept, epilogue inlined). None when there is no
    multiply-accumulate block or a loop extent is not static.
    """
    mac = (prepare or _prepare)(sch)
    if mac is None:
        return None
    loops = sch.get_loops(mac.block)
    exts = static_extents(sch, loops)
    if exts is None:
        return None
    return mac, loops, exts, mac.kinds.count("S")


def _finish(sch, mac_block, wb, lanes, vector_wb=True):
    """Fuse the single elementwise consumer into the write-back; schedule the rest."""
    consumers = list(sch.get_consumers(wb))
    if len(consumers) == 1:
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:
            pass
    wb_loops = sch.get_loops(wb)
    if vector_wb:
        try:
            sch.vectorize(wb_loops[-1])
        except Exception:
            pass
    for b in root_blocks(sch):
        if b.same_as(mac_block) or is_reduction(sch, b):
            continue
        name = sch.get(b).name_hint
        if name == sch.get(wb).name_hint:
            continue
        try:
            if len(sch.get_loops(b)) and not sch.get(sch.get_loops(b)[0]).kind:
                schedule_spatial_nest(sch, b, lanes)
        except Exception:
            pass
    return wb_loops


def _row_split(count: int, row_ext, tasks: int, cores: int = 1, rows_first: bool = False) -> int:
    """Into how many chunks the row loop is cut for the parallel loop (1: not cut).

    ``count`` outer work items (batch x channel tiles) are shared out as they
    are when there are at least ``tasks`` of them, else each also takes a
    chunk of rows: the fewest chunks (a divisor of ``row_ext``) reaching
    ``tasks``. Either way the total is kept a multiple of ``cores`` when a
    row divisor allows it, so every thread gets the same number of equal
    tasks (TVM's pool hands each thread one contiguous range): 3 channel tiles
    x 7 row chunks = 21 tasks leave one thread a task more than the other for
    the whole kernel; 3 x 14 do not. ``rows_first``: the rows are cut into at
    least ``cores`` chunks even when the outer items suffice (see
    :func:`_split_parallel`).
    """
    if not row_ext or row_ext <= 1:
        return 1
    if rows_first:
        base = _row_split(count, row_ext, tasks, cores)
        if base >= cores:
            return base
        cands = [d for d in range(max(2, cores), row_ext + 1) if row_ext % d == 0]
        return next((d for d in cands if (count * d) % cores == 0), cands[0] if cands else base)
    if count >= tasks:
        if count % cores == 0 or count >= 8 * cores:
            return 1
        need = 2
    else:
        need = -(-tasks // count)
    cands = [d for d in range(max(1, need), row_ext + 1) if row_ext % d == 0] or [row_ext]
    for d in cands:
        if (count * d) % cores == 0:
            return d
    return 1 if count >= tasks else cands[0]


def _split_parallel(sch, outer_loops, outer_exts, inner_loop, inner_ext, tasks, cores=1,
                    rows_first=False):
    """Fuse ``outer_loops`` (+ a chunk of ``inner_loop``, see :func:`_row_split`) into one parallel loop.

    ``rows_first``: the row chunk is the outermost part of the task index, so
    TVM's pool (one contiguous task range per thread) gives each thread a band
    of rows for every channel tile: it then reads the input rows that it wrote
    itself in a preceding parallel copy split the same way (the column-phase
    padding), instead of lines sitting dirty in the other core's cache
    (MobileNetV2 stem at 2 threads: 0.30 -> 0.16 ms, best of 400 calls).
    """
    count = 1
    for e in outer_exts:
        count *= e
    split = _row_split(count, inner_ext if inner_loop is not None else None, tasks, cores,
                       rows_first)
    if split <= 1:
        par = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
        sch.parallel(par)
        return par, inner_loop
    yo, yi = sch.split(inner_loop, [split, None])
    if rows_first:
        sch.reorder(yo, *outer_loops)
        par = sch.fuse(yo, *outer_loops)
    else:
        par = sch.fuse(*outer_loops, yo)
    sch.parallel(par)
    return par, yi


def _out_dim_of(sch, block, var):
    """Which dimension of the block's output is indexed by exactly ``var``."""
    region = sch.get(block).writes[0].region
    for i, rg in enumerate(region):
        if rg.min.same_as(var):
            return i
    return None
