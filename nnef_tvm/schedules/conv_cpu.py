"""CPU schedules for convolution-like reductions (NCHW conv2d, 1x1, grouped, depthwise, dense).

TVM's legalized ``conv2d`` is a plain 7-deep loop nest that LLVM cannot
vectorise well, so an untuned build runs it at scalar speed. Two direct
convolution micro-kernels cover the convolutions NNEF models contain:

* :func:`schedule_channel_vector` -- every output channel reads the same
  input pixels (ordinary and 1x1 convolutions, and any ``C += A * B`` whose
  "weight" operand has a dimension the "data" operand lacks: matmul / linear
  too). The inner loop is one broadcast input scalar times a weight vector
  into a register tile of ``fi`` channels x ``xt`` output columns
  (accumulated in a local buffer that LLVM keeps in registers). The weights
  are read as ``[channel tile, other dims.., channel in tile]``: for a weight
  marked layout free (a constant, see :mod:`.prepack`) that copy is made once
  at compile time; otherwise each parallel task packs its own tile. For 1x1
  convolutions over rows longer than a vector the roles swap (``vector="x"``):
  the vector runs along the output row, times 8 broadcast weights.
* :func:`schedule_spatial_vector` -- the output channel indexes the data too
  (depthwise, grouped): vectorise along the output width instead, with the
  same register-accumulator structure. A convolution strided along the width
  reads its padded input stored by column phase, so its vectors stay
  contiguous loads.

Both keep the zero-padding stage as its own copy (inlining it would put a
bounds test in the inner loop) and fuse the elementwise epilogue (bias,
residual add, relu, clamp, ...) into the write-back of the accumulator, so the
convolution result never makes a round trip through memory.

Tile choices are tuning knobs (``conv.channel_vector.{fi,xt,tasks,vector}``,
``conv.spatial_vector.{xt,yt,phase_split}``, read through
:func:`.cpu_common.knob`); ``channel_vector_space`` / ``spatial_vector_space``
list the valid settings of one kernel, the default first.
"""
from __future__ import annotations

from .cpu_common import (inline_elementwise, is_reduction, iter_kinds, knob, root_blocks,
                         schedule_spatial_nest, static_extents, trivial_binding, vars_in)
from .prepack import pack_weight_once, weight_is_layout_free


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
    reds = [b for b in root_blocks(sch) if is_reduction(sch, b)]
    if len(reds) != 1:
        return None
    blk = reds[0]
    stmt = sch.get(blk)
    if len(stmt.writes) != 1 or not trivial_binding(sch, blk):
        return None
    kinds = iter_kinds(sch, blk)
    if "O" in kinds or kinds.index("R") < len(kinds) - kinds.count("R"):
        return None      # spatial iterators must all come before the reductions
    from tvm import tirx
    body = stmt.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return None
    if not isinstance(body.value.b, tirx.Mul) or stmt.init is None:
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


def _static_mac_nest(sch):
    """``(mac, loops, extents, spatial loop count)`` of the prepared convolution, or None.

    None when there is no multiply-accumulate block or a loop extent is not static.
    """
    mac = _prepare(sch)
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


def _split_parallel(sch, outer_loops, outer_exts, inner_loop, inner_ext, tasks):
    """Fuse ``outer_loops`` (+ part of ``inner_loop``) into one parallel loop of >= tasks."""
    count = 1
    for e in outer_exts:
        count *= e
    if count >= tasks or inner_loop is None:
        par = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
        sch.parallel(par)
        return par, inner_loop
    split = _divisor_at_least(inner_ext, -(-tasks // count))
    yo, yi = sch.split(inner_loop, [split, None])
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


class ChannelPlan:
    """What :func:`schedule_channel_vector` found in a kernel: the loops it tiles.

    ``f``: the spatial iterator only the weight uses (output channel), ``x``:
    the innermost one only the data uses (output column), ``fdim``: the weight
    dimension ``f`` indexes, ``b``: which operand is the weight.
    """

    def __init__(self, mac, loops, exts, nsp, a, b, f, x, fdim):
        self.mac, self.loops, self.exts, self.nsp = mac, loops, exts, nsp
        self.a, self.b, self.f, self.x, self.fdim = a, b, f, x, fdim


def _channel_plan(sch):
    nest = _static_mac_nest(sch)
    if nest is None:
        return None
    mac, loops, exts, nsp = nest
    spatial = list(range(nsp))
    for a, b in ((0, 1), (1, 0)):
        a_vars, b_vars = mac.used(a), mac.used(b)
        f_cands = [i for i in spatial if mac.ivars[i] in b_vars and mac.ivars[i] not in a_vars]
        x_cands = [i for i in spatial if mac.ivars[i] in a_vars and mac.ivars[i] not in b_vars]
        if f_cands and x_cands:
            break
    else:
        return None
    f = f_cands[-1]
    x = x_cands[-1]    # may come before f (a matmul's rows): the tiling reorders anyway
    # the weight dimension indexed by exactly f (moved innermost when packed)
    b_dims = mac.dim_vars[b]
    if sum(1 for s in b_dims if mac.ivars[f] in s) != 1:
        return None
    fdim = next(i for i, s in enumerate(b_dims) if mac.ivars[f] in s)
    if not mac.reads[b].region[fdim].min.same_as(mac.ivars[f]):
        return None
    return ChannelPlan(mac, loops, exts, nsp, a, b, f, x, fdim)


def _channel_factors(plan, lanes):
    """Valid channel-vector factors (divide the channel count, >= 4), preferred first."""
    out = []
    for cand in (lanes * 2, lanes, lanes // 2, lanes // 4):
        if cand >= 4 and plan.exts[plan.f] % cand == 0 and cand not in out:
            out.append(cand)
    return out


def _channel_defaults(plan, lanes, cores, allow_x=True):
    xt = _divisor_at_most(plan.exts[plan.x], 8 if lanes >= 16 else 6)
    factors = _channel_factors(plan, lanes)
    if not factors:
        return None
    # two vectors of output channels per tile when they divide: with AVX-512's 32
    # registers an 8 x 2-vector accumulator tile measured 15-40% faster than 8 x 1
    # (ResNet-18 3x3 convs, MobileNetV2 1x1 convs); 16-register ISAs only afford
    # it for narrow tiles
    wide = lanes * 2 if (lanes >= 16 or xt <= 6) else 0
    fi = wide if wide in factors else next((c for c in factors if c <= lanes), factors[0])
    out = {"conv.channel_vector.fi": fi, "conv.channel_vector.xt": xt,
           "conv.channel_vector.tasks": 4 * cores, "conv.channel_vector.vector": "f"}
    if allow_x and _prefers_column_vectors(plan, lanes):
        out.update({"conv.channel_vector.vector": "x", "conv.channel_vector.fi": 8,
                    "conv.channel_vector.xt": _divisor_at_most(plan.exts[plan.x], lanes)})
    return out


def _prefers_column_vectors(plan, lanes) -> bool:
    """1x1 convolutions over rows longer than a vector: vectorise along the row.

    One contiguous input vector then feeds 8 output channels (weights
    broadcast) and results are stored straight in NCHW. Measured 12-65% faster
    than channel vectors for MobileNetV2's 1x1 convolutions at 28-112 px; 3x3
    convolutions stay faster with channel vectors (each input scalar feeds a
    whole 2-vector channel tile).
    """
    exts = plan.exts
    window = [e for e in exts[plan.nsp:] if e > 1]
    return (len(window) == 1 and exts[plan.x] > lanes and exts[plan.f] % 8 == 0
            and _divisor_at_most(exts[plan.x], lanes) >= lanes // 2 and _unit_stride(plan))


def _unit_stride(plan) -> bool:
    """The data operand steps by exactly one element per output column (contiguous vectors)."""
    from tvm.sym.pattern import detect_linear_equation
    data = plan.mac.reads[plan.a]
    coef = detect_linear_equation(data.region[-1].min, [plan.mac.ivars[plan.x]])
    return len(coef) == 2 and hasattr(coef[0], "value") and int(coef[0].value) == 1


def _channel_key(plan, setting) -> tuple:
    """(fi, xt, rows split) -- what a channel_vector setting changes in the schedule."""
    fi = setting["conv.channel_vector.fi"]
    vector = setting.get("conv.channel_vector.vector", "f")
    tasks = max(1, setting["conv.channel_vector.tasks"])
    rest = [i for i in range(plan.nsp) if i not in (plan.f, plan.x)]
    count = plan.exts[plan.f] // fi
    for i in rest:
        if i < plan.f:
            count *= plan.exts[i]
    after = [plan.exts[i] for i in rest if i > plan.f]
    split = 0 if (count >= tasks or not after) else _divisor_at_least(after[0],
                                                                      -(-tasks // count))
    return fi, setting["conv.channel_vector.xt"], split, vector


def channel_vector_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_channel_vector` for this kernel, default first.

    Variants: fewer / more parallel tasks, then every (channel factor, tile
    width) pair whose register tile fits the vector register file (at most 24
    accumulator vectors, at least 2), tile widths nearest the default first.
    """
    plan = _channel_plan(sch)
    if plan is None:
        return []
    default = _channel_defaults(plan, lanes, cores)
    if default is None:
        return []
    key_xt = "conv.channel_vector.xt"
    out = [default]
    seen = {_channel_key(plan, default)}

    def add(**kw):
        cand = dict(default)
        cand.update({f"conv.channel_vector.{k}": v for k, v in kw.items()})
        key = _channel_key(plan, cand)
        if key not in seen:           # settings that schedule identically are listed once
            seen.add(key)
            out.append(cand)

    add(tasks=cores)
    add(tasks=16 * cores)
    xext = plan.exts[plan.x]
    if _unit_stride(plan):
        # row vectors (x): a vector-wide (or narrower) row tile times 4-16 channels
        xv = _divisor_at_most(xext, lanes)
        for fi in (8, 4, 16):
            if xv >= 4 and plan.exts[plan.f] % fi == 0:
                add(vector="x", fi=fi, xt=xv)
    default = _channel_defaults(plan, lanes, cores, allow_x=False)    # channel-vector variants
    add()
    xts = sorted((d for d in range(1, min(xext, 16) + 1) if xext % d == 0),
                 key=lambda d: (abs(d - default[key_xt]), -d))
    for xt in xts:
        for fi in _channel_factors(plan, lanes):
            regs = max(1, fi // lanes) * xt
            if 2 <= regs <= 24:
                add(fi=fi, xt=xt)
    return out


def _is_strided(sch) -> bool:
    """Whether the prepared convolution steps its innermost output axis by more than 1."""
    from tvm.sym.pattern import detect_linear_equation
    mac = _mac_block(sch)
    if mac is None:
        return False
    x_var = mac.ivars[mac.kinds.count("S") - 1]
    for r in mac.reads:
        coef = detect_linear_equation(r.region[-1].min, [x_var])
        if len(coef) == 2 and hasattr(coef[0], "value") and int(coef[0].value) > 1:
            return True
    return False


def spatial_vector_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_spatial_vector`, default first.

    Vector widths (divisors of the output width up to two vectors), then rows
    per register tile (divisors of the output height) and, for strided
    convolutions, the column-phase layout switched off.
    """
    nest = _static_mac_nest(sch)
    if nest is None:
        return []
    _, _, exts, nsp = nest
    xext = exts[nsp - 1]
    default = _divisor_at_most(xext, lanes)
    if default < 2:
        return []
    key_xt, key_yt = "conv.spatial_vector.xt", "conv.spatial_vector.yt"
    base = {key_xt: default, key_yt: 1, "conv.spatial_vector.phase_split": True}
    out = [base]

    def add(**kw):
        cand = dict(base)
        cand.update({f"conv.spatial_vector.{k}": v for k, v in kw.items()})
        if cand not in out:
            out.append(cand)

    if _is_strided(sch):
        add(phase_split=False)
    for d in sorted((d for d in range(2, min(xext, 2 * lanes) + 1) if xext % d == 0),
                    key=lambda d: (abs(d - default), -d)):
        add(xt=d)
    if nsp >= 2:
        for yt in (2, 4, 7):
            if exts[nsp - 2] % yt == 0 and exts[nsp - 2] > yt:
                add(yt=yt)
    return out


def schedule_channel_vector(sch, lanes: int, cores: int) -> bool:
    """Direct convolution vectorised over output channels (see module docstring).

    Knobs (``conv.channel_vector.*``): ``fi`` output channels per register
    tile, ``xt`` output columns per register tile, ``tasks`` the parallel task
    count to reach before rows are shared out too, ``vector`` the axis the SIMD
    vector runs along ("f": output channels, weights packed channel-innermost
    and the input broadcast; "x": output columns, weights broadcast).
    """
    plan = _channel_plan(sch)
    if plan is None:
        return False
    defaults = _channel_defaults(plan, lanes, cores)
    if defaults is None:
        return False
    fi_factor = int(knob("conv.channel_vector.fi", defaults["conv.channel_vector.fi"]))
    xt = int(knob("conv.channel_vector.xt", defaults["conv.channel_vector.xt"]))
    tasks = int(knob("conv.channel_vector.tasks", defaults["conv.channel_vector.tasks"]))
    along_x = knob("conv.channel_vector.vector", defaults.get("conv.channel_vector.vector",
                                                               "f")) == "x"
    mac, loops, exts, nsp = plan.mac, plan.loops, plan.exts, plan.nsp
    f, x, fdim, b = plan.f, plan.x, plan.fdim, plan.b
    if exts[f] % fi_factor or exts[x] % xt or (along_x and not _unit_stride(plan)):
        return False
    spatial = list(range(nsp))
    fo, fi = sch.split(loops[f], [None, fi_factor])
    xo, xi = sch.split(loops[x], [None, xt])
    rest = [i for i in spatial if i not in (f, x)]
    before_f = [loops[i] for i in rest if i < f]
    before_f_exts = [exts[i] for i in rest if i < f]
    after_f = [loops[i] for i in rest if i > f]
    after_f_exts = [exts[i] for i in rest if i > f]
    reds = list(loops[nsp:])
    # the vector runs along the innermost loop: output channels, or output columns
    sch.reorder(*before_f, fo, *after_f, xo, *reds, *((fi, xi) if along_x else (xi, fi)))
    # parallel over (batch.., channel tiles) and, if that is too little work, rows
    row = after_f[0] if after_f else None
    row_ext = after_f_exts[0] if after_f else 1
    par, _ = _split_parallel(sch, before_f + [fo], before_f_exts + [exts[f] // fi_factor],
                             row, row_ext, tasks=max(1, tasks))
    b_read = mac.read_pos[b]
    ndim = len(mac.dim_vars[b])
    weight = mac.reads[b].source
    if weight_is_layout_free(sch, weight):
        # packed once at compile time: [channel tile, other dims.., channel in tile]
        def tiled(*idx):
            return [idx[fdim] // fi_factor] + [idx[i] for i in range(ndim) if i != fdim] + \
                [idx[fdim] % fi_factor]
        pack_weight_once(sch, mac.block, b_read, tiled)
    else:
        # packed per parallel task, output channel innermost
        packed = sch.cache_read(mac.block, b_read, "global")
        perm = [i for i in range(ndim) if i != fdim] + [fdim]
        sch.transform_layout(packed, ("write", 0), lambda *idx: [idx[i] for i in perm])
        sch.compute_at(packed, par)
        # copy loops in the packed order (output channel innermost, unrolled): the
        # stores then run contiguously instead of striding over the whole copy
        pk = sch.get_loops(packed)[-ndim:]
        if len(pk) == ndim and ndim > 1:
            sch.reorder(*[pk[i] for i in perm])
            sch.unroll(pk[fdim])
    # register accumulator
    wb = sch.cache_write(mac.block, 0, "local")
    nout = len(sch.get(mac.block).writes[0].region)
    out_f = _out_dim_of(sch, mac.block, mac.ivars[f])
    if out_f is not None and not along_x:
        operm = [i for i in range(nout) if i != out_f] + [out_f]
        sch.transform_layout(mac.block, ("write", 0), lambda *idx: [idx[i] for i in operm])
    sch.reverse_compute_at(wb, xo)
    sch.vectorize(xi if along_x else fi)
    sch.unroll(fi if along_x else xi)
    sch.decompose_reduction(mac.block, reds[0])
    _finish(sch, mac.block, wb, lanes)
    return True




def _phase_split(sch, mac, x_var, pad) -> int:
    """Lay the padded input out by column phase when the convolution strides along x.

    With stride ``s`` output column ``xx`` reads padded column ``xx*s + kx``:
    a vector of consecutive outputs would gather every s-th float. Stored as
    ``[.., row, column % s, column // s]`` the same vector is one contiguous
    load (``(xx*s + kx) // s == xx + kx // s``). Returns the stride (1: left as is).
    """
    from tvm.sym.pattern import detect_linear_equation
    pad_buf = sch.get(pad).writes[0].source
    read = next((r for r in sch.get(mac.block).reads if r.source.same_as(pad_buf)), None)
    if read is None:
        return 1
    coef = detect_linear_equation(read.region[-1].min, [x_var])
    if len(coef) != 2 or not hasattr(coef[0], "value"):
        return 1
    stride = int(coef[0].value)
    pexts = static_extents(sch, sch.get_loops(pad))
    if stride <= 1 or not pexts or pexts[-1] % stride:
        return 1
    sch.transform_layout(pad, ("write", 0),
                         lambda *idx: list(idx[:-1]) + [idx[-1] % stride, idx[-1] // stride])
    return stride


def schedule_spatial_vector(sch, lanes: int, cores: int) -> bool:
    """Depthwise / grouped convolution: vectorise along the output's innermost spatial axis.

    The accumulator for ``xt`` consecutive outputs of one row lives in a local
    buffer (registers); the reduction (kernel window, and the channels of a
    group) runs outside it; rows x channels are shared between threads.
    """
    nest = _static_mac_nest(sch)
    if nest is None:
        return False
    mac, loops, exts, nsp = nest
    out_vars = set()
    for rg in sch.get(mac.block).writes[0].region:
        out_vars |= vars_in(rg.min)
    # innermost spatial axis that indexes the output and one operand's last dimension
    x = None
    for i in reversed(range(nsp)):
        if exts[i] > 1 and mac.ivars[i] in out_vars:
            x = i
            break
    if x is None or x != nsp - 1:
        return False
    xt = int(knob("conv.spatial_vector.xt", _divisor_at_most(exts[x], lanes)))
    if xt < 2 or exts[x] % xt:
        return False
    # rows per register tile (more independent accumulators; a tuning knob)
    y = x - 1 if x >= 1 and mac.ivars[x - 1] in out_vars else None
    yt = int(knob("conv.spatial_vector.yt", 1))     # measured: 1 is best on AVX-512
    if yt < 1 or (y is not None and exts[y] % yt) or (y is None and yt != 1):
        return False
    xo, xi = sch.split(loops[x], [None, xt])
    outer = list(loops[:x])
    reds = list(loops[nsp:])
    inner = [xi]
    if yt > 1:
        yo, yi = sch.split(loops[y], [None, yt])
        outer = list(loops[:y]) + [yo]
        inner = [yi, xi]
    sch.reorder(*outer, xo, *reds, *inner)
    pads = list(sch.get_producers(mac.block))
    if len(outer) >= 2:
        # tasks = images x channels; each pads its own channel plane (stays in cache)
        par = sch.fuse(*outer[:-1]) if len(outer) > 2 else outer[0]
        sch.parallel(par)
        for pad in pads:
            try:
                stride = _phase_split(sch, mac, mac.ivars[x], pad) \
                    if knob("conv.spatial_vector.phase_split", True) else 1
                sch.compute_at(pad, par)
                ploops = sch.get_loops(pad)
                pexts = static_extents(sch, ploops)
                if stride > 1:
                    # write each phase's row contiguously (the gather is in the copy)
                    p0, p1 = sch.split(ploops[-1], [None, stride])
                    sch.reorder(p1, p0)
                elif pexts and pexts[-1] % lanes == 0:
                    _, pv = sch.split(ploops[-1], [None, lanes])
                    sch.vectorize(pv)
            except Exception:
                pass
    elif outer:
        sch.parallel(outer[0])
    wb = sch.cache_write(mac.block, 0, "local")
    sch.reverse_compute_at(wb, xo)
    sch.vectorize(xi)
    if yt > 1:
        sch.unroll(inner[0])
    if reds:
        sch.decompose_reduction(mac.block, reds[0])
    _finish(sch, mac.block, wb, lanes)
    return True
