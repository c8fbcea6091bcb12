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

Each output element still sums over ``k`` in order, so results match the
unscheduled kernel to the last bit of float rounding order.

Knobs (``dense.rows.{nt,ku}``); :func:`dense_rows_space` lists the valid
settings of one kernel, the default first.
"""
from __future__ import annotations

from .conv_cpu import _divisor_at_most, _finish, _static_mac_nest
from .cpu_common import PARALLEL_MIN_WORK, knob
from .prepack import pack_weight_once, weight_is_layout_free

# Most rows (product of the data-only output dims) the rule takes: each row
# needs nt / lanes accumulator registers; beyond this a matmul has enough
# reuse of each weight vector for the channel-vector (GEMM) rule.
MAX_ROWS = 4

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


def _dense_plan(sch):
    nest = _static_mac_nest(sch)
    if nest is None:
        return None
    mac, loops, exts, nsp = nest
    # no producer stage (a padding copy means a convolution window)
    if list(sch.get_producers(mac.block)):
        return None
    reds = list(range(nsp, len(exts)))
    if len(reds) != 1:
        return None
    for b in (1, 0):
        a = 1 - b
        a_vars, b_vars = mac.used(a), mac.used(b)
        red_var = mac.ivars[reds[0]]
        if red_var not in a_vars or red_var not in b_vars:
            return None
        f_cands = [i for i in range(nsp) if mac.ivars[i] in b_vars and mac.ivars[i] not in a_vars]
        shared = [i for i in range(nsp) if mac.ivars[i] in b_vars and mac.ivars[i] in a_vars
                  and exts[i] > 1]
        if len(f_cands) == 1 and not shared:
            break
    else:
        return None
    f = f_cands[0]
    rows = [i for i in range(nsp) if i != f]
    if any(mac.ivars[i] in mac.used(b) for i in rows if exts[i] > 1):
        return None
    b_dims = mac.dim_vars[b]
    if len(b_dims) != 2 or sum(1 for s in b_dims if mac.ivars[f] in s) != 1:
        return None
    fdim = next(i for i, s in enumerate(b_dims) if mac.ivars[f] in s)
    if not mac.reads[b].region[fdim].min.same_as(mac.ivars[f]):
        return None
    kdim = 1 - fdim
    if not mac.reads[b].region[kdim].min.same_as(mac.ivars[reds[0]]):
        return None
    plan = DensePlan(mac, loops, exts, nsp, b, f, rows, fdim)
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


def _defaults(plan, lanes):
    widths = _tile_widths(plan.exts[plan.f], lanes)
    if not widths:
        return None
    k = plan.exts[plan.nsp]
    return {"dense.rows.nt": widths[0], "dense.rows.ku": _divisor_at_most(k, 8)}


def dense_rows_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_dense_rows`, default first."""
    plan = _dense_plan(sch)
    if plan is None:
        return []
    default = _defaults(plan, lanes)
    if default is None:
        return []
    out = [default]
    k = plan.exts[plan.nsp]
    for nt in _tile_widths(plan.exts[plan.f], lanes):
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
    weight = plan.mac.reads[plan.b].source
    pack = weight_is_layout_free(sch, weight)
    if not pack and plan.fdim != 1:
        return False          # a runtime weight stored [N, K] would need a per-call copy
    defaults = _defaults(plan, lanes)
    if defaults is None:
        return False
    nt = int(knob("dense.rows.nt", defaults["dense.rows.nt"]))
    ku = int(knob("dense.rows.ku", defaults["dense.rows.ku"]))
    mac, loops, exts, nsp = plan.mac, plan.loops, plan.exts, plan.nsp
    n, k = exts[plan.f], exts[nsp]
    if n % nt or k % ku:
        return False
    # one register vector per accumulator: a wider TIR vector (40 lanes) is
    # legalized by LLVM into single-lane phis, which spills every k step
    vec = next((v for v in (lanes, lanes // 2, lanes // 4) if v >= 1 and nt % v == 0), 1)
    fo, fu, fv = sch.split(loops[plan.f], [None, nt // vec, vec])
    ko, ki = sch.split(loops[nsp], [None, ku])
    rows = [loops[i] for i in plan.rows]
    sch.reorder(fo, ko, ki, *rows, fu, fv)
    if n * k * plan.nrows >= PARALLEL_MIN_WORK and n // nt > 1:
        sch.parallel(fo)
    if pack:
        fdim = plan.fdim
        pack_weight_once(sch, mac.block, mac.read_pos[plan.b],
                         lambda *idx: [idx[fdim] // nt, idx[1 - fdim], idx[fdim] % nt])
    wb = sch.cache_write(mac.block, 0, "local")
    sch.reverse_compute_at(wb, fo)
    sch.vectorize(fv)
    sch.unroll(fu)
    for r in rows:
        sch.unroll(r)
    sch.unroll(ki)
    sch.decompose_reduction(mac.block, ko)
    _finish(sch, mac.block, wb, lanes)
    return True
