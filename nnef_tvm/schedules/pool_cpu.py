"""CPU rule ``pool_rows``: window pooling (max / sum / average) one output row at a time.

A pooling window ``out[.., y, x] = reduce_{i, j} in[.., y*s + i - p, x*s + j - p]``
(NNEF ``max_pool``, ``avg_pool``, ``box``/``sum_pool``; TVM's legalization
pads the input into its own buffer first, filling the border with the
reduction's identity -- ``-inf`` for max, 0 for sums -- and divides averages
in an epilogue block). Untuned, that is a full padded copy of the input
(ResNet-18's stem max-pool: 3.3 MB) followed by scalar window loops; the output
width (56) is no multiple of the vector width, so the generic rule vectorised
nothing.

This rule works per output row (``n, c, y`` fused into one parallel loop):

* the padded rows the output row reads (``k`` rows of the padded width) are
  produced right there, into a small buffer that stays in L1 -- the big padded
  copy disappears;
* the window loops ``i, j`` run *outside* the loop over the output row ``x``,
  so the innermost loop is ``out[x] = max(out[x], row[x*s + j])``: plain
  loads and stores with no loop-carried dependency, which LLVM's loop
  vectoriser turns into full vectors with a masked / scalar tail for any width
  and, for strides 2 and 3, into wide loads plus permutes (interleaved
  access). (A TVM-vectorised strided load is scalarised lane by lane.);
* the epilogue (the average's division, an activation) runs on the finished
  row while it is still in L1.

Each output element still reduces its window cells in the original order, so
results are bit-identical to the unscheduled kernel (max is exact anyway).
"""
from __future__ import annotations

from .cpu_common import (PARALLEL_MIN_WORK, inline_elementwise, is_reduction, iter_kinds,
                         root_blocks, static_extents, trivial_binding, vars_in)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _window_read(sch, blk):
    stmt = sch.get(blk)
    out = stmt.writes[0].source
    return next(r for r in stmt.reads if not r.source.same_as(out))


def _window_block(sch):
    """The single window-reduction block (``acc = max/add(acc, in[..])``), or None."""
    from tvm import tirx
    reds = [b for b in root_blocks(sch) if is_reduction(sch, b)]
    if len(reds) != 1:
        return None
    blk = reds[0]
    stmt = sch.get(blk)
    if len(stmt.writes) != 1 or stmt.init is None or not trivial_binding(sch, blk):
        return None
    kinds = iter_kinds(sch, blk)
    nsp = kinds.count("S")
    if "O" in kinds or kinds[:nsp] != ["S"] * nsp or nsp < 2 or nsp == len(kinds):
        return None
    body = stmt.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, (tirx.Max, tirx.Add)):
        return None
    out = stmt.writes[0].source
    inputs = [r for r in stmt.reads if not r.source.same_as(out)]
    if len(inputs) != 1:
        return None
    ivars = [iv.var for iv in stmt.iter_vars]
    region = inputs[0].region
    # a sliding window along the innermost output axis: the input's last index
    # uses the last output iterator and a window (reduction) iterator
    last = vars_in(region[-1].min)
    if ivars[nsp - 1] not in last or not any(v in last for v in ivars[nsp:]):
        return None
    return blk


def _split_border(sch, pad, row) -> None:
    """Padding stage -> a fill of the border value + a plain copy of the in-bound cells.

    The copy then has no per-element bounds test and vectorises; a stage that
    is not a padding pattern (or cannot be split) stays as it is.
    """
    loops = sch.get_loops(pad)
    row_sref = sch.get_sref(row)
    at = [i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(row_sref)]
    below = loops[at[0] + 1:] if at else []
    if not below:
        return
    try:
        if sch.can_decompose_padding(pad, below[0]):
            sch.decompose_padding(pad, below[0])
    except Exception:
        pass


def schedule_pool_rows(sch, lanes: int, cores: int) -> bool:
    """Pooling windows computed one output row at a time (see module docstring)."""
    blk = _window_block(sch)
    if blk is None:
        return False
    producers = list(sch.get_producers(blk))
    if len(producers) > 1:
        return False
    keep = {sch.get(p).name_hint for p in producers}
    inline_elementwise(sch, keep)
    blk = _window_block(sch)
    if blk is None:
        return False
    loops = sch.get_loops(blk)
    exts = static_extents(sch, loops)
    if exts is None:
        return False
    nsp = iter_kinds(sch, blk).count("S")
    spatial, reds = list(loops[:nsp]), list(loops[nsp:])
    sch.reorder(*spatial[:-1], *reds, spatial[-1])
    row = sch.fuse(*spatial[:-1]) if nsp > 2 else spatial[0]
    work = 1
    for e in exts:
        work *= e
    rows = work // (exts[nsp - 1] * _product(exts[nsp:]))
    if work >= PARALLEL_MIN_WORK and rows > 1:
        sch.parallel(row)
    sch.decompose_reduction(blk, reds[0])
    for c in list(sch.get_consumers(blk)):
        sch.reverse_compute_at(c, row)
    # the padded input is produced one window row at a time (under the last window
    # loop that does not move along the width): a few hundred bytes on the stack
    # (a whole k-row band needs a heap workspace per row task: 3 x 113 floats
    # exceed TVM's 1 KiB stack-allocation limit, and allocating it 3584 times
    # cost more than the pooling)
    stmt = sch.get(blk)
    ivars = [iv.var for iv in stmt.iter_vars]
    width_vars = vars_in(_window_read(sch, blk).region[-1].min)
    at = row
    for lp, var in zip(reds, ivars[nsp:]):
        if var in width_vars:
            break
        at = lp
    for p in producers:
        sch.compute_at(p, at)
        _split_border(sch, p, at)
    return True
