"""CPU rule ``conv_spatial_vector``: depthwise / grouped convolution vectorised along the width.

The output channel indexes the data too (depthwise, grouped), so there is no
channel vector to broadcast into: the vector runs along the output's innermost
spatial axis instead, with the same register-accumulator structure as
:mod:`.conv_channel_cpu`. A convolution strided along the width reads its
padded input stored by column phase, so its vectors stay contiguous loads.

Tile choices are tuning knobs (``conv.spatial_vector.{xt,yt,phase_split}``);
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
