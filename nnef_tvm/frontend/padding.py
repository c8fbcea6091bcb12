"""Window geometry and border handling shared by the sliding-window converters.

NNEF semantics implemented here (SPEC-NOTES §7.3, §7.4):

* ``padding = []`` is *automatic* padding: with up-scaled extent ``X``, window extent
  ``fd = (f-1)*d + 1`` and ``x = ceil(X/s)``, ``t = max((x-1)*s + fd - X, 0)``,
  ``p = floor(t/2)``, ``q = ceil(t/2)`` (extra cell at the end, like TF "SAME").
* down-scaled extent ``x = floor((p + X + q - fd)/s) + 1``; up-scaled (reverse ops)
  ``X = (x-1)*s + fd - (p+q)``, or ``x*s`` with automatic padding (O11), or
  ``output_shape``.
* padding entries may be negative: the input is cropped first.
* border modes for cells outside ``[0, z)``: 'constant' -> 0, 'replicate' -> edge,
  'reflect' -> mirror without the edge, 'reflect-even' -> mirror with the edge,
  'ignore' -> excluded (handled by the ops themselves, never materialised).

'replicate' and single-mirror 'reflect' use Relax ``pad`` modes; 'reflect-even' (no
Relax mode; Relax silently treats 'symmetric'/'edge' as constant) and multi-period
reflections are a ``take`` along each padded axis with an index vector computed here
(numpy, at conversion time). Both are injective, so TVM fuses them into the consumer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from tvm import relax

BORDERS = ("constant", "replicate", "reflect", "reflect-even", "ignore")


def dilated_extent(f: int, d: int) -> int:
    """Extent ``fd`` covered by a window of ``f`` cells at dilation ``d``."""
    return (f - 1) * d + 1


def auto_padding(big: int, f: int, s: int, d: int) -> tuple[int, int]:
    """Automatic ``(p, q)`` for a dim whose up-scaled extent is ``big``."""
    small = -(-big // s)
    t = max((small - 1) * s + dilated_extent(f, d) - big, 0)
    return t // 2, t - t // 2


def down_extent(big: int, f: int, pad: tuple[int, int], s: int, d: int) -> int:
    return (pad[0] + big + pad[1] - dilated_extent(f, d)) // s + 1


def up_extent(small: int, f: int, pad: tuple[int, int], s: int, d: int) -> int:
    return (small - 1) * s + dilated_extent(f, d) - (pad[0] + pad[1])


@dataclass
class Window:
    """Resolved window parameters, one entry per windowed dim."""

    size: list[int]
    padding: list[tuple[int, int]]
    stride: list[int]
    dilation: list[int]
    small: list[int]      # down-scaled extents (output of box/conv, input of debox/deconv)
    big: list[int]        # up-scaled extents (input of box/conv, output of debox/deconv)


def _listed(values, n, default=1):
    values = list(values) if values else []
    return [int(v) for v in values] if values else [default] * n


def forward_window(big: Sequence[int], size: Sequence[int], padding, stride, dilation) -> Window:
    """Resolve the parameters of a down-scaling op (conv, box, pools, argmax_pool, sample)."""
    n = len(big)
    stride = _listed(stride, n)
    dilation = _listed(dilation, n)
    if padding:
        pads = [(int(p), int(q)) for p, q in padding]
    else:
        pads = [auto_padding(X, f, s, d) for X, f, s, d in zip(big, size, stride, dilation)]
    small = [down_extent(X, f, pq, s, d) for X, f, pq, s, d in zip(big, size, pads, stride, dilation)]
    return Window(list(size), pads, stride, dilation, small, list(big))


def reverse_window(small: Sequence[int], size: Sequence[int], padding, stride, dilation,
                   output_shape: Optional[Sequence[int]] = None) -> Window:
    """Resolve the parameters of an up-scaling op (deconv, debox, desample).

    ``output_shape`` (already restricted to the windowed dims) wins; otherwise the
    extent comes from the explicit padding, or is ``x*s`` with automatic padding.
    """
    n = len(small)
    stride = _listed(stride, n)
    dilation = _listed(dilation, n)
    if output_shape:
        big = [int(v) for v in output_shape]
    elif padding:
        big = [up_extent(x, f, (int(p), int(q)), s, d)
               for x, f, (p, q), s, d in zip(small, size, padding, stride, dilation)]
    else:
        big = [x * s for x, s in zip(small, stride)]
    if padding:
        pads = [(int(p), int(q)) for p, q in padding]
    else:
        pads = [auto_padding(X, f, s, d) for X, f, s, d in zip(big, size, stride, dilation)]
    return Window(list(size), pads, stride, dilation, list(small), big)


# --------------------------------------------------------------------------- border materialisation
def border_indices(z: int, before: int, after: int, border: str) -> np.ndarray:
    """Source index of every cell of a dim of extent ``z`` padded by ``(before, after)``.

    'replicate' repeats the edge, 'reflect' mirrors without repeating it (NumPy
    'reflect'), 'reflect-even' mirrors including it (NumPy 'symmetric'). A negative
    ``before``/``after`` crops. Shared by the window ops and the ``pad`` converter.
    """
    i = np.arange(-before, z + after)
    if border == "replicate":
        return np.clip(i, 0, z - 1)
    if border == "reflect":
        if z == 1:
            return np.zeros_like(i)
        period = 2 * (z - 1)
        i = np.mod(i, period)
        return np.where(i < z, i, period - i)
    if border == "reflect-even":
        period = 2 * z
        i = np.mod(i, period)
        return np.where(i < z, i, period - 1 - i)
    raise ValueError(f"no index rule for border {border!r}")


def crop(ctx, x: relax.Expr, pads: Sequence[tuple[int, int]]):
    """Apply the negative part of ``pads`` (cropping); returns ``(x, non-negative pads)``."""
    shape = ctx.shape(x)
    axes, begins, ends = [], [], []
    rest = []
    for axis, (p, q) in enumerate(pads):
        if p < 0 or q < 0:
            axes.append(axis)
            begins.append(max(-p, 0))
            ends.append(shape[axis] - max(-q, 0))
        rest.append((max(p, 0), max(q, 0)))
    if axes:
        x = ctx.emit(relax.op.strided_slice(x, axes, begins, ends))
    return x, rest


def pad_with_border(ctx, x: relax.Expr, pads: Sequence[tuple[int, int]], border: str,
                    value: float = 0.0) -> relax.Expr:
    """Pad ``x`` by ``pads`` (one ``(p, q)`` per dim, negatives crop) using ``border``.

    'constant' fills with ``value`` (0 for the sliding-window ops); 'ignore' is not a
    fill rule and must be handled by the caller.
    """
    x, pads = crop(ctx, x, pads)
    if all(p == 0 and q == 0 for p, q in pads):
        return x
    if border == "constant":
        flat = [v for pq in pads for v in pq]
        return ctx.emit(relax.op.nn.pad(x, flat, pad_mode="constant", pad_value=float(value)))
    shape = ctx.shape(x)
    flat = [v for pq in pads for v in pq]
    if border == "replicate" or (border == "reflect" and all(
            p < z and q < z for (p, q), z in zip(pads, shape))):
        # one native pad covers it ('reflect' only while a single mirror suffices)
        return ctx.emit(relax.op.nn.pad(x, flat, pad_mode=border))
    for axis, (p, q) in enumerate(pads):
        if p == 0 and q == 0:
            continue
        idx = border_indices(shape[axis], p, q, border).astype("int64")
        x = ctx.emit(relax.op.take(x, relax.const(idx, "int64"), axis=axis, mode="clip"))
    return x


def relax_padding(pads: Sequence[tuple[int, int]]) -> list[int]:
    """NNEF ``[(p, q), ...]`` -> Relax ``[p1, p2, ..., q1, q2, ...]`` (all befores, then afters)."""
    return [p for p, _ in pads] + [q for _, q in pads]
