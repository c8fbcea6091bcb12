"""CPU rule ``conv_spatial_vector``: depthwise / grouped convolution vectorised along the width.

The output channel indexes the data too (depthwise, grouped), so there is no
channel vector to broadcast into: the vector runs along the output's innermost
spatial axis instead, with the same register-accumulator structure as
:mod:`.conv_channel_cpu`. A convolution strided along the width reads its
padded input stored by column phase, so its vectors stay contiguous loads.

Measured and rejected for the stride-2 layers (session 7, paired A/B per
kernel on AVX-512): phase rows aligned to 64 B (``storage_align``) 1.03-1.5x
slower; the phase copy vectorised over the destination (TVM scalarises the
stride-2 loads) slower; 7-wide rows over a stack plane (chunk 1, zero fill
left to LLVM's memset idiom) still read stale denormal lanes, 7.3x slower;
``pad_einsum`` (8-wide rows for 7-wide outputs) refuses the strided read;
``loop_partition`` of the strip loop crashes TVM 0.27. Where the time goes:
112x112 -> 56x56 (1 thread) about 55% in the phase copy (mostly waiting for
the input from L3, 2 of 4 lane permutes per 32 floats, 256-bit stores),
10-13% in the zero fill, the rest in the FMAs; 14x14 -> 7x7: 60% FMAs whose
7-lane operands load as 4 + 2 + 1 floats from a workspace plane.

Tile choices are tuning knobs
(``conv.spatial_vector.{xt,yt,phase_split,border_parts,chunk,strip,acc_scope,
unroll_window}``);
:func:`spatial_vector_space` lists the valid settings of one kernel, the
default first.
"""
from __future__ import annotations

from .conv_cpu import _divisor_at_most, _finish, _mac_block, _static_mac_nest
from .cpu_common import knob, static_extents, vars_in


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


def _plan(sch):
    """``(mac, loops, extents, spatial loop count, x, y)`` of a depthwise / grouped conv, or None.

    ``x`` is the innermost spatial loop (it must index the output), ``y`` the
    output row loop above it (None for a 1-D convolution).
    """
    nest = _static_mac_nest(sch)
    if nest is None:
        return None
    mac, loops, exts, nsp = nest
    out_vars = set()
    for rg in sch.get(mac.block).writes[0].region:
        out_vars |= vars_in(rg.min)
    x = None
    for i in reversed(range(nsp)):
        if exts[i] > 1 and mac.ivars[i] in out_vars:
            x = i
            break
    if x is None or x != nsp - 1:
        return None
    y = x - 1 if x >= 1 and mac.ivars[x - 1] in out_vars else None
    return mac, loops, exts, nsp, x, y


# Output rows whose vectors one register tile holds at most (accumulators) for
# rows wider than one vector: measured on AVX-512 (A/B per MobileNetV2 /
# EfficientNet-B0 layer), a 5x5 window with 8 accumulators spills (28-wide
# rows x 4: 1.9-2.7x slower), with 4 it runs 1.3-2x faster than 1 row.
TILE_VECTORS_SMALL_WINDOW = 8        # windows up to 3x3
TILE_VECTORS_LARGE_WINDOW = 4
WHOLE_ROW_MAX_VECTORS = 4            # rows up to 4 vectors wide are one tile (xt = width)
ONE_VECTOR_TILE_ROWS = 7             # rows of a one-vector-wide tile (3x3 and 5x5 windows)


def default_tile(width: int, height: int, window: int, lanes: int) -> tuple:
    """``(xt, yt)``: output columns x rows of one register tile.

    A row up to :data:`WHOLE_ROW_MAX_VECTORS` vectors wide (7, 14, 28, 56
    floats on AVX-512) is one tile column, its ragged end one partial vector
    instead of a 14-wide vector four times; several rows share each loaded
    input row (a 3x3 window reads each input row for three output rows). Wider
    rows get one-vector tile columns. A one-vector-wide tile under a 3x3
    window stacks up to :data:`ONE_VECTOR_TILE_ROWS` rows: 9 input rows then
    feed 7 output rows instead of 3 each (and a 14-float row is loaded as
    8 + 4 + 2 floats, so every load saved counts thrice): 14x14 and 112x112
    layers 1.2-1.35x in A/B at 1 and 2 threads, 7x7 ones the same or better.
    Under a 5x5 window too (its loops unrolled, :func:`default_unroll_window`:
    11 input rows feed 7 output rows instead of 6 feeding 2): EfficientNet-B0's
    14x14 outputs, paired A/B with the SiLU epilogue, 0.85x at 1 thread and
    0.77-0.89x at 2 (stride 1 and 2) against 2 rows; seven accumulators one
    vector each do not spill where eight two-vector ones (28 wide) do.
    """
    if width > WHOLE_ROW_MAX_VECTORS * lanes:
        xt = _divisor_at_most(width, lanes)
        return xt, _one_vector_rows(height) if window <= 9 else 1
    per_row = -(-width // lanes)
    if per_row == 1:
        return width, _one_vector_rows(height)
    budget = TILE_VECTORS_SMALL_WINDOW if window <= 9 else TILE_VECTORS_LARGE_WINDOW
    if height * per_row <= TILE_VECTORS_SMALL_WINDOW:
        return width, height              # a 7x7 plane: all rows in one tile
    yt = max((d for d in range(1, height + 1) if height % d == 0 and d * per_row <= budget),
             default=1)
    return width, yt


def _one_vector_rows(height: int) -> int:
    """Rows of a one-vector-wide 3x3 tile: the largest divisor of ``height`` up to 7."""
    return max(d for d in range(1, min(height, ONE_VECTOR_TILE_ROWS) + 1) if height % d == 0)


def default_acc_scope(xt: int, lanes: int) -> str:
    """Storage scope of the register tile's accumulator.

    TVM lowers a ``"local"`` buffer inside a parallel task to a workspace
    allocation per task, a small ``"global"`` one to a stack array, which LLVM
    keeps in registers when the rows are one vector wide: then ``"global"``
    saves the allocation (7x7 / 14x14 layers 1.03-1.23x in A/B). Wider rows
    (28, 56 columns, partial vectors) measured up to 1.7x slower that way.
    """
    return "global" if xt <= lanes else "local"


def default_unroll_window(xt: int, window: int, lanes: int) -> bool:
    """Whether the kernel window's loops are unrolled around the register tile.

    Unrolled, the tile's rows share each input vector across the window's
    rows (a 7x7 tile under a 5x5 window loads 11 x 5 input vectors instead of
    7 x 25, each 7-float load costing three), where LLVM leaves a 5x5 loop
    rolled: 7x7 planes with a 5x5 window 2.0-2.15x (stride 1) and 1.48x
    (stride 2) in A/B at 1 and 2 threads, 14x14 ones unchanged. A 3x3 window
    LLVM unrolls itself; tiles wider than one vector measured 0.6-0.8x
    unrolled (code size, spills).
    """
    return window > 9 and xt <= lanes


def _defaults(sch, plan, lanes: int, cores: int) -> dict:
    """The default knob setting of one kernel (measured on AVX-512, see the helpers)."""
    mac, _, exts, nsp, x, y = plan
    pads = list(sch.get_producers(mac.block))
    out_ch = _out_channels(plan)
    window = 1
    for e in exts[nsp:]:
        window *= e
    xt, yt = default_tile(exts[x], exts[y] if y is not None else 1, window, lanes)
    strip = _default_strip(sch, mac, exts, y, yt)
    unroll = default_unroll_window(xt, window, lanes)
    chunk = 1
    if not strip:
        chunk = _default_chunk_of(sch, mac, pads, out_ch, nsp - 2, x, cores, off_stack=unroll)
        if unroll and _planes_on_stack(sch, plan, pads, chunk, strip):
            unroll = False          # no task size keeps the planes off the stack
            chunk = _default_chunk_of(sch, mac, pads, out_ch, nsp - 2, x, cores)
    return {"conv.spatial_vector.xt": xt,
            "conv.spatial_vector.yt": yt,
            "conv.spatial_vector.acc_scope": default_acc_scope(xt, lanes),
            "conv.spatial_vector.unroll_window": unroll,
            "conv.spatial_vector.phase_split": True,
            "conv.spatial_vector.border_parts": default_border_parts(sch, pads, lanes, strip),
            "conv.spatial_vector.chunk": chunk,
            "conv.spatial_vector.strip": strip}


def default_border_parts(sch, pads, lanes: int, strip: int) -> bool:
    """Whether a column-phase plane is copied in border / interior parts (:func:`_copy_in_parts`).

    Yes for a whole plane (no ``strip``) whose padded rows are wider than 1.5
    vectors: paired A/B per kernel in the model, MobileNetV2's 28x28 -> 14x14
    layer 0.91-0.96x, its 56x56 -> 28x28 one 0.96-0.98x, EfficientNet-B0's
    28x28 -> 14x14 0.96-0.97x and 56x56 5x5 one 0.99-1.00x (1 and 2 threads).
    Not for 16- or 18-wide planes (14x14 inputs; 1.00-1.03x: a zero fill of
    two or three phase vectors a row costs less than the scalar border loops),
    nor for strips (112x112 inputs, 0.99-1.03x: a strip's rows keep their
    bounds test).
    """
    if not pads or strip:
        return False
    shape = sch.get(pads[0]).writes[0].source.shape
    return bool(shape) and hasattr(shape[-1], "value") and 2 * int(shape[-1].value) > 3 * lanes


def _out_channels(plan) -> int:
    """Output channels: the extent of the loop fused last into the parallel loop (1 if none)."""
    _, _, exts, _, x, y = plan
    nchan = y if y is not None else x
    return exts[nchan - 1] if nchan >= 2 else 1


def _planes_on_stack(sch, plan, pads, chunk: int, strip: int) -> bool:
    """Whether one task's whole padded planes fit TVM's stack limit (see :func:`default_chunk`).

    An unrolled window (:func:`default_unroll_window`) must not read such a
    plane: LLVM then knows the array's size and widens the ragged last
    loads of each row by a lane, past the plane into stack bytes nothing
    wrote -- at random a denormal, whose multiplies then cost a microcode
    assist each (measured 10x slower for 7x7 planes under 5x5, 1 channel a
    task; the same kernel under flush-to-zero, or with 4 channels a task in
    a workspace, ran at full speed).
    """
    if strip or not pads:
        return False
    mac, _, _, nsp, _, _ = plan
    shape = sch.get(pads[0]).writes[0].source.shape
    nlead = len(shape) - (nsp - 2)
    if nlead < 1:
        return False
    per_plane = max(1, _out_channels(plan) // max(1, int(shape[nlead - 1])))
    planes = max(1, chunk // per_plane)
    return planes * _plane_bytes(sch, pads[0], nlead) <= STACK_ALLOCA_BYTES


def spatial_vector_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_spatial_vector`, default first.

    Then: pad strips on / off and other strip heights, channels per task,
    the other accumulator scope, the window unrolled or not (never an
    unrolled window over a stack-resident plane, :func:`_planes_on_stack`),
    for strided convolutions the zero fill + copy instead of the border /
    interior parts (:func:`_copy_in_parts`) and the column-phase layout
    switched off, vector
    widths (divisors of the output width up to two vectors) and rows per
    register tile (divisors of the output height).
    """
    plan = _plan(sch)
    if plan is None:
        return []
    mac, _, exts, nsp, x, y = plan
    pads = list(sch.get_producers(mac.block))
    base = _defaults(sch, plan, lanes, cores)
    xext = exts[x]
    default = base["conv.spatial_vector.xt"]
    if default < 2:
        return []
    out = [base]

    def add(**kw):
        cand = dict(base)
        cand.update({f"conv.spatial_vector.{k}": v for k, v in kw.items()})
        strip = cand["conv.spatial_vector.strip"]
        if strip and (cand["conv.spatial_vector.chunk"] > 1
                      or strip % cand["conv.spatial_vector.yt"]):
            return              # combinations the rule refuses
        if cand["conv.spatial_vector.unroll_window"] and \
                _planes_on_stack(sch, plan, pads, cand["conv.spatial_vector.chunk"], strip):
            return
        if cand not in out:
            out.append(cand)

    if y is not None:
        oh = exts[y]
        strips = [d for d in range(2, oh) if oh % d == 0
                  and d % base["conv.spatial_vector.yt"] == 0]
        strip0 = base["conv.spatial_vector.strip"]
        if strip0:
            add(strip=0)
        for d in sorted(strips, key=lambda d: abs(d - (strip0 or 16)))[:3]:
            add(strip=d)
    chunk0 = base["conv.spatial_vector.chunk"]
    if chunk0 > 1:
        add(chunk=1)
    if y is not None and y >= 2:
        ch = exts[y - 1]
        for c in (2, 4, 8):
            if ch % c == 0 and c != chunk0:
                add(chunk=c, strip=0)
    add(acc_scope="local" if base["conv.spatial_vector.acc_scope"] == "global" else "global")
    add(unroll_window=not base["conv.spatial_vector.unroll_window"])
    if _is_strided(sch):
        add(border_parts=not base["conv.spatial_vector.border_parts"])
        add(phase_split=False)
    for d in sorted((d for d in range(2, min(xext, 2 * lanes) + 1) if xext % d == 0),
                    key=lambda d: (abs(d - default), -d)):
        add(xt=d)
    if y is not None:
        for yt in (1, 2, 4, 7):
            if exts[y] % yt == 0 and exts[y] > yt:
                add(yt=yt)
    return out


def _default_chunk_of(sch, mac, pads, out_ch, nspatial, x, cores, off_stack=False) -> int:
    """:func:`default_chunk` for this kernel (1 without a padding stage).

    ``off_stack``: size tasks as for column-phase planes, past the stack limit.
    """
    if not pads:
        return 1
    shape = sch.get(pads[0]).writes[0].source.shape
    nlead = len(shape) - nspatial
    if nlead < 1:
        return 1
    per_plane = max(1, out_ch // max(1, int(shape[nlead - 1])))
    phased = _stride_of(sch, mac, mac.ivars[x], pads[0]) > 1
    return default_chunk(out_ch, _plane_bytes(sch, pads[0], nlead), per_plane, cores,
                         phased or off_stack)


# A padded plane larger than this is padded in strips of output rows, each
# strip's padded input at most STRIP_BYTES: the copy, the zero fill and the
# convolution then reuse it from L1 (48 KiB) instead of L2.
STRIP_PLANE_BYTES = 32 * 1024
STRIP_BYTES = 16 * 1024


def _default_strip(sch, mac, exts, y, yt) -> int:
    """Output rows per pad strip for this kernel (0: the whole plane)."""
    pads = list(sch.get_producers(mac.block))
    if not pads or y is None:
        return 0
    shape = [int(d) for d in sch.get(pads[0]).writes[0].source.shape]
    if len(shape) < 2:
        return 0
    row_bytes = 4 * shape[-1]
    if row_bytes * shape[-2] <= STRIP_PLANE_BYTES:
        return 0
    # input rows of a strip of d output rows: (d - 1) * stride + kernel height
    in_rows = shape[-2]
    oh = exts[y]
    stride = max(1, (in_rows - 1) // max(1, oh))     # (H + pads - kh) // stride + 1 == oh
    kh = in_rows - (oh - 1) * stride
    best = 0
    for d in range(yt, oh, yt):
        if oh % d == 0 and ((d - 1) * stride + kh) * row_bytes <= STRIP_BYTES:
            best = d
    return best


def _stride_of(sch, mac, x_var, pad) -> int:
    """Step of the padded input's column per output column (1 when not strided / unknown)."""
    from tvm.sym.pattern import detect_linear_equation
    pad_buf = sch.get(pad).writes[0].source
    read = next((r for r in sch.get(mac.block).reads if r.source.same_as(pad_buf)), None)
    if read is None:
        return 1
    coef = detect_linear_equation(read.region[-1].min, [x_var])
    if len(coef) != 2 or not hasattr(coef[0], "value"):
        return 1
    return max(1, int(coef[0].value))


def _vector_loop(sch, loop, lanes):
    """Vectorise ``loop``: whole when at most two vectors wide, else split by a divisor."""
    ext = static_extents(sch, [loop])[0]
    if ext > 2 * lanes:
        d = _divisor_at_most(ext, lanes)
        if d < 4:
            return
        _, loop = sch.split(loop, [None, d])
    sch.vectorize(loop)


# TVM places a buffer of at most this many bytes that lives inside a parallel
# task on the stack (LowerTVMBuiltin's kMaxStackAlloca), larger ones in a
# workspace from TVMBackendAllocWorkspace.
STACK_ALLOCA_BYTES = 1024


def _plane_bytes(sch, pad, nlead: int) -> int:
    """Bytes of one channel's padded plane (the pad buffer without its leading dims)."""
    shape = [int(d) for d in sch.get(pad).writes[0].source.shape[nlead:]]
    out = 4
    for d in shape:
        out *= d
    return out


CHUNK_MAX_CHANNELS = 8
CHUNK_MAX_BYTES = 16 * 1024


def default_chunk(channels: int, plane_bytes: int, per_plane: int, cores: int,
                  phased: bool = True) -> int:
    """Output channels per parallel task.

    Each task pays for its own buffers (a workspace allocation per buffer
    larger than the stack limit, and the accumulator's) and loop set-up, which
    on a 7x7 or 14x14 plane costs as much as the arithmetic: small planes are
    grouped, up to :data:`CHUNK_MAX_CHANNELS` channels and
    :data:`CHUNK_MAX_BYTES` of padded input per task (measured 1.1-1.5x on
    MobileNetV2 / EfficientNet-B0 layers), keeping at least 4 tasks per core.

    Planes of at most half the stack limit stay on the stack (at most
    :data:`STACK_ALLOCA_BYTES` per task): there LLVM widens a vector load of
    a non-power-of-two width (7, 14 lanes) to one native load, where a
    workspace buffer, opaque to LLVM, needs three (measured 7x7: 3 channels
    per task 1.5x faster, 4 channels in a workspace slower than 1).

    A column-phase plane (``phased``) must *not* stay on the stack: LLVM
    drops the zero stores into its slots that nothing reads by name (the
    unused last column), a widened load then reads stale stack bytes --
    often denormals -- and each multiply with one costs a microcode assist
    (measured up to 7x slower). Its chunk is grouped as above, or the
    smallest past the stack limit. ``per_plane`` output channels read one
    input plane.
    """
    def planes(c):
        return max(1, c // per_plane)

    fits = [c for c in range(1, channels + 1)
            if channels % c == 0 and (c == 1 or channels // c >= 4 * cores)]
    grouped = max(c for c in fits if c <= CHUNK_MAX_CHANNELS
                  and planes(c) * plane_bytes <= CHUNK_MAX_BYTES)
    if phased:
        if planes(grouped) * plane_bytes > STACK_ALLOCA_BYTES:
            return grouped
        return next((c for c in fits if planes(c) * plane_bytes > STACK_ALLOCA_BYTES), 1)
    if 2 * plane_bytes <= STACK_ALLOCA_BYTES:
        return max(c for c in fits if planes(c) * plane_bytes <= STACK_ALLOCA_BYTES)
    return grouped


def _pad_plane(sch, pad, task, depth, stride, lanes, parts=True) -> None:
    """Pad a task's input plane(s) at loop ``task`` (``depth`` loops deep).

    * ``stride`` 1: one copy loop (the bounds test per element stays: splitting
      it into a zero fill and an interior copy measured no faster, and slower
      on 112x112 planes: two passes over a plane larger than L1).
    * ``stride`` s > 1 along x: the padded plane is stored by column phase,
      ``[.., row, col % s, col // s]``: output column ``xx`` reads padded column
      ``xx*s + kx``, i.e. phase ``kx % s`` at ``xx + kx // s``, so the
      convolution's vectors are contiguous loads. ``decompose_padding`` splits
      the copy into a zero fill (vectorised per phase row) and an interior copy
      without bounds tests, whose loop reads the input contiguously and writes
      the s phases in turn; LLVM turns that into wide loads plus lane
      permutes (``vpermps``), where a vectorised TIR loop would gather
      element by element. With ``parts`` the copy is instead split into
      border and interior loops (:func:`_copy_in_parts`): no zero fill of the
      interior.
    """
    pexts = static_extents(sch, sch.get_loops(pad))
    phased = stride > 1 and bool(pexts) and pexts[-1] % stride == 0
    if phased:
        sch.transform_layout(pad, ("write", 0),
                             lambda *idx: list(idx[:-1]) + [idx[-1] % stride, idx[-1] // stride])
    sch.compute_at(pad, task)
    if not phased:
        ploops = sch.get_loops(pad)
        ext = static_extents(sch, ploops[-1:])
        if ext and ext[0] % lanes == 0:
            _, pv = sch.split(ploops[-1], [None, lanes])
            sch.vectorize(pv)
        return
    if parts and _copy_in_parts(sch, pad, depth, stride):
        return
    try:
        fill = sch.decompose_padding(pad, sch.get_loops(pad)[depth])
    except Exception:       # not a recognisable padding pattern: keep the plain copy
        return
    for blk in (fill, pad):
        lp = sch.get_loops(blk)[-1]
        ext = static_extents(sch, [lp])[0]
        if ext % stride:
            continue
        c0, c1 = sch.split(lp, [None, stride])
        sch.unroll(c1)
        if blk is fill:
            # zeros: one contiguous vector store per phase row
            sch.reorder(c1, c0)
            _vector_loop(sch, c0, lanes)


def _pad_offsets(sch, pad):
    """``(top, left, in_height, in_width)`` of a 2-D padding block, or None.

    Read from the block's input access ``x[.., v_h - top, v_w - left]`` (its
    iteration variables index the padded plane) and the input's shape.
    """
    from tvm.sym.pattern import detect_linear_equation
    stmt = sch.get(pad)
    out = stmt.writes[0].source
    read = next((r for r in stmt.reads if not r.source.same_as(out)), None)
    ivars = [iv.var for iv in stmt.iter_vars]
    if read is None or len(read.region) < 2 or len(ivars) < 2:
        return None
    offsets = []
    for rg, var in zip(read.region[-2:], ivars[-2:]):
        coef = detect_linear_equation(rg.min, [var])
        if len(coef) != 2 or not all(hasattr(c, "value") for c in coef) or int(coef[0].value) != 1:
            return None
        offsets.append(-int(coef[1].value))
    shape = read.source.shape
    if not all(hasattr(d, "value") for d in shape[-2:]):
        return None
    return offsets[0], offsets[1], int(shape[-2].value), int(shape[-1].value)


def _interior_parts(ext: int, lo: int, hi: int):
    """``(factors, index)``: :func:`loop_partition` factors cutting ``[0, ext)`` at ``lo`` and
    ``hi`` (empty ends dropped), and the index of the ``[lo, hi)`` part; None if that is empty."""
    lo, hi = max(0, lo), min(ext, hi)
    if hi <= lo:
        return None
    factors, index = [], 0
    if lo > 0:
        factors.append(lo)
        index = 1
    factors.append(hi - lo)
    if hi < ext:
        factors.append(None)
    else:
        factors[-1] = None
    return factors, index


def _copy_in_parts(sch, pad, depth, stride) -> bool:
    """Copy a column-phase plane without a zero fill: border loops and a clean interior.

    The padding block is cut (``loop_partition``) into the padded columns
    left / right of the input and, for a whole plane (``depth`` 1), the rows
    above / below it: those parts keep the bounds test and write the zeros,
    the interior part's test is always true (the simplifier drops it) and it
    copies the input in column pairs, which LLVM turns into wide loads and
    lane permutes as for :func:`_pad_plane`'s interior copy. Compared with a
    zero fill of the whole plane and an interior copy over it, each padded
    element is written once (see :func:`default_border_parts` for where that
    pays). A strip's rows (``depth`` 2) are not cut: their bounds depend on
    the strip and stay tested per row.
    False (nothing changed) when the block is not a recognisable 2-D padding.
    """
    offsets = _pad_offsets(sch, pad)
    loops = sch.get_loops(pad)
    if offsets is None or len(loops) < depth + 2:
        return False
    top, left, in_h, in_w = offsets
    rows, cols = loops[-2], loops[-1]
    r_ext, c_ext = static_extents(sch, [rows, cols])
    if c_ext % stride:
        return False
    col_parts = _interior_parts(c_ext // stride, -(-left // stride), (left + in_w) // stride)
    if col_parts is None:
        return False
    block = pad
    if depth == 1:
        row_parts = _interior_parts(r_ext, top, top + in_h)
        if row_parts is None:
            return False
        if len(row_parts[0]) > 1:
            parts = sch.loop_partition(rows, row_parts[0])
            block = sch.get_child_blocks(parts[row_parts[1]])[0]
    pair, phase = sch.split(sch.get_loops(block)[-1], [None, stride])
    sch.unroll(phase)
    if len(col_parts[0]) > 1:
        sch.loop_partition(pair, col_parts[0])
    return True



def schedule_spatial_vector(sch, lanes: int, cores: int) -> bool:
    """Depthwise / grouped convolution: vectorise along the output's innermost spatial axis.

    The accumulator for ``yt`` rows x ``xt`` consecutive outputs (a register
    tile, see :func:`default_tile`) lives in a small buffer (``acc_scope``);
    the reduction (kernel window, and the channels of a group) runs outside
    it. Parallel tasks are images x chunks of ``chunk`` channels
    (:func:`default_chunk`); each pads its own input plane(s), whole or in
    strips of ``strip`` output rows (:func:`_default_strip`), by column phase
    when strided (:func:`_pad_plane`); the window's loops are unrolled for
    one-vector tiles under windows past 3x3 (:func:`default_unroll_window`).
    Knobs: ``conv.spatial_vector.*``.
    """
    plan = _plan(sch)
    if plan is None:
        return False
    mac, loops, exts, nsp, x, y = plan
    defaults = _defaults(sch, plan, lanes, cores)

    def setting(name):
        return int(knob(f"conv.spatial_vector.{name}", defaults[f"conv.spatial_vector.{name}"]))

    xt, yt, strip, chunk = setting("xt"), setting("yt"), setting("strip"), setting("chunk")
    acc_scope = str(knob("conv.spatial_vector.acc_scope", defaults["conv.spatial_vector.acc_scope"]))
    if acc_scope not in ("local", "global"):
        return False
    unroll_window = bool(knob("conv.spatial_vector.unroll_window",
                              defaults["conv.spatial_vector.unroll_window"]))
    pads = list(sch.get_producers(mac.block))
    if unroll_window and _planes_on_stack(sch, plan, pads, chunk, strip):
        return False
    if xt < 2 or exts[x] % xt:
        return False
    if yt < 1 or (y is not None and exts[y] % yt) or (y is None and yt != 1):
        return False
    # output rows per pad strip (0: the whole plane at once)
    if strip and (y is None or strip % yt or exts[y] % strip or strip == exts[y]):
        return False
    # channels per task: the loop fused last into the parallel loop (1: batch only)
    nchan_loops = y if y is not None else x - 1
    out_ch = exts[nchan_loops - 1] if nchan_loops >= 2 else 1
    if chunk < 1 or out_ch % chunk or (chunk > 1 and strip):
        return False
    xo, xi = sch.split(loops[x], [None, xt])
    outer = list(loops[:x])
    reds = list(loops[nsp:])
    inner = [xi]
    ys = None
    if strip:
        ys, yrest = sch.split(loops[y], [None, strip])
    else:
        yrest = loops[y] if y is not None else None
    if yt > 1:
        yo, yi = sch.split(yrest, [None, yt])
        outer = list(loops[:y]) + ([ys] if ys is not None else []) + [yo]
        inner = [yi, xi]
    elif ys is not None:
        outer = list(loops[:y]) + [ys, yrest]
    sch.reorder(*outer, xo, *reds, *inner)
    if nchan_loops >= 1 and len(outer) >= 2:
        # tasks = images x chunks of channels; each pads its own plane(s) (in cache)
        chan = outer[:nchan_loops]
        par = sch.fuse(*chan) if len(chan) > 1 else chan[0]
        task = par
        if chunk > 1:
            task, _ = sch.split(par, [None, chunk])
        sch.parallel(task)
        phase = bool(knob("conv.spatial_vector.phase_split", True))
        parts = bool(knob("conv.spatial_vector.border_parts",
                          defaults["conv.spatial_vector.border_parts"]))
        for pad in pads:
            stride = _stride_of(sch, mac, mac.ivars[x], pad) if phase else 1
            _pad_plane(sch, pad, ys if ys is not None else task, 2 if ys is not None else 1,
                       stride, lanes, parts)
    elif outer:
        sch.parallel(outer[0])
    wb = sch.cache_write(mac.block, 0, acc_scope)
    sch.reverse_compute_at(wb, xo)
    sch.vectorize(xi)
    if yt > 1:
        sch.unroll(inner[0])
    if unroll_window:
        for r in reds[-2:] if y is not None else reds[-1:]:    # the window's rows, columns
            sch.unroll(r)
    if reds:
        sch.decompose_reduction(mac.block, reds[0])
    _finish(sch, mac.block, wb, lanes)
    return True
