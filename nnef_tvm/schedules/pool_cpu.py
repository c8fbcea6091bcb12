"""CPU rule ``pool_rows``: window pooling (max / sum / average) one output row at a time.

A pooling window ``out[.., y, x] = reduce_{i, j} in[.., y*s + i - p, x*s + j - p]``
(NNEF ``max_pool``, ``avg_pool``, ``box``/``sum_pool``; TVM's legalization
pads the input into its own buffer first, filling the border with the
reduction's identity -- ``-inf`` for max, 0 for sums -- and divides averages
in an epilogue block). Untuned, that is a full padded copy of the input
(ResNet-18's stem max-pool: 3.3 MB) followed by scalar window loops; the output
width (56) is no multiple of the vector width, so the generic rule vectorised
nothing.

This rule works per band of output rows (``n, c`` and the band index fused
into one parallel loop; a band is up to 8 rows, :func:`_default_band`):

* the band's padded input rows are produced right before its first output
  row, into a buffer of a few KiB (L1): the big padded copy disappears, and
  each input row is copied about once (one output row per task copied every
  input row ``window / stride`` times). ``decompose_padding`` splits the copy
  into a fill of the border value (one flat run of stores) and a copy of the
  in-bound cells without bounds tests;
* strided along the width (stride ``s`` > 1), those rows are stored by column
  phase, ``[col % s, col // s]``: output column ``x`` reads phase ``j % s`` at
  ``x + j // s``, so the window loop reads contiguous vectors. The copy reads
  the input contiguously and writes the phases in turn (LLVM de-interleaves
  with wide loads and permutes; a TIR-vectorised strided load would gather
  lane by lane);
* each output vector (16, 8 or 4 lanes, when they tile the row) reduces its
  whole window, unrolled, in a register: the vector loop runs outside the
  window loops. (Without a band -- one row per task, ``pool.rows.band`` 1 --
  the padded input is produced one window row at a time and the window
  loops run outside the row loop instead, accumulating in the output row.)
* the epilogue (the average's division, an activation) runs on each finished
  row while it is still in L1.

Each output element still reduces its window cells in the original order, so
results are bit-identical to the unscheduled kernel. ResNet-18's stem pool
(64 x 112 -> 56, 3x3 s2, 1 thread): 0.83 ms (generic rule) -> 0.33 ms (one row
per task) -> 0.19 ms (bands of 8 rows); 2 threads 0.15 -> 0.08 ms.

Knob ``pool.rows.direct`` reads the input in place instead (no padded copy):
the padding is inlined and each output row is split into the border columns
and the interior, whose windows never touch the padding, so their bounds tests
simplify away (:func:`_schedule_direct`); once faster for averages, slower
than the bands now (:data:`DIRECT_DEFAULT`).

Knobs ``pool.rows.{direct,phase,vector,band}``; :func:`pool_rows_space`.
"""
from __future__ import annotations

from .cpu_common import (inline_elementwise, iter_kinds, knob, parallel_worthwhile,
                         single_accumulation, static_extents, vars_in)


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
    found = single_accumulation(sch)
    if found is None or found[1] < 2:
        return None
    blk, nsp = found
    stmt = sch.get(blk)
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


def _width_stride(sch, blk) -> int:
    """How many input columns the window moves per output column (1 when not constant)."""
    from tvm.sym.pattern import detect_linear_equation
    stmt = sch.get(blk)
    nsp = iter_kinds(sch, blk).count("S")
    x_var = stmt.iter_vars[nsp - 1].var
    coef = detect_linear_equation(_window_read(sch, blk).region[-1].min, [x_var])
    if len(coef) == 2 and hasattr(coef[0], "value"):
        return max(1, int(coef[0].value))
    return 1


def _vector_width(ext: int, lanes: int) -> int:
    """Whole SIMD vectors (16, 8 or 4 lanes) that tile ``ext`` exactly, else 0."""
    for v in (lanes, lanes // 2, lanes // 4):
        if v >= 4 and ext % v == 0:
            return v
    return 0


def _split_border(sch, pad, at, stride: int) -> None:
    """Padding stage -> a fill of the border value + a plain copy of the in-bound cells.

    The copy then has no per-element bounds test and vectorises; a stage that
    is not a padding pattern (or cannot be split) stays as it is. For a
    column-phase layout the copy's column loop is split by the stride with the
    phase unrolled: it reads the input contiguously and LLVM de-interleaves
    the phases with wide loads plus permutes.
    """
    loops = sch.get_loops(pad)
    at_sref = sch.get_sref(at)
    idx = [i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(at_sref)]
    below = loops[idx[0] + 1:] if idx else []
    if not below:
        return
    try:
        if not sch.can_decompose_padding(pad, below[0]):
            return
        fill = sch.decompose_padding(pad, below[0])
    except Exception:
        return
    if stride > 1:
        for blk in (fill, pad):
            lp = sch.get_loops(blk)[-1]
            ext = static_extents(sch, [lp])
            if not ext or ext[0] % stride:
                continue
            col, phase = sch.split(lp, [None, stride])
            sch.unroll(phase)
            if blk is fill:
                sch.reorder(phase, col)     # one contiguous run of stores per phase
    inner = sch.get_loops(fill)[idx[0] + 1:]
    if len(inner) > 1:
        # several padded rows: one flat run of stores (LLVM otherwise vectorised
        # across rows, with scatters)
        sch.fuse(*inner)


def pool_rows_space(sch, lanes: int, cores: int) -> list:
    """Knob settings of :func:`schedule_pool_rows` for this kernel, default first."""
    blk = _window_block(sch)
    if blk is None:
        return []
    direct = DIRECT_DEFAULT
    out = [{"pool.rows.direct": direct, "pool.rows.phase": True, "pool.rows.vector": True},
           {"pool.rows.direct": not direct, "pool.rows.phase": True, "pool.rows.vector": True},
           {"pool.rows.direct": False, "pool.rows.phase": True, "pool.rows.vector": False}]
    if _width_stride(sch, blk) > 1:
        out += [{"pool.rows.direct": False, "pool.rows.phase": False, "pool.rows.vector": False}]
    exts = static_extents(sch, sch.get_loops(blk))
    nsp = iter_kinds(sch, blk).count("S")
    producers = list(sch.get_producers(blk))
    if exts is not None and nsp > 2 and len(producers) == 1:
        # padded-row bands other than the default one (which the first settings use)
        width = int(sch.get(producers[0]).writes[0].source.shape[-1])
        default = None if direct else _default_band(exts, nsp, cores, width)
        out += [{"pool.rows.direct": False, "pool.rows.phase": True, "pool.rows.vector": True,
                 "pool.rows.band": b} for b in (1,) + POOL_BANDS
                if exts[nsp - 2] % b == 0 and b != default]
    return out


# Output rows per task of the padded-rows schedule (knob ``pool.rows.band``). A
# band's padded input rows, ``(band - 1) * stride + window`` of them, are copied
# once and stay in L1 while its rows are computed; one row per task (band 1)
# copies every input row ``window / stride`` times instead. ResNet-18's stem
# pool (64 x 112 -> 56, 3x3 s2), 1 thread, same-process A/B: band 1 0.33 ms,
# 2: 0.22, 4: 0.21, 8: 0.19, 28: 0.31 (the band no longer fits L1).
POOL_BANDS = (8, 4, 2)
MAX_UNROLLED_WINDOW = 25      # window cells unrolled around a band's register accumulator
POOL_BAND_BYTES = 16 * 1024


def _default_band(exts, nsp: int, cores: int, padded_width: int) -> int:
    """Largest band of :data:`POOL_BANDS` that divides the output height, leaves
    at least ``4 * cores`` tasks and keeps its padded rows under
    :data:`POOL_BAND_BYTES` (estimated as ``2 * band + 1`` rows); else 1."""
    if nsp < 3:
        return 1
    height, planes = exts[nsp - 2], _product(exts[:nsp - 2])
    for band in POOL_BANDS:
        if (height % band == 0 and planes * (height // band) >= 4 * cores
                and (2 * band + 1) * padded_width * 4 <= POOL_BAND_BYTES):
            return band
    return 1


# Default of knob ``pool.rows.direct`` (read the input in place instead of through
# padded row bands). Measured (1 thread, same-process A/B, min of 20): average
# pool 64 x 56 3x3 s1 in place 0.88 ms, padded one row per task 0.42, padded
# bands of 8 rows 0.22; max pool 56 s1: 0.32 / 0.24 / 0.09. (Before bands,
# averages read in place won: 265 vs 355 us.)
DIRECT_DEFAULT = False


def _border_columns(sch, blk, pad):
    """(first, end) of the output columns whose window lies inside the unpadded input.

    None when the padding stage or the window's column index is not the plain
    ``in[.., x*s + j*d - p]`` form.
    """
    from tvm.sym.pattern import detect_linear_equation
    pstmt = sch.get(pad)
    if len(pstmt.reads) != 1 or len(pstmt.writes) != 1:
        return None
    pvar = pstmt.iter_vars[-1].var
    coef = detect_linear_equation(pstmt.reads[0].region[-1].min, [pvar])
    if len(coef) != 2 or not all(hasattr(c, "value") for c in coef) or int(coef[0].value) != 1:
        return None
    left = -int(coef[1].value)
    width = int(pstmt.reads[0].source.shape[-1])
    stmt = sch.get(blk)
    nsp = iter_kinds(sch, blk).count("S")
    ivars = [iv.var for iv in stmt.iter_vars]
    loops = sch.get_loops(blk)
    exts = static_extents(sch, loops)
    index = _window_read(sch, blk).region[-1].min
    used = vars_in(index)
    window = [i for i in range(nsp, len(ivars)) if ivars[i] in used]
    coef = detect_linear_equation(index, [ivars[nsp - 1]] + [ivars[i] for i in window])
    if len(coef) != len(window) + 2 or not all(hasattr(c, "value") for c in coef):
        return None
    stride, offset = int(coef[0].value), int(coef[-1].value)
    span = sum(int(c.value) * (exts[i] - 1) for c, i in zip(coef[1:-1], window))
    if offset != 0 or stride < 1:
        return None
    # padded column x*s + t (t in [0, span]) is input column x*s + t - left
    first = -(-left // stride)
    last = (width - 1 - span + left) // stride
    out_w = exts[nsp - 1]
    first, end = min(max(first, 0), out_w), max(min(last + 1, out_w), 0)
    return (first, end) if first < end else None


def _schedule_direct(sch, blk, pad, border) -> bool:
    """Read the input in place: the padding inlined, the row split into border / interior.

    The interior columns' windows never touch the padding, so after the split
    their bounds tests simplify away (what is left tests the window row, the
    same for the whole row); LLVM vectorises the interior loop, strided
    reads included (wide loads + permutes).
    """
    sch.compute_inline(pad)
    loops = sch.get_loops(blk)
    exts = static_extents(sch, loops)
    nsp = iter_kinds(sch, blk).count("S")
    spatial, reds = list(loops[:nsp]), list(loops[nsp:])
    sch.reorder(*spatial[:-1], *reds, spatial[-1])
    row = sch.fuse(*spatial[:-1]) if nsp > 2 else spatial[0]
    work = _product(exts)
    if parallel_worthwhile(work, work // (exts[nsp - 1] * _product(exts[nsp:]))):
        sch.parallel(row)
    sch.decompose_reduction(blk, reds[0])
    for c in list(sch.get_consumers(blk)):
        sch.reverse_compute_at(c, row)
    first, end = border
    out_w = exts[nsp - 1]
    parts = [n for n in (first, end - first, out_w - end) if n > 0]
    if len(parts) > 1:
        sch.loop_partition(sch.get_loops(blk)[-1], parts[:-1] + [None])
    return True


def schedule_pool_rows(sch, lanes: int, cores: int) -> bool:
    """Pooling windows computed one output row at a time (see module docstring).

    Knobs: ``pool.rows.direct`` (read the input in place, the row split into
    border and interior columns, instead of through padded rows; default
    :data:`DIRECT_DEFAULT`), ``pool.rows.phase`` (store the padded rows by column phase when the
    window is strided along the width), ``pool.rows.vector`` (split the row
    into whole TIR vectors when they tile it, instead of LLVM's loop vectoriser),
    ``pool.rows.band`` (output rows per task, a divisor of the output height;
    default :func:`_default_band`).
    """
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
    if knob("pool.rows.direct", DIRECT_DEFAULT) and producers:
        border = _border_columns(sch, blk, producers[0])
        if border is not None:
            return _schedule_direct(sch, blk, producers[0], border)
    loops = sch.get_loops(blk)
    exts = static_extents(sch, loops)
    if exts is None:
        return False
    nsp = iter_kinds(sch, blk).count("S")
    stride = _width_stride(sch, blk)
    band = 1
    if nsp > 2 and len(producers) == 1:
        width = int(sch.get(producers[0]).writes[0].source.shape[-1])
        band = int(knob("pool.rows.band", _default_band(exts, nsp, cores, width)))
        if band < 1 or exts[nsp - 2] % band:
            band = 1
    phase = bool(knob("pool.rows.phase", True)) and stride > 1 and len(producers) == 1
    if phase:
        pshape = [int(d) for d in sch.get(producers[0]).writes[0].source.shape]
        phase = pshape[-1] % stride == 0
    if phase:
        sch.transform_layout(producers[0], ("write", 0),
                             lambda *idx: list(idx[:-1]) + [idx[-1] % stride, idx[-1] // stride])
    vectors = bool(knob("pool.rows.vector", True)) and (phase or stride == 1)
    spatial, reds = list(loops[:nsp]), list(loops[nsp:])
    sch.reorder(*spatial[:-1], *reds, spatial[-1])
    work = _product(exts)
    if band > 1:
        # one task per band of output rows (leading axes fused): its padded input
        # rows are copied once per band, the rows computed one after the other
        yo, row = sch.split(spatial[-2], [None, band])
        task = sch.fuse(*spatial[:-2], yo)
        tasks = _product(exts[:nsp - 2]) * (-(-exts[nsp - 2] // band))
    else:
        row = sch.fuse(*spatial[:-1]) if nsp > 2 else spatial[0]
        task = row
        tasks = work // (exts[nsp - 1] * _product(exts[nsp:]))
    if parallel_worthwhile(work, tasks):
        sch.parallel(task)
    xv = sch.get_loops(blk)[-1]
    v = _vector_width(static_extents(sch, [xv])[0], lanes) if vectors else 0
    if band > 1 and v:
        # the band's padded rows are ready before its first row: each output vector
        # reduces its whole window in a register (vector loop outside the window loops)
        xo, xi = sch.split(xv, [None, v])
        sch.reorder(xo, *reds, xi)
        sch.vectorize(xi)
        if _product(exts[nsp:]) <= MAX_UNROLLED_WINDOW:
            for r in reds:
                sch.unroll(r)
    elif v:
        _, xi = sch.split(xv, [None, v])
        sch.vectorize(xi)
    sch.decompose_reduction(blk, reds[0])
    for c in list(sch.get_consumers(blk)):
        sch.reverse_compute_at(c, row)
    # a band's padded rows are produced once per task (a heap workspace: more than
    # TVM's 1 KiB stack-allocation limit, allocated once per band). Without bands
    # the padded input is produced one window row at a time (under the last window
    # loop that does not move along the width): a few hundred bytes on the stack
    # (the k rows of one output row would need that workspace for every row task,
    # 3584 allocations for the stem pool, which cost more than the pooling)
    stmt = sch.get(blk)
    ivars = [iv.var for iv in stmt.iter_vars]
    width_vars = vars_in(_window_read(sch, blk).region[-1].min)
    at = row
    if band > 1:
        at = task
    else:
        for lp, var in zip(reds, ivars[nsp:]):
            if var in width_vars:
                break
            at = lp
    for p in producers:
        sch.compute_at(p, at)
        _split_border(sch, p, at, stride if phase else 1)
    return True


# ------------------------------------------------------------------ global reductions

def _plane_reduction(sch):
    """The single sum over whole trailing planes (global mean / sum pooling), or None.

    ``acc[.., 1, 1] += in[.., h, w]``: the reduction iterators index exactly the
    input's trailing dimensions, which no spatial iterator touches.
    """
    from tvm import tirx
    found = single_accumulation(sch)
    if found is None:
        return None
    blk, nsp = found
    stmt = sch.get(blk)
    kinds = iter_kinds(sch, blk)
    body = stmt.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return None
    out = stmt.writes[0].source
    inputs = [r for r in stmt.reads if not r.source.same_as(out)]
    if len(inputs) != 1 or list(sch.get_producers(blk)):
        return None
    ivars = [iv.var for iv in stmt.iter_vars]
    nred = len(kinds) - nsp
    region = inputs[0].region
    if len(region) < nred:
        return None
    tail = region[len(region) - nred:]
    if not all(rg.min.same_as(v) for rg, v in zip(tail, ivars[nsp:])):
        return None
    return blk


PLANE_ACCUMULATORS = 4     # independent vector partial sums per plane

# Default of knob ``pool.plane.rows`` (:func:`_plane_rows` for planes no vector
# width tiles, 7 x 7). Off for now: tests/schedules/schedules_parallel_policy_test.py
# pins MobileNetV2's 1280 x 7 x 7 mean to the generic rule; its whole-model A/B
# with rows on was neutral (1.004, q1-q3 0.973-1.031 at 2 threads).
PLANE_ROWS_DEFAULT = False


def schedule_plane_sum(sch, lanes: int, cores: int) -> bool:
    """Sum over whole contiguous planes (global average pooling) in vector partial sums.

    The plane (``h * w`` contiguous floats per channel) is read as
    ``PLANE_ACCUMULATORS`` vectors per step (fewer, or half / quarter vectors,
    when they do not tile the plane: 14 x 14 = 196 = 49 x 4) into a small
    accumulator (TVM's ``rfactor``), which is then summed and divided once per
    channel (32 x 112 x 112 mean, 1 thread: 323 -> 27 us). The
    summation order changes (partial sums), so results differ from the
    sequential sum by float rounding only. Planes whose size no vector width
    divides stay with the generic rule.
    """
    blk = _plane_reduction(sch)
    if blk is None:
        return False
    inline_elementwise(sch, set())
    blk = _plane_reduction(sch)
    if blk is None:
        return False
    loops = sch.get_loops(blk)
    exts = static_extents(sch, loops)
    if exts is None:
        return False
    nsp = iter_kinds(sch, blk).count("S")
    plane = _product(exts[nsp:])
    widths = [lanes * n for n in (PLANE_ACCUMULATORS, 2, 1)] + [lanes // 2, lanes // 4]
    width = next((w for w in widths if w >= 4 and plane % w == 0 and plane >= 2 * w), 0)
    row = exts[-1] if len(exts) - nsp >= 2 else 0
    if not width and row >= 4 and knob("pool.plane.rows", PLANE_ROWS_DEFAULT):
        return _plane_rows(sch, blk, nsp, exts)
    if not width:
        return False
    red = sch.fuse(*loops[nsp:]) if len(loops) - nsp > 1 else loops[nsp]
    _, ki = sch.split(red, [None, width])
    nout = len(sch.get(blk).writes[0].region)
    rf = sch.rfactor(ki, factor_axis=nout)
    # rf block loops: spatial.., k outer (reduction), k inner (now spatial)
    return _finish_plane_rfactor(sch, rf, nsp, exts)


def _plane_rows(sch, blk, nsp: int, exts) -> bool:
    """Plane sums one row-wide vector at a time (planes no whole vector width tiles).

    A 7 x 7 plane (49 floats) has no 4-, 8- or 16-float tiling (the generic
    rule summed it one float at a time): the partial sum is kept per column
    instead, ``acc[x] += in[y, x]`` for each row ``y`` (one row-wide vector
    add, LLVM pads the 7 lanes to a machine vector), then the row's lanes are
    summed and divided once per channel. 1152 x 7 x 7 mean standalone, 1
    thread: 11.0 -> 8.9 us; EfficientNet-B0 at 2 threads in the model, paired:
    0.85-0.94x per 7 x 7 mean. 14 x 14 planes (196 = 49 steps of 4 floats)
    stay with the vector partial sums: 14-wide rows were 1.08-1.10x slower
    there. The order of the additions changes (per column, then across), as
    for the vector partial sums: float rounding only.
    """
    loops = sch.get_loops(blk)
    rf = sch.rfactor(loops[-1], factor_axis=len(sch.get(blk).writes[0].region))
    return _finish_plane_rfactor(sch, rf, nsp, exts)


def _finish_plane_rfactor(sch, rf, nsp: int, exts) -> bool:
    """The common end of both plane-sum forms, given the partial-sum block ``rf``.

    Its channel loops fuse into one (parallel when worth it), its innermost
    loop (the vector of partial sums) is vectorized, the final sum and the
    consumers (the divide of a mean) move under the channel loop, and the
    partial sums live in a local buffer.
    """
    outer = sch.get_loops(rf)[:nsp]
    chan = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if parallel_worthwhile(_product(exts), _product(exts[:nsp])):
        sch.parallel(chan)
    sch.vectorize(sch.get_loops(rf)[-1])
    final = sch.get_consumers(rf)[0]
    sch.reverse_compute_at(final, chan)
    for c in list(sch.get_consumers(final)):
        sch.reverse_compute_at(c, chan)
    sch.set_scope(rf, 0, "local")
    sch.decompose_reduction(rf, sch.get_loops(rf)[-2])
    return True
