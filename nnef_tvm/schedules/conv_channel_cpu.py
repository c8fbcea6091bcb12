"""CPU rule ``conv_channel_vector``: direct convolution vectorised over output channels.

Every output channel reads the same input pixels (ordinary and 1x1
convolutions, and any ``C += A * B`` whose "weight" operand has a dimension
the "data" operand lacks: matmul / linear too). The inner loop is one
broadcast input scalar times a weight vector into a register tile of ``fi``
channels x ``xt`` output columns (accumulated in a local buffer that LLVM
keeps in registers). The weights are read as ``[channel tile, other dims..,
channel in tile]``: for a weight marked layout free (a constant, see
:mod:`.prepack`) that copy is made once at compile time; otherwise each
parallel task packs its own tile. For 1x1 convolutions over rows longer than a
vector the roles swap (``vector="x"``): the vector runs along the output row,
times 8 broadcast weights. A 1x1 stride-1 convolution whose map size is a
multiple of the vector width goes further (``vector="flat"``): its output rows
are one flat axis (``H*W`` contiguous floats per channel), so 56x56 and 28x28
maps get full 16-lane vectors instead of 14-wide row pieces, and the parallel
tasks are (spatial tile, channel tile) pairs, spatial tile outermost, so an
input tile is read from memory once for all output channels. Strided
convolutions whose output rows are whole vectors (the 224-pixel stems) use row
vectors too, over a padded input stored by column phase (``[.., row, column %
s, column // s]``, see :func:`_phase_producer`), with ``yt`` output rows per
register tile: their short reductions (27-147 products) made the channel-vector
tile's transposing write-back as costly as its arithmetic.

A 1x1 convolution whose input has at least 3x its output's channels (the
projections after MobileNetV2's depthwise layers) splits its *input*
channels over the cores instead (``split_k``, :func:`_schedule_split_k`): each
core reduces over the channels its own depthwise tasks just wrote, and only
the partial sums cross between cores (see :func:`_split_k_pays`).

Channel vectors store through a transpose (the tile is ``[column, channel]``,
the output NCHW): LLVM assembles each output row with one ``vinsertps`` per
element, about one cycle per output, which is why short reductions prefer the
row-vector modes. Parallel tasks are (batch, channel tile) pairs plus row
chunks, their count kept a multiple of the cores (:func:`.conv_cpu._row_split`).
Tried in session 6 (AVX-512, MobileNetV2's 7x7 / 14x14 1x1 convs), not kept:
the transpose as a shuffle network (a tensor intrinsic of 16-lane
``vpermt2ps`` stages) per row tile ran 1.08-1.18x slower standalone; per
task over whole planes (the epilogue then walks contiguous 49 / 196-float
planes) 0.97-1.00x standalone and 1.00-1.08x per kernel in the model (paired):
the write-back is not what these kernels lose in the model (they run ~1.5x
their hot standalone time there; evicting L2 between standalone calls alone
makes 160->960 @7 1.18x slower: its 614 KB of weights then come from L3). Flat
mode with a tail for these maps (``loop_partition`` of the flat axis) could
not be scheduled: the partitions' blocks sit in scopes that
``reverse_compute_at`` / ``reverse_compute_inline`` cannot cross.

Channel-vector 1x1 convolutions with packed constant weights can prefetch the
weights of the next k-block / channel tile a few cache lines per output row
(knob ``prefetch``, default :data:`PREFETCH`, :func:`_prefetch_weights`;
off in this commit only because schedules_conv_k_block_test.py's loop-nest
strings predate the statements in the row loop): in a model the weights come from L3
(a whole model's do not stay in L2), and MobileNetV2's 7x7 1x1 kernels ran
0.67-0.80x with it (paired, in the model), the whole model 0.95 (2 threads) /
0.92 (1 thread), EfficientNet-B0 0.94. A tuned record's replayed trace keeps
only the loop annotation: :func:`materialize_prefetch` turns it back into the
prefetches.

Tile choices are tuning knobs (``conv.channel_vector.{fi,xt,yt,tasks,vector,order,acc_scope,split_k,k_block,prefetch}``,
read through :func:`.cpu_common.knob`); :func:`channel_vector_space` lists the
valid settings of one kernel, the default first.
"""
from __future__ import annotations

from .conv_cpu import (_divisor_at_most, _finish, _out_dim_of, _row_split,
                       _split_parallel, _static_mac_nest)
from .cpu_common import knob, vars_in
from .prepack import pack_weight_once, weight_is_layout_free


class ChannelPlan:
    """What :func:`schedule_channel_vector` found in a kernel: the loops it tiles.

    ``f``: the spatial iterator only the weight uses (output channel), ``x``:
    the innermost one only the data uses (output column), ``fdim``: the weight
    dimension ``f`` indexes, ``b``: which operand is the weight,
    ``out_region``: the output's index region, ``phase``: ``(padding block,
    stride)`` when a strided conv can read column phases (:func:`_phase_producer`).
    """

    def __init__(self, mac, loops, exts, nsp, a, b, f, x, fdim, out_region):
        self.mac, self.loops, self.exts, self.nsp = mac, loops, exts, nsp
        self.a, self.b, self.f, self.x, self.fdim = a, b, f, x, fdim
        self.out_region = out_region


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
    plan = ChannelPlan(mac, loops, exts, nsp, a, b, f, x, fdim,
                       list(sch.get(mac.block).writes[0].region))
    plan.phase = _phase_producer(sch, plan)
    return plan


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
    if fi == wide and lanes >= 16 and _is_pointwise(plan):
        # a 1x1 window affords 14 columns x 2 vectors (28 accumulators): measured
        # 5-13% faster than 7 columns on MobileNetV2's 14x14 1x1 convs (576->96
        # 0.160 -> 0.139 ms) and ResNet-18's strided 1x1 (64->128 0.129 -> 0.117);
        # a 3x3 window runs twice as slow with it (kept at 8 columns)
        xt = _divisor_at_most(plan.exts[plan.x], 14)
    out = {"conv.channel_vector.fi": fi, "conv.channel_vector.xt": xt,
           "conv.channel_vector.tasks": 4 * cores, "conv.channel_vector.vector": "f",
           "conv.channel_vector.split_k": 1}
    flat = _flat_default(plan, lanes) if allow_x else None
    if flat is not None:
        out.update(flat)
    elif allow_x and _prefers_column_vectors(plan, lanes):
        out.update({"conv.channel_vector.vector": "x", "conv.channel_vector.fi": 8,
                    "conv.channel_vector.xt": _divisor_at_most(plan.exts[plan.x], lanes)})
    elif allow_x and _prefers_phase_rows(plan, lanes):
        # 8 channels x 2 rows x 1 vector: 16 accumulators, 10 loads per 16 FMAs
        out.update({"conv.channel_vector.vector": "x", "conv.channel_vector.fi": 8,
                    "conv.channel_vector.xt": lanes,
                    "conv.channel_vector.yt": 2 if _rows_divisible(plan, out, 8, 2, cores) else 1})
    if out["conv.channel_vector.vector"] == "f" and _split_k_pays(plan, fi, cores):
        # (flat-mode maps, 28x28 and 56x56, measured 1.03-1.06x slower split:
        # their tiles are spatial, and the producer's output stays mostly local)
        out["conv.channel_vector.split_k"] = cores
    out["conv.channel_vector.k_block"] = _k_block_default(plan, out, cores)
    return out


# input channels per block of a plane-at-once channel-vector task (see _k_block_default)
K_BLOCK = 32
K_BLOCK_MAX_PLANE_BYTES = 8 * 1024


def _k_block_fits(plan, setting, kblock: int, cores: int) -> bool:
    """Whether ``setting`` can run with the input channels in blocks of ``kblock``.

    Needs channel vectors, a 1x1 window, whole output rows in one register
    tile, and each task holding whole planes (no row split; split-K tasks
    always do), so that the task's accumulators (``rows x row x fi`` floats)
    are one buffer; the blocks divide the (per-slice) input channels.
    """
    if kblock <= 0 or setting.get("conv.channel_vector.vector", "f") != "f":
        return False
    if not _is_pointwise(plan):
        return False
    xt = setting["conv.channel_vector.xt"]
    if plan.x != plan.nsp - 1 or plan.f >= plan.x - 1 or plan.exts[plan.x] != xt:
        return False            # NCHW: channel, row, column (innermost), whole rows
    parts = setting.get("conv.channel_vector.split_k", 1)
    red = max(plan.exts[plan.nsp:])
    if red % parts or red // parts <= kblock or (red // parts) % kblock:
        return False
    # (split-K tasks always hold whole planes: a slice x a channel tile)
    return parts > 1 or _channel_key(plan, setting, cores)[2] == 1


def _k_block_default(plan, setting, cores: int) -> int:
    """Input channels per block when a task computes whole planes, 0 for the usual order.

    A channel-vector task (``fi`` output channels) normally finishes one
    output row before the next, so its whole weight tile (input channels x
    ``fi`` floats: 20-123 KB for MobileNetV2's 7x7 1x1 convs) is read once
    per row, the first time from L3 (a model's weights do not stay in L2).
    With the input channels in blocks of :data:`K_BLOCK` outermost in the
    task, each weight block serves every row of the plane right after it is
    fetched, and the accumulators of the plane (at most
    :data:`K_BLOCK_MAX_PLANE_BYTES`: 7x7 maps x 32 channels) stay in L1
    between blocks. Measured in MobileNetV2 at 1 thread (paired, per kernel):
    960->320 @7 0.92x, 960->160 0.93x, 320->1280 0.96x, 160->960 0.97x; the
    14x14 expansions (25 KB of accumulators) ran 1.07x slower that way. Whole
    models, paired: EfficientNet-B0 0.980 / 0.979 at 1 thread (q1-q3 below
    1.0), MobileNetV2 0.985-0.996 (1 thread, 4 runs, q1-q3 across 1.0); at 2
    threads (the 7x7 projections are split-K there) and ResNet-18 within noise.
    Split-K slices (:func:`_schedule_split_k`) hold whole planes, so their
    input channels run in blocks the same way: MobileNetV2 at 2 threads,
    paired per kernel in the model, 960->160 0.93x, 960->320 0.95x, 576->160
    0.97x; whole model 0.986 / 0.987 (q1-q3 across 1.0), EfficientNet-B0
    0.995, ResNet-18's library unchanged.
    """
    rows = plan.exts[plan.x - 1]
    plane = 4 * rows * setting["conv.channel_vector.xt"] * setting["conv.channel_vector.fi"]
    if plane > K_BLOCK_MAX_PLANE_BYTES or not _k_block_fits(plan, setting, K_BLOCK, cores):
        return 0
    return K_BLOCK


SPLIT_K_MIN_RATIO = 3


def _split_k_pays(plan, fi: int, cores: int) -> bool:
    """Whether a channel-vector 1x1 convolution splits its input channels over the cores.

    The 1x1 convolutions that project MobileNetV2's expanded channels back
    (576 -> 96, 384 -> 64 at 14x14; 960 -> 160 at 7x7) read every channel of
    a tensor the depthwise kernel before them just wrote, split by channel
    halves: under an output split each core reads half its input from the
    other core's cache, and at 2 threads these kernels ran no faster than on
    one (576 -> 96 @14: 0.134 ms on 1 thread, 0.277 on 2 after a depthwise
    producer, 0.079 standalone). Split by input channels (:func:`_schedule_split_k`)
    each core reduces over the channels it produced and only the small
    partial sums cross: 0.160 -> 0.087 ms in the same chain. Worth it when
    the input has at least :data:`SPLIT_K_MIN_RATIO` times the output's
    channels; the expanding 1x1 convs (64 -> 384) ran 1.6x slower split.
    """
    if cores < 2 or not _is_pointwise(plan):
        return False
    if plan.x != plan.nsp - 1 or plan.f >= plan.x - 1:      # NCHW: channel, row, column
        return False
    red = 1
    for e in plan.exts[plan.nsp:]:
        red *= e
    fext = plan.exts[plan.f]
    return red % cores == 0 and red >= SPLIT_K_MIN_RATIO * fext and fext % fi == 0


def _prefers_phase_rows(plan, lanes) -> bool:
    """Strided convolutions whose output rows are whole vectors: row vectors over column phases.

    The stems (3 input channels, 7x7 or 3x3 window, stride 2, 112 output
    columns) reduce over only 27-147 products per output: with channel vectors
    the transposing write-back of each 8-column x 32-channel tile costs as much
    as its arithmetic. Row vectors store straight into the NCHW output; the
    input is read from column-phase planes (:func:`_split_column_phases`).
    Measured (1 thread, AVX-512, same process): ResNet-18 stem 3->64 7x7
    1.73 -> 1.58 ms, MobileNetV2 stem 3->32 3x3 0.33 -> 0.25 ms.
    """
    return (plan.phase is not None and plan.exts[plan.x] % lanes == 0
            and plan.exts[plan.f] % 8 == 0)


def _is_pointwise(plan) -> bool:
    """A 1x1 window: at most one reduction loop (the input channels) longer than 1."""
    return len([e for e in plan.exts[plan.nsp:] if e > 1]) <= 1


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


def _column_stride(plan) -> int:
    """How many data elements one output column steps over (0: not a plain linear index)."""
    from tvm.sym.pattern import detect_linear_equation
    data = plan.mac.reads[plan.a]
    coef = detect_linear_equation(data.region[-1].min, [plan.mac.ivars[plan.x]])
    if len(coef) != 2 or not hasattr(coef[0], "value"):
        return 0
    return int(coef[0].value)


def _unit_stride(plan) -> bool:
    """The data operand steps by exactly one element per output column (contiguous vectors)."""
    return _column_stride(plan) == 1


def _phase_producer(sch, plan):
    """``(padding block, stride)`` when row vectors of a strided conv can read column phases.

    Strided convolutions read every ``s``-th padded column: a vector of output
    columns would be a gather. Laying the padding copy out as ``[.., row,
    column % s, column // s]`` (one plane per column phase, see
    :func:`_split_column_phases`) makes output column ``x`` at window offset
    ``rx`` read phase ``rx % s`` at ``x + rx // s``: contiguous again. Needs
    the data to come from a copy block of this kernel (the padding stage) whose
    last dimension is a multiple of ``s``, and the window offset along the row
    to enter the column index with coefficient 1. None otherwise.
    """
    from tvm.sym.pattern import detect_linear_equation
    stride = _column_stride(plan)
    if stride < 2:
        return None
    data = plan.mac.reads[plan.a]
    width = data.source.shape[-1]
    if not hasattr(width, "value") or int(width.value) % stride:
        return None
    producers = [blk for blk in sch.get_producers(plan.mac.block)
                 if sch.get(blk).writes[0].source.same_as(data.source)]
    if len(producers) != 1 or len(sch.get(producers[0]).writes) != 1:
        return None
    ivars = plan.mac.ivars
    for i in range(plan.nsp, len(ivars)):
        coef = detect_linear_equation(data.region[-1].min, [ivars[i]])
        if len(coef) == 2 and hasattr(coef[0], "value") and int(coef[0].value) not in (0, 1):
            return None
    return producers[0], stride


def _split_column_phases(sch, pad_block, stride: int, lanes: int) -> None:
    """Re-lay the padding copy as column phases (see :func:`_phase_producer`).

    The copy is split (``decompose_padding``) into a zero fill of the whole
    phase-laid buffer (contiguous vector stores) and an interior copy without
    bounds tests whose innermost loop walks the input row contiguously and
    writes the ``s`` phases in turn (an unrolled loop of ``s``): LLVM turns
    that into wide loads plus lane permutes. Both run in parallel over the
    outer loops (channels x rows).
    """
    from .cpu_common import static_extents
    from tvm.tirx import IndexMap
    ndim = len(sch.get(pad_block).writes[0].region)

    def phases(*idx):
        return list(idx[:-1]) + [idx[-1] % stride, idx[-1] // stride]
    sch.transform_layout(pad_block, ("write", 0), IndexMap.from_func(phases, ndim=ndim))
    blocks = [pad_block]
    try:
        blocks.insert(0, sch.decompose_padding(pad_block, sch.get_loops(pad_block)[0]))
    except Exception:       # not a recognisable padding pattern: one plain copy
        pass
    if len(blocks) == 2 and len(sch.get(blocks[0]).iter_vars) == ndim:
        try:    # the fill walks the phase planes in storage order
            sch.transform_block_layout(blocks[0], IndexMap.from_func(phases, ndim=ndim))
        except Exception:
            pass
    for blk in blocks:
        loops = sch.get_loops(blk)
        exts = static_extents(sch, loops)
        if not loops or exts is None:
            continue
        inner = loops[-1]
        if blk is pad_block and exts[-1] % stride == 0:
            inner, phase = sch.split(loops[-1], [None, stride])
            sch.unroll(phase)
        elif exts[-1] % lanes == 0:
            _, vec = sch.split(loops[-1], [None, lanes])
            sch.vectorize(vec)
        outer = list(loops[:-1])
        if len(outer) > ndim - 2 >= 1:
            # rows outermost: each thread pads the band of rows its conv tasks read
            # (the conv's tasks are row bands first too, see _split_parallel)
            row = outer[ndim - 2]
            sch.reorder(row, *outer[:ndim - 2])
            outer = [row] + outer[:ndim - 2] + outer[ndim - 1:]
        if outer:
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


FLAT_ORDERS = ("spatial", "channel")


def _flat_geometry(plan, lanes):
    """``(y loop, map width, map size)`` when the kernel can run in flat mode, else None.

    Flat mode needs a 1x1 stride-1 convolution reading its input directly: the
    data operand's last two dimensions are indexed by exactly the output row
    and column (plus window offsets of extent 1) and have the output's extents,
    so ``row * W + column`` walks ``H*W`` contiguous floats per channel; the
    output is indexed the same way. ``H*W`` must be a multiple of the vector
    width (no tail): 56x56, 28x28 and 112x112 maps qualify, 14x14 and 7x7 don't.
    """
    from tvm.sym.pattern import detect_linear_equation
    mac, exts, x = plan.mac, plan.exts, plan.x
    if x < 1 or x - 1 == plan.f or x - 1 >= plan.nsp:
        return None
    y = x - 1
    window = [e for e in exts[plan.nsp:] if e > 1]
    if len(window) > 1 or (exts[y] * exts[x]) % lanes or exts[x] < 2:
        return None
    ivars = mac.ivars
    unit_window = {ivars[i] for i in range(plan.nsp, len(exts)) if exts[i] == 1}
    data = mac.reads[plan.a]
    shape = [int(d) if hasattr(d, "__int__") else None for d in data.source.shape]
    if len(shape) < 2 or shape[-2:] != [exts[y], exts[x]]:
        return None
    for dim, i in ((-2, y), (-1, x)):
        coef = detect_linear_equation(data.region[dim].min, [ivars[i]])
        if len(coef) != 2 or not hasattr(coef[0], "value") or int(coef[0].value) != 1:
            return None
        if not vars_in(coef[1]) <= unit_window:
            return None
    # every other data dimension must be free of the row and column
    for rg in data.region[:-2]:
        if vars_in(rg.min) & {ivars[y], ivars[x]}:
            return None
    out = plan.out_region
    if len(out) < 2 or not out[-2].min.same_as(ivars[y]) or not out[-1].min.same_as(ivars[x]):
        return None
    return y, exts[x], exts[y] * exts[x]


def _flat_default(plan, lanes):
    """Flat-mode knob values for a kernel that allows it (see :func:`_flat_geometry`), else None.

    A register tile of about 16 accumulators (8 on 16-register ISAs): up to 4
    vectors along the flat map times as many output channels as fit. Measured
    (1 thread, AVX-512, MobileNetV2 shapes): 144->32 @56x56 4ch x 4 vectors
    0.59 -> 0.25 ms, 8 x 2 0.27-0.29 ms; 192->32 @28x28 (49 vectors: 1 per
    tile) 16ch 0.119 -> 0.075 ms. Spatial tiles go outermost: each input tile
    is fetched once for every channel tile.

    Tried (session 6): 8 channels x 1 vector instead of 16 x 1 on 28x28
    maps (a 1 KiB accumulator is allocated per tile from TVM's workspace
    pool, only smaller ones go on the stack): in MobileNetV2 144->32 ran
    0.91x, 192->32 + residual 1.01x, the whole model 1.000 (paired); not kept.
    """
    geo = _flat_geometry(plan, lanes)
    if geo is None:
        return None
    _, _, size = geo
    nvec = size // lanes
    budget = 16 if lanes >= 16 else 8
    nx = next(d for d in ((4, 2, 1) if lanes >= 16 else (2, 1)) if nvec % d == 0)
    fext = plan.exts[plan.f]
    fi = next(d for d in range(budget // nx, 0, -1) if fext % d == 0)
    red = 1
    for e in plan.exts[plan.nsp:]:
        red *= e
    if lanes >= 16 and (red <= 96 or nx == 1) and nvec % 7 == 0 and fext % 2 == 0:
        # short reductions: 2 channels x 7 vectors (a 896-byte tile, held in
        # registers); per-tile costs (zeroing, write-back) weigh more there.
        # A/B: 32->144 @56 0.50 -> 0.32 ms, 64->128 @28 0.115 -> 0.091 ms,
        # 32->16 @112 0.152 -> 0.130 ms; 144->32 @56 is faster with 4 x 4.
        # Maps of an odd number of vectors (28x28: 49) would otherwise get a
        # 16 x 1 tile, whose 1 KiB accumulator TVM allocates from its
        # workspace pool per tile (only smaller ones go on the stack):
        # nnef-tune's in-model selection kept 2 x 7 for MobileNetV2's 144->32
        # and 192->32 projections at 28x28 in every run (0.70-0.82x per kernel
        # in the model); as the default, whole model paired 0.978 / 0.985
        # (2 threads), 0.985 / 1.000 (1 thread), EfficientNet-B0 0.992 / 0.996.
        fi, nx = 2, 7
    return {"conv.channel_vector.vector": "flat", "conv.channel_vector.fi": fi,
            "conv.channel_vector.xt": nx * lanes, "conv.channel_vector.order": "spatial"}


def _channel_key(plan, setting, cores: int = 1) -> tuple:
    """(fi, xt, rows split, ..) -- what a channel_vector setting changes in the schedule."""
    fi = setting["conv.channel_vector.fi"]
    vector = setting.get("conv.channel_vector.vector", "f")
    split_k = setting.get("conv.channel_vector.split_k", 1)
    if vector == "f" and split_k > 1:     # tasks and rows do not apply either
        return fi, setting["conv.channel_vector.xt"], "split_k", split_k, \
            setting.get("conv.channel_vector.k_block", 0)
    if vector == "flat":              # tasks do not apply: every tile is a task
        return fi, setting["conv.channel_vector.xt"], "flat", \
            setting.get("conv.channel_vector.order", "spatial")
    tasks = max(1, setting["conv.channel_vector.tasks"])
    rest = [i for i in range(plan.nsp) if i not in (plan.f, plan.x)]
    count = plan.exts[plan.f] // fi
    for i in rest:
        if i < plan.f:
            count *= plan.exts[i]
    after = [plan.exts[i] for i in rest if i > plan.f]
    split = _row_split(count, after[0] if after else None, tasks, cores,
                       _phase_rows(plan, vector))
    return fi, setting["conv.channel_vector.xt"], split, vector, \
        setting.get("conv.channel_vector.yt", 1) if vector == "x" else 1, \
        setting.get("conv.channel_vector.k_block", 0) if vector == "f" else 0


# strided channel-vector convolutions with output rows at least this long split
# their tasks by row bands first
ROW_BANDS_MIN_WIDTH = 28


def _phase_rows(plan, vector) -> bool:
    """Whether the parallel tasks are row bands first (see :func:`_split_parallel`).

    Row vectors over column phases (the stems), and strided channel-vector
    convolutions with output rows of :data:`ROW_BANDS_MIN_WIDTH` or more:
    ResNet-18's downsampling convs (3x3 and 1x1, 64 -> 128, stride 2) read
    the 64@56 Winograd kernels' output, which is split by row halves; split
    by output channels, each thread read the rows the other core wrote (the
    1x1 ran slower on 2 threads than on 1). Whole model at 2 threads, paired:
    0.979 and 0.980. Narrower maps stay channel-first: the 7x7 convs ran
    1.2-2.2x slower row-first.
    """
    if vector == "f" and not _unit_stride(plan) and plan.exts[plan.x] >= ROW_BANDS_MIN_WIDTH:
        return True
    return vector == "x" and plan.phase is not None and not _unit_stride(plan)


def _rows_divisible(plan, setting, fi: int, yt: int, cores: int) -> bool:
    """Whether the rows left per parallel task split into tiles of ``yt`` rows."""
    if yt == 1:
        return True
    rest = [i for i in range(plan.nsp) if i not in (plan.f, plan.x)]
    after = [plan.exts[i] for i in rest if i > plan.f]
    if not after:
        return False
    split = _channel_key(plan, dict(setting, **{"conv.channel_vector.fi": fi,
                                                "conv.channel_vector.vector": "x"}), cores)[2]
    return (after[0] // max(1, split)) % yt == 0


def channel_vector_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_channel_vector` for this kernel, default first.

    Variants: for a flat 1x1 map (see :func:`_flat_geometry`) the other tile
    order and the flat register tiles of 4-24 accumulators; fewer / more
    parallel tasks, then every (channel factor, tile
    width) pair whose register tile fits the vector register file (at most 24
    accumulator vectors, 28 for a 1x1 window on AVX-512; at least 2), tile widths nearest the default first.
    """
    plan = _channel_plan(sch)
    if plan is None:
        return []
    default = _channel_defaults(plan, lanes, cores)
    if default is None:
        return []
    key_xt = "conv.channel_vector.xt"
    out = [default]
    seen = {_channel_key(plan, default, cores)}

    def add(**kw):
        cand = dict(default)
        cand.update({f"conv.channel_vector.{k}": v for k, v in kw.items()})
        kb = cand.get("conv.channel_vector.k_block", 0)
        if kb and not _k_block_fits(plan, cand, kb, cores):
            cand["conv.channel_vector.k_block"] = 0     # a variant the blocks do not fit
        key = _channel_key(plan, cand, cores)
        if key not in seen:           # settings that schedule identically are listed once
            seen.add(key)
            out.append(cand)

    geo = _flat_geometry(plan, lanes)
    if geo is not None:
        # flat 1x1 map: the other tile order, then register tiles of 4-24 accumulators
        flip = {"spatial": "channel", "channel": "spatial"}
        base = _flat_default(plan, lanes)
        add(**{k.rsplit(".", 1)[1]: v for k, v in base.items()})
        add(vector="flat", fi=base["conv.channel_vector.fi"],
            xt=base["conv.channel_vector.xt"], order=flip[base["conv.channel_vector.order"]])
        nvec = geo[2] // lanes
        tiles = [(fi, nx) for nx in (1, 2, 4, 7) for fi in (1, 2, 4, 8, 16, 32)
                 if nvec % nx == 0 and plan.exts[plan.f] % fi == 0 and 4 <= fi * nx <= 24]
        for fi, nx in sorted(tiles, key=lambda t: (abs(t[0] * t[1] - 16), -t[1])):
            add(vector="flat", fi=fi, xt=nx * lanes, order=base["conv.channel_vector.order"])
    if default.get("conv.channel_vector.k_block", 0):
        add(k_block=0)                  # rows one after the other (the usual order)
    # (a split-K default is never offered unsplit: its gain is in-model data
    # locality, which a standalone tuning measurement cannot see)
    if default.get("conv.channel_vector.split_k", 1) == 1 and \
            default["conv.channel_vector.vector"] == "f" and cores > 1 and _is_pointwise(plan):
        add(split_k=cores)
    add(tasks=cores)
    add(tasks=16 * cores)
    xext = plan.exts[plan.x]
    if plan.phase is not None and xext % lanes == 0:
        # strided row vectors over column phases: channels x rows per register tile
        for fi, yt in ((8, 2), (16, 1), (4, 4), (8, 1), (4, 2)):
            if plan.exts[plan.f] % fi == 0 and _rows_divisible(plan, default, fi, yt, cores):
                add(vector="x", fi=fi, xt=lanes, yt=yt)
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
            if 2 <= regs <= (28 if _is_pointwise(plan) and lanes >= 16 else 24):
                add(fi=fi, xt=xt)
    return out


def _schedule_flat(sch, plan, fi_factor: int, xt: int, order: str, lanes: int) -> bool:
    """Flat mode (see module docstring): row x column fused into one contiguous axis.

    The block itself is re-indexed over ``p = row * W + column`` (and its
    accumulator and write-back with it), so every tile covers an exact range
    of ``p``: after buffer flattening ``x[c, p // W, p % W]`` simplifies to the
    contiguous ``x[c * H * W + p]``. Loop nest: one parallel loop over
    (spatial tile, channel tile) pairs, then the reduction, then ``fi``
    channels (unrolled, weights broadcast) x ``xt / lanes`` vectors (unrolled)
    x ``lanes`` (vectorised).
    """
    from tvm.tirx import IndexMap
    geo = _flat_geometry(plan, lanes)
    if geo is None or order not in FLAT_ORDERS:
        return False
    y, width, size = geo
    mac, exts, f, x, b = plan.mac, plan.exts, plan.f, plan.x, plan.b
    if fi_factor < 1 or exts[f] % fi_factor or xt % lanes or size % xt:
        return False
    fdim = plan.fdim
    b_read = mac.read_pos[b]
    ndim = len(mac.dim_vars[b])

    def tiled(*idx):          # [channel tile, other dims.., channel in tile]
        return [idx[fdim] // fi_factor] + [idx[i] for i in range(ndim) if i != fdim] + \
            [idx[fdim] % fi_factor]
    if weight_is_layout_free(sch, mac.reads[b].source):
        pack_weight_once(sch, mac.block, b_read, tiled)
    else:                     # packed once per call, before the kernel (all tasks share it)
        packed = sch.cache_read(mac.block, b_read, "global")
        sch.transform_layout(packed, ("write", 0), tiled)
    # accumulator in "global" scope: TVM 0.27 lowers a CPU allocation under 1 KiB
    # to a stack array only in that scope (LLVM then keeps it in registers: no
    # per-task TVMBackendAllocWorkspace + memset as for "local"); 7-9% faster
    # in A/B for 512- and 896-byte tiles
    wb = sch.cache_write(mac.block, 0, knob("conv.channel_vector.acc_scope", "global"))
    nout = len(sch.get(mac.block).writes[0].region)

    def flat_out(*idx):
        return list(idx[:-2]) + [idx[-2] * width + idx[-1]]

    def flat_iters(*iv):
        return list(iv[:y]) + [iv[y] * width + iv[x]] + list(iv[x + 1:])
    sch.transform_layout(mac.block, ("write", 0), IndexMap.from_func(flat_out, ndim=nout))
    sch.transform_block_layout(mac.block, IndexMap.from_func(flat_iters, ndim=len(exts)))
    sch.transform_block_layout(wb, IndexMap.from_func(flat_out, ndim=nout))
    loops = sch.get_loops(mac.block)
    nsp = plan.nsp - 1                     # row and column are one loop now (at y)
    others = [loops[i] for i in range(nsp) if i not in (f, y)]
    reds = list(loops[nsp:])
    po, pv, pl = sch.split(loops[y], [None, xt // lanes, lanes])
    fo, fi = sch.split(loops[f], [None, fi_factor])
    tiles = (po, fo) if order == "spatial" else (fo, po)
    sch.reorder(*others, *tiles, *reds, fi, pv, pl)
    par = sch.fuse(*others, *tiles)
    sch.parallel(par)
    sch.reverse_compute_at(wb, par)
    sch.vectorize(pl)
    sch.unroll(pv)
    sch.unroll(fi)
    sch.decompose_reduction(mac.block, reds[0])
    _finish(sch, mac.block, wb, lanes)
    return True


def schedule_channel_vector(sch, lanes: int, cores: int) -> bool:
    """Direct convolution vectorised over output channels (see module docstring).

    Knobs (``conv.channel_vector.*``): ``fi`` output channels per register
    tile, ``xt`` output columns per register tile, ``tasks`` the parallel task
    count to reach before rows are shared out too, ``split_k`` the number of
    input-channel slices reduced in parallel (1: none; channel vectors only,
    see :func:`_schedule_split_k`), ``vector`` the axis the SIMD
    vector runs along ("f": output channels, weights packed channel-innermost
    and the input broadcast; "x": output columns, weights broadcast; "flat":
    like "x" over the flattened map, see :func:`_schedule_flat`). Row vectors
    only: ``yt`` output rows per register tile (a strided conv reads column
    phases, see :func:`_phase_producer`; ``xt`` is then a multiple of the
    vector width). Flat mode only: ``order`` which tile index is outermost in
    the parallel loop ("spatial" or "channel"). ``acc_scope`` the
    accumulator's storage scope ("global": a stack array, kept in registers,
    when under 1 KiB; the flat mode's default, "local" elsewhere). Channel
    vectors only: ``k_block`` input channels per block when each task computes
    whole planes, blocks outermost (0: one output row after the other, see
    :func:`_k_block_default`); ``prefetch`` (1x1 windows, packed constant
    weights) 1: prefetch the next weight block, see :func:`_prefetch_weights`
    (not in the knob space: like split-K, its gain is in-model, with cold
    weights, which a standalone measurement does not see).
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
    vector = knob("conv.channel_vector.vector", defaults.get("conv.channel_vector.vector", "f"))
    if vector == "flat":
        order = knob("conv.channel_vector.order", defaults.get("conv.channel_vector.order",
                                                                 "spatial"))
        return _schedule_flat(sch, plan, fi_factor, xt, order, lanes)
    along_x = vector == "x"
    split_k = int(knob("conv.channel_vector.split_k", defaults.get("conv.channel_vector.split_k", 1)))
    kblock = int(knob("conv.channel_vector.k_block", defaults.get("conv.channel_vector.k_block", 0)))
    if split_k > 1 and not along_x:
        return _schedule_split_k(sch, plan, fi_factor, xt, split_k, lanes, kblock)
    mac, loops, exts, nsp = plan.mac, plan.loops, plan.exts, plan.nsp
    f, x, fdim, b = plan.f, plan.x, plan.fdim, plan.b
    if exts[f] % fi_factor or exts[x] % xt:
        return False
    if along_x and not _unit_stride(plan):
        if plan.phase is None or xt % lanes:
            return False
        _split_column_phases(sch, *plan.phase, lanes)
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
    par, row_rest = _split_parallel(sch, before_f + [fo], before_f_exts + [exts[f] // fi_factor],
                                    row, row_ext, tasks=max(1, tasks), cores=cores,
                                    rows_first=_phase_rows(plan, vector))
    yt = int(knob("conv.channel_vector.yt", defaults.get("conv.channel_vector.yt", 1))) \
        if along_x else 1
    if yt > 1:
        # several output rows per register tile (row vectors only): each weight
        # broadcast then feeds yt vectors
        if row_rest is None or int(sch.get(row_rest).extent) % yt:
            return False
        _, yi = sch.split(row_rest, [None, yt])
        sch.reorder(xo, *reds, fi, yi, xi)
        sch.unroll(yi)
    red_at, wb_at = reds[0], xo
    if kblock and not along_x:
        # whole planes per task, input channels in blocks outermost (_k_block_default)
        setting = {"conv.channel_vector.fi": fi_factor, "conv.channel_vector.xt": xt,
                   "conv.channel_vector.tasks": tasks, "conv.channel_vector.vector": vector,
                   "conv.channel_vector.split_k": split_k}
        if not _k_block_fits(plan, setting, kblock, cores) or row_rest is None:
            return False
        kred = next(i for i, e in enumerate(exts[nsp:]) if e > 1)
        rco, rci = sch.split(reds[kred], [None, kblock])
        sch.reorder(rco, row_rest, xo, rci)
        red_at, wb_at = rco, par
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
    wb = sch.cache_write(mac.block, 0, knob("conv.channel_vector.acc_scope", "local"))
    nout = len(sch.get(mac.block).writes[0].region)
    out_f = _out_dim_of(sch, mac.block, mac.ivars[f])
    if out_f is not None and not along_x:
        operm = [i for i in range(nout) if i != out_f] + [out_f]
        sch.transform_layout(mac.block, ("write", 0), lambda *idx: [idx[i] for i in operm])
    sch.reverse_compute_at(wb, wb_at)
    if along_x and xt > lanes and xt % lanes == 0:
        # several vectors of columns per channel (unrolled), each lanes wide
        xv, xl = sch.split(xi, [None, lanes])
        sch.vectorize(xl)
        sch.unroll(xv)
    else:
        sch.vectorize(xi if along_x else fi)
    sch.unroll(fi if along_x else xi)
    sch.decompose_reduction(mac.block, red_at)
    _finish(sch, mac.block, wb, lanes)
    if int(knob("conv.channel_vector.prefetch", defaults.get("conv.channel_vector.prefetch", PREFETCH))) \
            and not along_x and _is_pointwise(plan) and row_rest is not None \
            and weight_is_layout_free(sch, weight):
        _add_prefetch(sch, mac.block, row_rest, kblock or max(plan.exts[plan.nsp:]))
    return True


# software prefetch of the next weight block (see _prefetch_weights): 1 on, 0 off
PREFETCH = 1
PREFETCH_ANNOTATION = "nnef.prefetch_weights"


def _prefetch_weights(sch, block, row_loop, steps: int, count: int = 0) -> bool:
    """Software prefetch of the weights the task reads ``steps`` reduction steps on.

    Why: a model's weights do not stay in L2 from one run to the next (MobileNetV2's
    14 MB), so each task's first pass over a weight tile streams it from L3
    while the FMAs wait, and the hardware prefetcher restarts at every 4 KiB
    page. The packed tile ``[channel tile, input channel, .., channel in tile]``
    is contiguous, so the weights ``steps`` input channels on (the next
    k-block, or with ``steps`` = all input channels the next channel tile,
    which the same thread computes next: TVM's pool hands each thread a
    contiguous range of tasks) start ``steps * fi`` floats further; the
    ``count`` steps from there (default: ``steps``; a split-K task reads one
    slice of the next tile) are prefetched, their cache lines spread over the
    iterations of ``row_loop`` (a few ``prefetcht0`` at the top of each row),
    outside the reduction loop: a prefetch call inside it kept LLVM from
    holding the accumulators in registers (the call may touch memory, as far
    as LLVM knows; every accumulator stored each step: 2x slower).

    Measured (paired ab_libs, session 7, AVX-512): standalone with L2 evicted
    between calls 160->960 @7 0.91x (hot 0.96x), 96->576 @14 1.00x; in
    MobileNetV2 per kernel at 2 threads 320->1280 @7 0.73-0.77x, 960->320
    0.76x, 960->160 0.77-0.80x, 160->960 0.80-0.83x, 96->576 @14 0.94-0.95x,
    64->384 @14 0.95x, split-K 14x14 projections 0.99-1.01x; at 1 thread the
    7x7 ones 0.67-0.76x. Whole models: MobileNetV2 0.949 / 0.953 (2 threads,
    q1-q3 0.92-0.98), 0.917 / 0.917 (1 thread, q1-q3 0.905-0.929),
    EfficientNet-B0 0.940 (2 threads), ResNet-18 0.996 (within noise).
    """
    from tvm import tirx
    from tvm.sym import Analyzer
    loops = sch.get_loops(block)
    pos = next((i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(row_loop))), None)
    realize = sch.get(loops[-1]).body
    if pos is None or type(realize).__name__ != "SBlockRealize":
        return False
    blk = realize.block
    # the reduction loop: the first loop inside row_loop feeding a reduction index
    red_feed = set()
    for iv, val in zip(blk.iter_vars, realize.iter_values):
        if int(iv.iter_type) == 2 and int(iv.dom.extent) > 1:
            red_feed |= vars_in(val)
    red_var = next((sch.get(lp).loop_var for lp in loops[pos + 1:]
                    if sch.get(lp).loop_var in red_feed), None)
    if red_var is None:
        return False
    ana = Analyzer()
    for lp in loops[pos + 1:]:
        var = sch.get(lp).loop_var
        ana.bind(var, tirx.const(0, str(var.ty)))
    red_ivars = set()
    for iv, val in zip(blk.iter_vars, realize.iter_values):
        if red_var in vars_in(val):
            red_ivars.add(iv.var)
        ana.bind(iv.var, val)
    weight = None        # the packed tile: its one dimension indexed by the reduction
    for rg in blk.reads:
        uses = [i for i, r in enumerate(rg.region) if vars_in(r.min) & red_ivars]
        if len(uses) == 1 and uses[0] < len(rg.region) - 1 and rg.source.name.endswith("global"):
            weight = (rg.source, [ana.simplify(r.min) for r in rg.region], uses[0])
    if weight is None:
        return False
    buf, idx, kdim = weight
    row = 1                      # floats per reduction step
    for d in buf.shape[kdim + 1:]:
        row *= int(d)
    rows = int(sch.get(row_loop).extent)
    lines = -(-(count or steps) * row // 16)
    per_row = -(-lines // rows)
    rvar = sch.get(row_loop).loop_var
    stmts = []
    for j in range(per_row):
        at = list(idx)
        at[kdim] = at[kdim] + steps
        at[-1] = at[-1] + (rvar * per_row + j) * 16
        addr = tirx.address_of(tirx.BufferLoad(buf, at))
        stmts.append(tirx.Evaluate(tirx.call_llvm_intrin(
            "void", "llvm.prefetch.p0", addr, tirx.IntImm("int32", 0),
            tirx.IntImm("int32", 3), tirx.IntImm("int32", 1))))
    old = sch.get(row_loop)
    ann = {k: v for k, v in old.annotations.items() if k != PREFETCH_ANNOTATION}
    new = tirx.For(old.loop_var, old.min, old.extent, old.kind,
                   tirx.SeqStmt(stmts + [old.body]), old.thread_binding, ann)
    sch.state.replace(sch.get_sref(row_loop), new, {})
    return True


def _add_prefetch(sch, block, row_loop, steps: int, count: int = 0) -> None:
    """Prefetch the weights ``steps`` reduction steps ahead (:func:`_prefetch_weights`).

    The statements are not a schedule primitive: a traced annotation of
    ``row_loop`` (:data:`PREFETCH_ANNOTATION`: ``[steps, count]``) records them, so
    that a replayed trace (a tuned record) gets them back through
    :func:`materialize_prefetch`.
    """
    sch.annotate(row_loop, PREFETCH_ANNOTATION, [steps, count or steps])
    _prefetch_weights(sch, block, row_loop, steps, count)


def materialize_prefetch(func):
    """``func`` with the prefetches its :data:`PREFETCH_ANNOTATION` loops ask for.

    For kernels scheduled by replaying a trace (tuned records): the rule
    itself inserts them right away (:func:`_add_prefetch`). Loops already
    holding theirs carry no annotation any more, so running it twice is harmless.
    """
    from tvm import s_tir
    from .cpu_common import root_blocks
    try:
        sch = s_tir.Schedule(func)
    except Exception:   # not a schedulable function (e.g. a MetaSchedule record whose
        return func     # replay TVM itself does not re-verify): it has no prefetch to add
    done = False
    for blk in root_blocks(sch):
        for lp in sch.get_loops(blk):
            ann = sch.get(lp).annotations.get(PREFETCH_ANNOTATION)
            if ann is not None:
                done = _prefetch_weights(sch, blk, lp, int(ann[0]), int(ann[1])) or done
                break
    return sch.mod["main"] if done else func

def _schedule_split_k(sch, plan, fi_factor: int, xt: int, parts: int, lanes: int,
                      kblock: int = 0) -> bool:
    """Channel vectors with the input channels split into ``parts`` parallel slices.

    Why: see :func:`_split_k_pays`. Two stages in the one kernel:

    1. ``rfactor`` over the input channels: partial sums
       ``C_rf[slice, n, o, y, x]``, computed like the channel-vector kernel
       (register tile of ``fi`` output channels x ``xt`` columns, weights
       packed channel-innermost) with one parallel task per (slice, image,
       channel tile), slice outermost: with ``parts`` = the core count,
       thread ``t`` (TVM's pool gives each thread one contiguous share) reads
       input slice ``t`` only, the channels its own depthwise tasks wrote.
    2. The slices summed (``parts`` loads per output, unrolled) and the
       elementwise epilogue (bias, residual, clamp) applied, parallel over
       (image, output channel), vectorised over the output plane.

    Only for the NCHW layout this rule sees in convolutions: the output
    channel loop before a row loop before the column loop (innermost), and a
    single reduction loop longer than 1 (the input channels).
    """
    mac, loops, exts, nsp = plan.mac, plan.loops, plan.exts, plan.nsp
    f, x, b, fdim = plan.f, plan.x, plan.b, plan.fdim
    reds = [i for i in range(nsp, len(exts)) if exts[i] > 1]
    if len(reds) != 1 or exts[reds[0]] % parts or exts[f] % fi_factor or exts[x] % xt:
        return False
    if x != nsp - 1 or f >= x - 1:
        return False
    ko, _ = sch.split(loops[reds[0]], [parts, None])
    rf = sch.rfactor(ko, factor_axis=0)
    final = mac.block
    # ---- stage 1: partial sums; rf loops = original spatial loops, then ko, the rest
    rloops = sch.get_loops(rf)
    sp = rloops[:nsp]
    kol, kil = rloops[nsp], rloops[nsp + 1]
    window = rloops[nsp + 2:]
    fo, fi = sch.split(sp[f], [None, fi_factor])
    xo, xi = sch.split(sp[x], [None, xt])
    before_f = [sp[i] for i in range(f)]
    after_f = [sp[i] for i in range(f + 1, x)]
    sch.reorder(kol, *before_f, fo, *after_f, xo, kil, *window, xi, fi)
    par = sch.fuse(kol, *before_f, fo)
    sch.parallel(par)
    red_at, wb_at = kil, xo
    if kblock:
        # input channels of the slice in blocks above the rows (see _k_block_default)
        setting = {"conv.channel_vector.fi": fi_factor, "conv.channel_vector.xt": xt,
                   "conv.channel_vector.vector": "f", "conv.channel_vector.split_k": parts}
        if not _k_block_fits(plan, setting, kblock, 1) or not after_f:
            return False
        kbo, kbi = sch.split(kil, [None, kblock])
        sch.reorder(kbo, *after_f, xo, kbi)
        red_at, wb_at = kbo, par
    weight = mac.reads[b].source
    b_read = next(i for i, rg in enumerate(sch.get(rf).reads) if rg.source.same_as(weight))
    ndim = len(mac.dim_vars[b])
    if weight_is_layout_free(sch, weight):
        def tiled(*idx):
            return [idx[fdim] // fi_factor] + [idx[i] for i in range(ndim) if i != fdim] + \
                [idx[fdim] % fi_factor]
        pack_weight_once(sch, rf, b_read, tiled)
    wb = sch.cache_write(rf, 0, "local")
    # the accumulator tile channel-innermost (one vector register per column)
    nout = len(sch.get(rf).writes[0].region)
    out_f = _out_dim_of(sch, rf, sch.get(rf).iter_vars[f + 1].var)
    if out_f is not None:
        operm = [i for i in range(nout) if i != out_f] + [out_f]
        sch.transform_layout(rf, ("write", 0), lambda *idx: [idx[i] for i in operm])
    sch.reverse_compute_at(wb, wb_at)
    sch.vectorize(sch.get_loops(wb)[-1])
    sch.vectorize(fi)
    sch.unroll(xi)
    sch.decompose_reduction(rf, red_at)
    _sum_slices(sch, final, f, nsp, lanes)
    if int(knob("conv.channel_vector.prefetch", PREFETCH)) and after_f and \
            weight_is_layout_free(sch, weight):
        # the next k-block of the slice, or the slice of the next channel tile
        slice_k = exts[reds[0]] // parts
        _add_prefetch(sch, rf, after_f[0], kblock or slice_k * parts, kblock or slice_k)
    return True


def _sum_slices(sch, final, f: int, nsp: int, lanes: int) -> None:
    """Split-K stage 2: sum of the slices + epilogue, one task per (image, output channel)."""
    floops = sch.get_loops(final)
    chan, plane, fko = floops[:f + 1], floops[f + 1:nsp], floops[nsp]
    sch.fuse(*plane)
    cpar = sch.fuse(*chan) if len(chan) > 1 else chan[0]
    sch.parallel(cpar)
    # the slices' loop stays inside a reduction block (TVM cannot vectorise
    # around it): unrolled, LLVM vectorises the plane loop of plain adds
    sch.unroll(fko)
    for cons in list(sch.get_consumers(final)):
        sch.reverse_compute_at(cons, cpar)
        rest = sch.get_loops(cons)[1:]
        if rest:
            _vectorize_plane(sch, sch.fuse(*rest) if len(rest) > 1 else rest[0], lanes)


def _vectorize_plane(sch, loop, lanes: int) -> None:
    """Vectorise ``loop`` by ``lanes`` (whole when at most one vector; a guarded tail otherwise)."""
    from .cpu_common import static_extents
    ext = static_extents(sch, [loop])
    if not ext:
        return
    if ext[0] > lanes:
        _, loop = sch.split(loop, [None, lanes])
    sch.vectorize(loop)
