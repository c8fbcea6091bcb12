"""Window-based primitives (NNEF §4.3.2, §4.3.3): box, debox, argmax_pool, sample, desample.

Window parameters are FULL rank (batch and channel dims included). :func:`window_reduce`
is the shared engine of box and the pooling compounds (max/avg/rms pool, the local
normalizations):

* borders: replicate/reflect/reflect-even are materialised (Relax pad / index gather),
  negative padding crops, 'constant' keeps zeros that take part (also in a max,
  NNEF-Docs #18: the native pool, which skips padding, is followed by ``max(., 0)`` on
  the windows that touch the padding, a conversion-time mask), 'ignore' excludes padding
  cells (native Relax max-pool padding; averages divide by the number of real cells, a
  conversion-time constant);
* the windowed dims are brought into the spatial position of a Relax pool by a pure
  ``reshape``: dims before the first windowed dim fold into the batch, runs of
  un-windowed dims between/after windowed ones become spatial dims with a trivial
  window. So ``[1, n, 1, 1]`` on NCHW (LRN) pools ``[N, 1, C, H*W]`` with a 2-D pool,
  without transposes. Only when that needs more than three spatial dims does a
  generic tensor-expression kernel (``window_te``) take over;
* sums are ``avg_pool(count_include_pad) * volume``.

``debox`` over spatial dims is a depthwise ``conv_transpose`` with an all-ones filter;
other debox windows, ``argmax_pool``, ``sample`` and ``desample`` have no Relax operator:
they are tensor-expression kernels emitted with ``emit_te``.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from .. import window_te
from ..padding import BORDERS, crop, forward_window, pad_with_border, relax_padding, reverse_window
from ..registry import converter

_MAX_POOL = {1: relax.op.nn.max_pool1d, 2: relax.op.nn.max_pool2d, 3: relax.op.nn.max_pool3d}
_AVG_POOL = {1: relax.op.nn.avg_pool1d, 2: relax.op.nn.avg_pool2d, 3: relax.op.nn.avg_pool3d}
_LAYOUT = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def check_window_attrs(ctx, op, rank, size, padding, stride, dilation, border, borders=BORDERS):
    """Validate full-rank window attributes; raise located NNEFErrors."""
    if len(size) != rank:
        raise ctx.error(op, f"size must have one entry per input dimension ({rank}), got {list(size)}")
    for name, v in (("padding", padding), ("stride", stride), ("dilation", dilation)):
        if v and len(v) != rank:
            raise ctx.error(op, f"{name} must be [] or have {rank} entries (full rank), got {list(v)}")
    if any(int(f) < 1 for f in size) or any(int(s) < 1 for s in stride or []) \
            or any(int(d) < 1 for d in dilation or []):
        raise ctx.error(op, "size, stride and dilation entries must be positive")
    if border not in borders:
        raise ctx.error(op, f"border '{border}' is not supported here; expected one of "
                            + ", ".join(repr(b) for b in borders))


def _groups(active, shape):
    """Split dims into (batch-fold extent, [(kind, dim or extent)]) for the reshape trick."""
    first = active[0]
    prefix = int(np.prod(shape[:first], dtype=np.int64))
    spatial = []
    run = 1
    for k in range(first, len(shape)):
        if k in active:
            if run != 1:
                spatial.append(("n", run))
            run = 1
            spatial.append(("a", k))
        else:
            run *= shape[k]
    if run != 1:
        spatial.append(("n", run))
    return prefix, spatial


def window_reduce(ctx, op, x, kind, size, border="constant", padding=(), stride=(), dilation=()):
    """NNEF box (``kind='sum'``), normalized box / avg_pool (``'avg'``) or max_pool (``'max'``)."""
    shape = list(ctx.shape(x))
    rank = len(shape)
    check_window_attrs(ctx, op, rank, size, padding, stride, dilation, border)
    win = forward_window(shape, [int(f) for f in size], padding, stride, dilation)
    if any(n <= 0 for n in win.small):
        raise ctx.error(op, f"window does not fit the input {shape} (output extents {win.small})")
    pads = list(win.padding)
    ignore = border == "ignore"
    if border in ("replicate", "reflect", "reflect-even"):
        x = pad_with_border(ctx, x, pads, border)
        pads = [(0, 0)] * rank
    else:
        x, pads = crop(ctx, x, pads)
    shape = list(ctx.shape(x))
    size, stride, dilation = win.size, win.stride, win.dilation
    active = [k for k in range(rank)
              if size[k] != 1 or stride[k] != 1 or tuple(pads[k]) != (0, 0)]
    if not active:
        return x
    volume = float(np.prod(size))
    padded = any(p or q for p, q in pads)
    rescale = kind == "avg" and ignore and padded     # divide by the count of real cells
    prefix, spatial = _groups(active, shape)
    if active[0] >= 2 and 3 <= rank <= 5:
        spatial = [("a", k) for k in range(2, rank)]          # plain NC... layout, no reshape
        prefix = None
    if len(spatial) <= 3:
        # native pools give max, or the average over the full window (zeros counted)
        out = _native_pool(ctx, x, kind, prefix, spatial, size, pads, stride, dilation)
        if prefix is not None:
            out = ctx.emit(relax.op.reshape(out, win.small))
        if kind == "sum" or rescale:
            out = ctx.emit(relax.op.multiply(out, relax.const(volume, ctx.value_dtype(out))))
        if kind == "max" and not ignore and padded:
            # the native max pool skips padding; under 'constant' its zeros take part, so
            # windows that touch the padding (a static mask) also compete with 0
            count = window_te.static_cell_count(shape, size, pads, stride, dilation, win.small)
            touches = relax.const(count < volume)
            zero = relax.const(0.0, ctx.value_dtype(out))
            out = ctx.emit(relax.op.where(touches, relax.op.maximum(out, zero), out))
    else:
        out = emit_te(ctx, window_te.forward_window, x, "max" if kind == "max" else "sum", size, pads,
                      stride, dilation, win.small, ignore)
        if kind == "avg" and not rescale:
            out = ctx.emit(relax.op.divide(out, relax.const(volume, ctx.value_dtype(out))))
    if rescale:
        count = window_te.static_cell_count(shape, size, pads, stride, dilation, win.small)
        count = np.maximum(count, 1.0).astype(ctx.value_dtype(out))
        out = ctx.emit(relax.op.divide(out, relax.const(count)))
    return out


def _native_pool(ctx, x, kind, prefix, spatial, size, pads, stride, dilation):
    """Reshape to ``[prefix, 1, spatial...]`` (``prefix`` None: keep x) and run a 1/2/3-D Relax pool."""
    nd = len(spatial)
    ext, sz, st, dl, pd = [], [], [], [], []
    shape = ctx.shape(x)
    for kind_, v in spatial:
        if kind_ == "a":
            ext.append(shape[v])
            sz.append(size[v])
            st.append(stride[v])
            dl.append(dilation[v])
            pd.append(tuple(pads[v]))
        else:
            ext.append(v)
            sz.append(1)
            st.append(1)
            dl.append(1)
            pd.append((0, 0))
    xr = x if prefix is None else ctx.emit(relax.op.reshape(x, [prefix, 1] + ext))
    pool = _MAX_POOL[nd] if kind == "max" else _AVG_POOL[nd]
    extra = {} if kind == "max" else {"count_include_pad": True}
    return ctx.emit(pool(xr, pool_size=sz, strides=st, padding=relax_padding(pd), dilation=dl,
                         layout=_LAYOUT[nd], **extra))


def emit_te(ctx, fn, *args, **kwargs):
    return ctx.bb.emit_te(fn, *args, **kwargs)


def _window_args(op):
    a = op.attribs
    return dict(size=[int(v) for v in a["size"]], border=a.get("border", "constant"),
                padding=a.get("padding", []), stride=a.get("stride", []), dilation=a.get("dilation", []))


@converter("box")
def box(ctx, op):
    """NNEF box: window sum over all dims; ``normalize`` divides by the volume (or real cells for 'ignore')."""
    kind = "avg" if op.attribs.get("normalize", False) else "sum"
    return window_reduce(ctx, op, ctx.input(op, "input"), kind, **_window_args(op))


def _prepare_forward(ctx, op, x, a, borders):
    """Resolve the window, materialise non-constant borders, crop; returns (x, win, pads)."""
    shape = list(ctx.shape(x))
    check_window_attrs(ctx, op, len(shape), a["size"], a["padding"], a["stride"], a["dilation"],
                       a["border"], borders)
    win = forward_window(shape, a["size"], a["padding"], a["stride"], a["dilation"])
    if any(n <= 0 for n in win.small):
        raise ctx.error(op, f"window does not fit the input {shape} (output extents {win.small})")
    pads = list(win.padding)
    if a["border"] in ("replicate", "reflect", "reflect-even"):
        x = pad_with_border(ctx, x, pads, a["border"])
        pads = [(0, 0)] * len(shape)
    else:
        x, pads = crop(ctx, x, pads)
    return x, win, pads


def argmax_indices(ctx, op, x, a):
    """argmax_pool as a TE kernel: first maximum, row-major index within the window."""
    x, win, pads = _prepare_forward(ctx, op, x, a, BORDERS)
    return emit_te(ctx, window_te.forward_window, x, "argmax", win.size, pads, win.stride, win.dilation,
                   win.small, a["border"] == "ignore", ctx.dtype("integer"))


@converter("argmax_pool")
def argmax_pool(ctx, op):
    """NNEF argmax_pool: per window, row-major index (within the window) of the first maximum."""
    return argmax_indices(ctx, op, ctx.input(op, "input"), _window_args(op))


@converter("sample")
def sample(ctx, op):
    """NNEF sample: ``out[i] = in~[i*s + decode(index[i])*d - p]`` (index has the output shape)."""
    a = _window_args(op)
    x, win, pads = _prepare_forward(ctx, op, ctx.input(op, "input"), a,
                                    ("constant", "replicate", "reflect", "reflect-even", "ignore"))
    index = ctx.input(op, "index", "integer")
    if list(ctx.shape(index)) != list(win.small):
        raise ctx.error(op, f"index shape {list(ctx.shape(index))} must equal the output shape {win.small}")
    return emit_te(ctx, window_te.sample, x, index, win.size, pads, win.stride, win.dilation, win.small)


def _prepare_reverse(ctx, op, x, a, borders):
    shape = list(ctx.shape(x))
    check_window_attrs(ctx, op, len(shape), a["size"], a["padding"], a["stride"], a["dilation"],
                       a["border"], borders)
    out_shape = op.attribs.get("output_shape") or []
    if out_shape and len(out_shape) != len(shape):
        raise ctx.error(op, f"output_shape must have {len(shape)} entries, got {list(out_shape)}")
    return reverse_window(shape, a["size"], a["padding"], a["stride"], a["dilation"],
                          list(out_shape) or None)


@converter("debox")
def debox(ctx, op):
    """NNEF debox (transposed box): scatter-add of every input cell over its window.

    normalize: 'constant' divides by volume(size), 'ignore' by the number of windows
    covering each output cell (Khronos runtime semantics; 0 covers -> 0).
    """
    a = _window_args(op)
    x = ctx.input(op, "input")
    win = _prepare_reverse(ctx, op, x, a, ("constant", "ignore"))
    rank = len(win.size)
    spatial_only = 3 <= rank <= 5 and all(
        win.size[k] == 1 and win.stride[k] == 1 and tuple(win.padding[k]) == (0, 0) for k in (0, 1))
    if spatial_only:
        # a depthwise transposed convolution with an all-ones filter (out-of-range cells
        # contribute nothing under both 'constant' and 'ignore')
        from .conv import deconv_core
        channels = ctx.shape(x)[1]
        ones = np.ones([channels, 1] + win.size[2:], dtype=ctx.value_dtype(x))
        out = deconv_core(ctx, op, x, relax.const(ones), border="constant", padding=win.padding[2:],
                          stride=win.stride[2:], dilation=win.dilation[2:],
                          output_shape=[ctx.shape(x)[0], channels] + win.big[2:], groups=channels)
    else:
        out = emit_te(ctx, window_te.reverse_window, x, None, win.size, win.padding, win.stride,
                      win.dilation, win.big)
    if op.attribs.get("normalize", False):
        if a["border"] == "ignore":
            count = window_te.static_cell_count(win.big, win.size, win.padding, win.stride, win.dilation,
                                                win.small, reverse=True)
            count = np.maximum(count, 1.0).astype(ctx.value_dtype(out))
            out = ctx.emit(relax.op.divide(out, relax.const(count)))
        else:
            out = ctx.emit(relax.op.divide(out, relax.const(float(np.prod(win.size)), ctx.value_dtype(out))))
    return out


@converter("desample")
def desample(ctx, op):
    """NNEF desample: scatter-add of input cells to the window cell ``index`` selects (border 'constant')."""
    a = _window_args(op)
    x = ctx.input(op, "input")
    win = _prepare_reverse(ctx, op, x, a, ("constant",))
    index = ctx.input(op, "index", "integer")
    if list(ctx.shape(index)) != list(ctx.shape(x)):
        raise ctx.error(op, f"index shape {list(ctx.shape(index))} must equal the input shape "
                            f"{list(ctx.shape(x))}")
    return emit_te(ctx, window_te.reverse_window, x, index, win.size, win.padding, win.stride, win.dilation,
                   win.big, ctx.dtype("integer"))
