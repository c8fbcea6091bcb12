"""CPU rule ``dense_rows``: a dense layer on a few rows (batch-1 linear / matmul = a GEMV).

``y[r, n] = sum_k x[r, k] * w[k, n]`` (+ epilogue) with only a handful of
rows ``r`` does two multiply-adds per weight element it loads, so it is bound
by how fast the weight streams through the core, not by arithmetic: the
weight (1280 x 1000 floats = 5 MB for MobileNetV2's classifier) must be read
exactly once per call, contiguously, by all threads together.

The schedule (the structure MetaSchedule's evolutionary search found for
ResNet-18's classifier, 421 -> 63 us, made deterministic):

* the output columns ``n`` are cut into tiles of ``nt`` (a multiple of 8 that
  divides ``N``; 40 for N = 1000), and the tiles are shared out between
  threads -- every thread streams its own slice of the weight;
* the weight is packed once at compile time (see :mod:`.prepack`) as
  ``[N / nt, K, nt]``: each tile's ``K x nt`` block is one contiguous stream;
* per tile, an accumulator of ``rows x nt`` lives in vector registers (one
  register per 16, 8 or 4 columns: a 40-lane TIR vector would be split by
  LLVM into single lanes that spill every step); the
  reduction loop is unrolled by ``ku`` and each step adds ``x[r, k]``
  (broadcast) times one ``nt``-wide weight vector -- the weight vector is
  loaded once and reused for every row;
* the epilogue (bias, activation) is applied in the accumulator's write-back.

The same rule takes a 1x1 convolution on a 1x1 map (the squeeze-excitation
blocks of EfficientNet: ``[1, C, 1, 1]`` x ``[F, C, 1, 1]``), which is the
same GEMV; its epilogue ``sigmoid(conv + bias)`` is kept on the ``[1, F, 1, 1]``
result and only the broadcasting multiply with the feature map runs per
element (see :func:`.cpu_common.inline_elementwise`). Gate mode (knob
``dense.rows.gate``, :func:`_finish_gate`): when that multiply follows, each
column tile (a vector or half one of channels, in a count the threads share
evenly) computes its gates and at once scales its channels' planes, in one
parallel loop. EfficientNet-B0, paired whole model vs the separate serial
GEMV + parallel product: 0.947 / 0.960 at 2 threads, 0.967 / 0.970 at 1
(mid-size gate kernels 0.28-0.45x in the model: the product ran per image row
with LLVM's vectoriser on 28- or 14-float rows). The squeeze side (1152 -> 48,
one 48-wide tile) is cut into tiles the threads share once it has
:data:`DENSE_PARALLEL_MIN_WORK` multiply-adds (0.80x in the model).

Each output element still sums over ``k`` in order, so results match the
unscheduled kernel to the last bit of float rounding order.

Knobs (``dense.rows.{nt,ku,gate}``); :func:`dense_rows_space` lists the valid
settings of one kernel, the default first.
"""
from __future__ import annotations

from .conv_cpu import _divisor_at_most, _finish, _mac_block, _plain_copy, _static_mac_nest
from typing import Optional

from .cpu_common import (PARALLEL_MIN_WORK, inline_elementwise, is_reduction, knob, loop_count,
                         parallel_worthwhile, root_blocks, static_extents)
from .prepack import pack_weight_once, weight_is_layout_free

# Most rows (product of the data-only output dims) the rule takes: each row
# needs nt / lanes accumulator registers; beyond this a matmul has enough
# reuse of each weight vector for the channel-vector (GEMM) rule.
MAX_ROWS = 4

# Least multiply-adds for a GEMV's column tiles to be shared between threads. Each
# weight element is used once, so the work is a weight stream (4 bytes per MAC):
# EfficientNet-B0's 1152 -> 48 squeeze (55296 MACs, 221 KB) is worth splitting.
DENSE_PARALLEL_MIN_WORK = 1 << 15

# Preferred column tile widths (in vectors of the target); the first that
# divides N wins.
TILE_VECTORS = (4, 5, 2.5, 3, 2, 6, 8, 1.5, 1)


class DensePlan:
    """The loops of a few-row dense kernel.

    ``f``: the output-column iterator (only the weight uses it), ``rows``:
    iterators only the data uses, ``reds``: the reduction iterators (the
    weight and the data both use each), ``b``: which operand is the weight,
    ``fdim``: the weight dimension ``f`` indexes.
    """

    def __init__(self, mac, loops, exts, nsp, b, f, rows, fdim):
        self.mac, self.loops, self.exts, self.nsp = mac, loops, exts, nsp
        self.b, self.f, self.rows, self.fdim = b, f, rows, fdim

    @property
    def nrows(self) -> int:
        n = 1
        for i in self.rows:
            n *= self.exts[i]
        return n


def _prepare_dense(sch):
    """The multiply-accumulate block with its operands read directly, epilogue chained."""
    mac = _mac_block(sch)
    if mac is None:
        return None
    for p in sch.get_producers(mac.block):
        if not _plain_copy(sch, p) or sch.get(p).init:
            return None          # a real padding stage: a convolution window
        try:
            sch.compute_inline(p)
        except Exception:
            return None
    inline_elementwise(sch, set())
    return _mac_block(sch)


def _dense_plan(sch):
    nest = _static_mac_nest(sch, _prepare_dense)
    if nest is None:
        return None
    mac, loops, exts, nsp = nest
    unit = {mac.ivars[i] for i, e in enumerate(exts) if e == 1}
    reds = [i for i in range(nsp, len(exts)) if exts[i] > 1]
    if len(reds) != 1:
        return None
    k = reds[0]
    for b in (1, 0):
        a = 1 - b
        a_vars, b_vars = mac.used(a) - unit, mac.used(b) - unit
        if mac.ivars[k] not in a_vars or mac.ivars[k] not in b_vars:
            return None
        f_cands = [i for i in range(nsp) if mac.ivars[i] in b_vars and mac.ivars[i] not in a_vars]
        shared = [i for i in range(nsp) if mac.ivars[i] in b_vars and mac.ivars[i] in a_vars]
        if len(f_cands) == 1 and not shared:
            break
    else:
        return None
    f = f_cands[0]
    rows = [i for i in range(nsp) if i != f]
    region = mac.reads[b].region
    # the weight: one dimension indexed by exactly f, one by exactly k, the rest constant
    fdims = [i for i, rg in enumerate(region) if rg.min.same_as(mac.ivars[f])]
    kdims = [i for i, rg in enumerate(region) if rg.min.same_as(mac.ivars[k])]
    if len(fdims) != 1 or len(kdims) != 1:
        return None
    for i, used in enumerate(mac.dim_vars[b]):
        if i not in (fdims[0], kdims[0]) and used - unit:
            return None
    plan = DensePlan(mac, loops, exts, nsp, b, f, rows, fdims[0])
    plan.k = k
    if plan.nrows > MAX_ROWS:
        return None
    return plan


def _tile_widths(n: int, lanes: int) -> list:
    """Column tile widths that divide ``n`` (multiples of 8 lanes), preferred first."""
    out = []
    for v in TILE_VECTORS:
        w = int(v * lanes)
        if w >= 8 and w % 8 == 0 and n % w == 0 and w not in out:
            out.append(w)
    return out


def _gate_product(sch, plan):
    """The broadcasting product of a squeeze-excitation gate, or None.

    ``out[.., c, h, w] = x[.., c, h, w] * gate[.., c, 0, 0]`` where ``gate`` is
    this one-row GEMV's (activated) result: the only root block that runs more
    often than the GEMV has outputs, with its leading loops (product ``N``)
    walking the channels and the rest a plane. Returns (block, index of the
    channel loop, plane size).
    """
    if plan.nrows != 1:
        return None
    n = plan.exts[plan.f]
    found = None
    mac = sch.get_sref(plan.mac.block)
    for blk in root_blocks(sch):
        if sch.get_sref(blk).same_as(mac):
            continue
        count = loop_count(sch, blk)
        if count is None:
            return None
        if count == n:
            continue
        if found is not None or count % n or is_reduction(sch, blk):
            return None
        found = blk
    if found is None or list(sch.get_consumers(found)):
        return None
    exts = static_extents(sch, sch.get_loops(found))
    prod = 1
    for ci, e in enumerate(exts):
        prod *= e
        if prod == n:
            break
    else:
        return None
    plane = loop_count(sch, found) // n
    if exts[ci] != n or plane < 2:
        return None
    return found, ci, plane


def _gate_tile(n: int, lanes: int, cores: int) -> Optional[int]:
    """Channels per task of a gated GEMV: a vector (or half one) of channels, as many
    tasks as the threads share evenly (144 channels: 18 tiles of 8, not 9 of 16)."""
    widths = [w for w in (lanes, lanes // 2) if w >= 8 and n % w == 0]
    for w in widths:
        if (n // w) % cores == 0:
            return w
    return widths[0] if widths else None


def _defaults(plan, lanes, gate=None, cores=1):
    k = plan.exts[plan.k]
    if gate is not None:
        nt = _gate_tile(plan.exts[plan.f], lanes, cores)
        if nt is not None:
            return {"dense.rows.nt": nt, "dense.rows.ku": _divisor_at_most(k, 8)}
    n = plan.exts[plan.f]
    widths = _tile_widths(n, lanes)
    if not widths:
        return None
    nt = widths[0]
    if cores > 1 and n // nt < cores and n * k * plan.nrows >= DENSE_PARALLEL_MIN_WORK:
        # a long GEMV with few outputs (a squeeze-excitation squeeze: 1152 -> 48) is one
        # tile: narrower tiles let the threads share the weight stream
        nt = next((w for w in sorted(set(widths) | {lanes, lanes // 2}, reverse=True)
                   if w >= 8 and n % w == 0 and (n // w) % cores == 0), nt)
    return {"dense.rows.nt": nt, "dense.rows.ku": _divisor_at_most(k, 8)}


def dense_rows_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_dense_rows`, default first."""
    plan = _dense_plan(sch)
    if plan is None:
        return []
    gate = _gate_product(sch, plan)
    default = _defaults(plan, lanes, gate, cores)
    if default is None:
        return []
    out = [default]
    k = plan.exts[plan.k]
    widths = _tile_widths(plan.exts[plan.f], lanes)
    if gate is not None:
        n = plan.exts[plan.f]
        widths = [w for w in (lanes, lanes // 2, 2 * lanes) if w >= 8 and n % w == 0]
    for nt in widths:
        for ku in (default["dense.rows.ku"], _divisor_at_most(k, 4), _divisor_at_most(k, 16)):
            cand = {"dense.rows.nt": nt, "dense.rows.ku": ku}
            if cand not in out and plan.nrows * nt <= 24 * lanes:
                out.append(cand)
    return out


def schedule_dense_rows(sch, lanes: int, cores: int) -> bool:
    """Few-row dense / matmul with a 2-D weight: column tiles over threads (see module doc)."""
    plan = _dense_plan(sch)
    if plan is None:
        return False
    gate = _gate_product(sch, plan) if knob("dense.rows.gate", True) else None
    weight = plan.mac.reads[plan.b].source
    pack = weight_is_layout_free(sch, weight)
    ndim = len(plan.mac.reads[plan.b].region)
    if not pack and plan.fdim != ndim - 1:
        return False          # a runtime weight stored [N, K] would need a per-call copy
    defaults = _defaults(plan, lanes, gate, cores)
    if defaults is None:
        return False
    nt = int(knob("dense.rows.nt", defaults["dense.rows.nt"]))
    ku = int(knob("dense.rows.ku", defaults["dense.rows.ku"]))
    mac, loops, exts, nsp = plan.mac, plan.loops, plan.exts, plan.nsp
    n, k = exts[plan.f], exts[plan.k]
    if n % nt or k % ku:
        return False
    # one register vector per accumulator: a wider TIR vector (40 lanes) is
    # legalized by LLVM into single-lane phis, which spills every k step
    vec = next((v for v in (lanes, lanes // 2, lanes // 4) if v >= 1 and nt % v == 0), 1)
    fo, fu, fv = sch.split(loops[plan.f], [None, nt // vec, vec])
    ko, ki = sch.split(loops[plan.k], [None, ku])
    rows = [loops[i] for i in plan.rows]
    unit_reds = [loops[i] for i in range(nsp, len(exts)) if i != plan.k]
    sch.reorder(fo, ko, ki, *unit_reds, *rows, fu, fv)
    if gate is not None:
        if parallel_worthwhile(n * k + n * gate[2], n // nt):
            sch.parallel(fo)
    elif n * k * plan.nrows >= DENSE_PARALLEL_MIN_WORK and n // nt > 1:
        sch.parallel(fo)
    if pack:
        fdim = plan.fdim
        pack_weight_once(sch, mac.block, mac.read_pos[plan.b],
                         lambda *idx: [idx[fdim] // nt] + [idx[i] for i in range(ndim) if i != fdim]
                         + [idx[fdim] % nt])
    wb = sch.cache_write(mac.block, 0, "local")
    sch.reverse_compute_at(wb, fo)
    sch.vectorize(fv)
    sch.unroll(fu)
    for r in rows:
        sch.unroll(r)
    sch.unroll(ki)
    sch.decompose_reduction(mac.block, ko)
    if gate is not None:
        _finish_gate(sch, wb, gate[0], fo, lanes)
        return True
    _finish(sch, mac.block, wb, lanes)
    return True


def _finish_gate(sch, wb, product, fo, lanes) -> None:
    """The gate's activation in the write-back, then its channels' planes, in one task.

    Each task of ``fo`` computes ``nt`` gates (the GEMV tile, vectorised) and
    at once scales those channels' planes, which it reads and writes as
    contiguous runs (split into whole vectors when they tile the plane; else
    LLVM's loop vectoriser takes the run with a scalar tail). One parallel
    region per kernel instead of a serial GEMV followed by a parallel product,
    and the task split by channel ranges keeps every plane on the core that
    wrote it when the producer split channels the same way.
    """
    prod_sref = sch.get_sref(product)
    consumers = list(sch.get_consumers(wb))
    if len(consumers) == 1 and not sch.get_sref(consumers[0]).same_as(prod_sref):
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:
            pass
    try:
        sch.vectorize(sch.get_loops(wb)[-1])
    except Exception:
        pass
    sch.reverse_compute_at(product, fo)
    inner = sch.get_loops(product)[1:]
    exts = static_extents(sch, inner)
    # the tile's channel loop (unit loops before it), then the plane
    ci = next((i for i, e in enumerate(exts) if e > 1), len(exts) - 1)
    plane_loops = inner[ci + 1:]
    if not plane_loops:
        return
    plane = 1
    for e in exts[ci + 1:]:
        plane *= e
    pl = sch.fuse(*plane_loops) if len(plane_loops) > 1 else plane_loops[0]
    v = next((w for w in (lanes, lanes // 2) if w >= 4 and plane % w == 0), 0)
    if v:
        _, vi = sch.split(pl, [None, v])
        sch.vectorize(vi)
    elif plane > lanes:
        # whole vectors, then the tail: left to LLVM, a 49-float plane ran entirely
        # in the scalar remainder of its 16-lane x 4-unrolled loop (64 > 49)
        body = plane // lanes * lanes
        head = sch.loop_partition(pl, [body, None])[0]
        _, vi = sch.split(head, [None, lanes])
        sch.vectorize(vi)
