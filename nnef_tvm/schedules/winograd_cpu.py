"""CPU rule ``winograd``: schedules the Winograd convolution kernel of :mod:`.winograd`.

The kernel is recognised by its block names (``winograd_pad``, ``winograd_in_rows``,
``winograd_input``, ``winograd_gemm``, ``winograd_out_rows``, ``winograd_output``);
the elementwise epilogue FuseOps put after it (bias, residual, relu) is inlined
into ``winograd_output``'s store. Stage by stage:

* transforms: the transform index loops (``e1``, ``e2``, ``i``) are unrolled, so
  the ``Select`` over them resolves and every coefficient is an immediate (the
  zeros of ``B^T`` / ``A^T`` never appear). The input transforms keep their
  innermost loop (padded row column / tile column) serial and let LLVM's loop
  vectoriser form interleaved groups for the stride-``m`` reads (TVM's own
  ``vectorize`` would scalarise non-unit-stride ramps);
* GEMM: ``alpha^2`` batched products with a register tile of ``fi`` output
  channels (two 16-lane vectors on AVX-512) x ``xt`` tile columns, broadcast
  ``V`` scalar times ``U`` vector, the input-channel loop inside the tile (the
  same micro-kernel shape as :mod:`.conv_channel_cpu`);
* output: ``A^T`` along rows vectorised over output channels, then the final
  ``A^T`` along columns with the epilogue, vectorised over output channels.

Stages run one after another per block of ``rows`` tile rows of one image:
every stage is computed at the (parallel) block loop, so ``V`` and ``M`` of
one block stay in L2 instead of round-tripping through memory, and one
``U[e]`` channel slice serves all tiles of the block. When there are fewer
blocks than cores, the output channels are split into ``parts`` as well (each
part transforms its block's input again; 14x14 and 28x28 maps are one block).

Knobs (``winograd.*``, read through :func:`.cpu_common.knob`, listed by
:func:`winograd_space`): ``fi`` / ``xt`` / ``yt`` register tile (output
channels / tile columns / tile rows), ``rows`` tile rows per block, ``parts``
channel parts, ``out`` ("co": final transform vectorised over channels,
"x": along the row), ``acc_scope`` (GEMM accumulator scope).

Cost notes (ResNet-18 64 @56, 1 thread): GEMM ~46% of the kernel at ~74
GMAC/s, the NCHW output store (a scatter over channels, plus the residual
gather) ~22%, input transforms ~20%. Unrolling the output tile (i, j) costs
~4 s of LLVM time per kernel; not unrolling it was measured 5-25% slower.
"""
from __future__ import annotations

from .conv_cpu import _divisor_at_most
from .cpu_common import inline_elementwise, knob, root_blocks, static_extents
from .winograd import BLOCK_PREFIX

STAGES = ("pad", "in_rows", "input", "gemm", "out_rows", "output")


def _blocks(sch):
    """{stage: block} of the Winograd kernel, or None when the function is not one."""
    found = {}
    for blk in root_blocks(sch):
        name = sch.get(blk).name_hint
        if name.startswith(BLOCK_PREFIX):
            stage = name[len(BLOCK_PREFIX):]
            if stage in STAGES:
                if stage in found:
                    return None               # two Winograd kernels in one function
                found[stage] = blk
    return found if len(found) == len(STAGES) else None


def _extents(sch, blk):
    return static_extents(sch, sch.get_loops(blk))


# tile rows per block: as many as keep the block at most this many tiles (the
# block's transformed input and products, 36 * (Ci + Co) floats per tile, stay in
# L2, and U[e] is read once per block). Measured, 1 thread: 128->128 @28 (7 tile
# rows of 7 tiles) 1.13 ms with 1 row per block, 0.75 ms with 7; 256 @14 1.96 -> 1.17
BLOCK_TILES = 64


def _block_rows(n: int, th: int, tw: int, cores: int) -> int:
    """Tile rows per block: the most that keep a block within :data:`BLOCK_TILES`,
    preferring a block count that is a multiple of ``cores``.

    TVM's pool gives each thread an equal contiguous share of the block loop
    (``ceil(blocks / cores)`` blocks for the first threads): 7 blocks on 2
    threads run as 4 + 3, the second core idle for a block. Balanced counts
    also split the map the way the row-split kernels around it do (thread
    ``t`` the ``t``-th band of rows), so the input rows a thread reads and the
    residual it adds were mostly written by its own core. ResNet-18's 64 @56
    (14 tile rows): 7 blocks of 2 rows -> 14 blocks of 1 row at 2 threads;
    in-model paired A/B (300 alternating runs, 2 threads): those kernels 0.93x
    and 0.96x the time, the whole model 0.99x (within the machine's noise).
    The other balanced splits ran slower: 2 blocks of 7 rows (98 tiles: V and
    M outgrow L2) 1.08-1.20x, 7 blocks of 2 rows in 2 channel parts (each
    block's input transformed twice) 1.15-1.24x. With one thread every count
    is balanced and the schedule is unchanged (identical library).
    """
    fits = [r for r in range(1, th + 1) if th % r == 0 and r * tw <= BLOCK_TILES] or [1]
    balanced = [r for r in fits if (n * (th // r)) % cores == 0]
    return max(balanced or fits)


def _defaults(gemm_exts, lanes, cores):
    """Default knobs from the GEMM's loop extents (n, ty, e1, e2, tx, co, c)."""
    n, th, _, _, tw, co, _ = gemm_exts
    fi = next((f for f in (2 * lanes, lanes) if co % f == 0), None)
    if fi is None:
        fi = _divisor_at_most(co, lanes)
    nvec = max(1, fi // lanes)
    xt = _divisor_at_most(tw, 24 // nvec if lanes >= 16 else 12 // nvec)
    rows = _block_rows(n, th, tw, cores)
    blocks = n * (th // rows)
    parts = 1
    if blocks < cores:
        # too few blocks for the threads: split the output channels as well
        want = -(-cores // blocks)
        parts = next((p for p in range(want, co // fi + 1) if co % (p * fi) == 0), 1)
    return {"winograd.fi": fi, "winograd.xt": xt, "winograd.rows": rows,
            "winograd.parts": parts}


def winograd_space(sch, lanes: int, cores: int) -> list:
    """Valid knob settings of :func:`schedule_winograd` for this kernel, default first."""
    blocks = _blocks(sch)
    if blocks is None:
        return []
    exts = _extents(sch, blocks["gemm"])
    if exts is None:
        return []
    default = _defaults(exts, lanes, cores)
    _, th, _, _, tw, co, _ = exts
    out = [default]
    seen = {tuple(sorted(default.items()))}

    def add(**kw):
        cand = dict(default)
        cand.update({f"winograd.{k}": v for k, v in kw.items()})
        key = tuple(sorted(cand.items()))
        if key not in seen:
            seen.add(key)
            out.append(cand)
    for rows in (2, 4):
        if th % rows == 0 and th // rows >= cores:
            add(rows=rows)
    for fi in (2 * lanes, lanes, 3 * lanes):
        if co % fi:
            continue
        nvec = fi // lanes
        for xt in range(1, tw + 1):
            if tw % xt == 0 and 4 <= nvec * xt <= 28:
                add(fi=fi, xt=xt)
    return out


def schedule_winograd(sch, lanes: int, cores: int) -> bool:
    """Schedule a fused Winograd kernel (see module docstring); False if it is not one."""
    blocks = _blocks(sch)
    if blocks is None:
        return False
    gemm_exts = _extents(sch, blocks["gemm"])
    if gemm_exts is None:
        return False
    d = _defaults(gemm_exts, lanes, cores)
    fi = int(knob("winograd.fi", d["winograd.fi"]))
    xt = int(knob("winograd.xt", d["winograd.xt"]))
    rows = int(knob("winograd.rows", d["winograd.rows"]))
    parts = int(knob("winograd.parts", d["winograd.parts"]))
    _, th, _, _, tw, co, _ = gemm_exts
    if co % fi or tw % xt or th % rows or co % (parts * fi):
        return False
    keep = {sch.get(b).name_hint for b in blocks.values()}
    inline_elementwise(sch, keep)
    out = sch.get_sblock(BLOCK_PREFIX + "output")
    consumers = list(sch.get_consumers(out))
    if len(consumers) == 1:
        sch.reverse_compute_inline(consumers[0])
    elif consumers:
        return False
    _schedule_output(sch, out, lanes, th, rows, parts)
    return True


def _schedule_output(sch, out, lanes, th, rows, parts):
    """Tile-row blocks: every stage computed at the output's block loop."""
    n, co, h, w = sch.get_loops(out)
    m = _tile_of(sch)
    ty, i = sch.split(h, [None, m])
    tx, j = sch.split(w, [None, m])
    tyo, tyi = sch.split(ty, [None, rows])
    if parts > 1:
        # channel parts in the parallel loop too: each task transforms its tile rows'
        # input (duplicated per part) and multiplies with its share of U
        cop, co = sch.split(co, [parts, None])
        outer = [n, tyo, cop]
    else:
        outer = [n, tyo]
    if knob("winograd.out", "co") == "x":
        # output rows along x: tile columns serial with the m phases unrolled (LLVM
        # forms interleaved groups), contiguous stores and residual loads
        sch.reorder(*outer, tyi, co, i, tx, j)
        block_loop = sch.fuse(*outer)
        sch.parallel(block_loop)
        sch.unroll(j)
    else:
        co_ext = static_extents(sch, [co])[0]
        cv = lanes if co_ext % lanes == 0 else _divisor_at_most(co_ext, lanes)
        coo, coi = sch.split(co, [None, cv])
        sch.reorder(*outer, tyi, tx, coo, i, j, coi)
        block_loop = sch.fuse(*outer)
        sch.parallel(block_loop)
        sch.unroll(i)
        sch.unroll(j)
        sch.vectorize(coi)
    # producers, innermost first, all at the tile-row block
    for stage in ("out_rows", "gemm", "input", "in_rows", "pad"):
        sch.compute_at(sch.get_sblock(BLOCK_PREFIX + stage), block_loop)
    _schedule_out_rows(sch, lanes)
    _schedule_gemm(sch, lanes)
    _schedule_input(sch)


def _tile_of(sch):
    func = sch.mod["main"]
    return int(func.attrs["nnef.winograd_m"]) if func.attrs and "nnef.winograd_m" in \
        func.attrs else 4


def _block_loops(sch, blk, inner: int):
    """``(tile-row loop or None, the last inner loops)`` of ``blk`` below the block loop.

    compute_at drops the loops of unit extent: the batch loop always (one image per
    block), the tile-row loop when a block holds one tile row.
    """
    loops = list(sch.get_loops(blk))[1:]
    rest = loops[-inner:]
    return (loops[-inner - 1] if len(loops) > inner else None), rest


def _reorder(sch, ty, *loops):
    sch.reorder(*([ty] if ty is not None else []), *loops)


def _schedule_out_rows(sch, lanes):
    blk = sch.get_sblock(BLOCK_PREFIX + "out_rows")
    ty, (i, e2, tx, co) = _block_loops(sch, blk, 4)
    co_ext = static_extents(sch, [co])[0]
    cv = lanes if co_ext % lanes == 0 else _divisor_at_most(co_ext, lanes)
    coo, coi = sch.split(co, [None, cv])
    _reorder(sch, ty, e2, tx, coo, i, coi)
    sch.unroll(i)
    sch.vectorize(coi)


def _schedule_gemm(sch, lanes):
    """Register tile ``yt`` tile rows x ``xt`` tile columns x ``fi`` output channels.

    Loop order ``e1, e2, channel tile, tile row, tile column tile, c``: one
    ``U[e]`` channel slice (``Ci x fi`` floats) serves every tile of the block
    from L1 before the next is loaded.
    """
    blk = sch.get_sblock(BLOCK_PREFIX + "gemm")
    ty, (e1, e2, tx, co, c) = _block_loops(sch, blk, 5)
    exts = static_extents(sch, [tx, co])
    d = _defaults((1, 1, 1, 1, exts[0], exts[1], 1), lanes, 1)
    fi = int(knob("winograd.fi", d["winograd.fi"]))
    xt = int(knob("winograd.xt", d["winograd.xt"]))
    yt = int(knob("winograd.yt", 1))
    txo, txi = sch.split(tx, [None, xt])
    coo, coi = sch.split(co, [None, fi])
    if ty is not None and yt > 1:
        tyo, tyi = sch.split(ty, [None, yt])
        sch.reorder(e1, e2, coo, tyo, txo, c, tyi, txi, coi)
        tile_loop, unrolled = txo, [tyi, txi]
    else:
        _reorder_opt = [e1, e2, coo] + ([ty] if ty is not None else []) + [txo, c, txi, coi]
        sch.reorder(*_reorder_opt)
        tile_loop, unrolled = txo, [txi]
    # "global": TVM lowers a tile under 1 KiB to a stack array (kept in registers)
    # only in that scope; "local" costs a workspace allocation and a memset per tile
    acc = sch.cache_write(blk, 0, knob("winograd.acc_scope", "global"))
    sch.reverse_compute_at(acc, tile_loop)
    sch.vectorize(coi)
    for lp in unrolled:
        sch.unroll(lp)
    sch.decompose_reduction(blk, c)
    try:
        sch.vectorize(sch.get_loops(acc)[-1])
    except Exception:
        pass


def _schedule_input(sch):
    """Transform index loops unrolled inside a serial innermost column loop."""
    rows = sch.get_sblock(BLOCK_PREFIX + "in_rows")
    ty, (e1, c, q, kx) = _block_loops(sch, rows, 4)
    # per column group kx: the m phases (one complete interleaved load group) x the
    # alpha transform rows, unrolled; kx serial for LLVM's loop vectoriser
    _reorder(sch, ty, c, kx, q, e1)
    sch.unroll(q)
    sch.unroll(e1)
    inp = sch.get_sblock(BLOCK_PREFIX + "input")
    ty, (e1, e2, c, tx) = _block_loops(sch, inp, 4)
    _reorder(sch, ty, c, tx, e1, e2)
    sch.unroll(e1)
    sch.unroll(e2)
