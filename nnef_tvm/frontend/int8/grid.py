"""Integer grids: when a graph.quant entry can be held in int8/uint8 codes.

NNEF ``zero_point_linear_quantize(x, zero_point, scale, bits, signed, symmetric)``
(§4.9.5, SPEC-NOTES §7.13) maps a real ``x`` to the code
``q = clamp(round(x / scale) + z, lo, hi)`` with ``round(v) = floor(v + 0.5)`` and
represents it by the real ``(q - z) * scale``. For ``bits <= 8`` every code fits an
``int8`` (signed) or ``uint8`` (unsigned) tensor, and the real value of a code is
the exact affine function ``(q - z) * scale`` that the integer kernels rely on.

The other quantizers are not grids of this kind: ``min_max_linear_quantize`` /
``linear_quantize`` put the real 0 on the grid only for special ranges, and
``logarithmic_quantize`` is not affine. Tensors using them stay in fake-quant
float arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..ops.quantization import zero_point_bounds


@dataclass(frozen=True)
class Grid:
    """An int8/uint8-representable quantization of one tensor.

    ``scale`` / ``zero`` are 1-D arrays: one entry (per tensor) or one per index of
    ``axis`` (per channel). ``lo`` / ``hi`` are the code bounds of the entry,
    ``dtype`` the storage type ('int8' or 'uint8'). ``entry`` is the graph.quant
    dict the grid was read from (the dequantization uses its exact arrays).
    """

    scale: np.ndarray            # float64 values of the float32 scales
    zero: np.ndarray             # int64
    lo: int
    hi: int
    dtype: str
    axis: Optional[int]          # None: per tensor
    entry: dict

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    def centered(self, real: np.ndarray, channel_axis: Optional[int] = None) -> np.ndarray:
        """``q - z`` of the real constant ``real`` (int64), NNEF round = floor(v + 0.5).

        ``channel_axis``: where the per-channel parameters vary in ``real`` (default
        ``self.axis``). ``q - z`` is the code with the zero point already removed:
        ``clamp(round(x / s) + z, lo, hi) - z = clamp(round(x / s), lo - z, hi - z)``.
        """
        real = np.asarray(real, dtype=np.float64)
        if self.per_tensor:
            s, z = self.scale[0], self.zero[0]
        else:
            shape = [1] * real.ndim
            shape[self.axis if channel_axis is None else channel_axis] = -1
            s, z = self.scale.reshape(shape), self.zero.reshape(shape)
        return np.clip(np.floor(real / s + 0.5), self.lo - z, self.hi - z).astype(np.int64)

    def centered_range(self) -> tuple[int, int]:
        """Bounds of ``q - z`` over all channels."""
        return self.lo - int(self.zero.max()), self.hi - int(self.zero.min())


def storage_dtype(lo: int, hi: int) -> str:
    """Narrowest integer type holding ``[lo, hi]``: int8, uint8, else int16/int32."""
    for dt in ("int8", "uint8", "int16"):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return "int32"


def _param(entry, key) -> Optional[np.ndarray]:
    if key not in entry:
        return None
    return np.asarray(entry[key])


def grid_of(entry: Optional[dict], shape) -> Optional[Grid]:
    """The :class:`Grid` of graph.quant ``entry`` for a tensor of ``shape``, or None.

    None unless: zero_point_linear_quantize with bits <= 8, positive finite
    scales, integral zero points, and parameters that are either one value or
    vary along exactly one axis (NNEF left-aligned broadcasting: shape ``[C]``
    is axis 0, ``[1, C]`` axis 1, ...).
    """
    if not entry or entry.get("op-name") != "zero_point_linear_quantize" or shape is None:
        return None
    try:
        bits = int(entry["bits"])
        signed, symmetric = bool(entry["signed"]), bool(entry["symmetric"])
    except (KeyError, TypeError, ValueError):
        return None
    if not 1 <= bits <= 8:
        return None
    scale, zero = _param(entry, "scale"), _param(entry, "zero_point")
    if scale is None or zero is None:
        return None
    rank = len(shape)
    axis = None
    for p in (scale, zero):
        if p.ndim > rank:
            return None
        for i, n in enumerate(p.shape):
            if n == 1:
                continue
            if n != shape[i] or (axis is not None and axis != i):
                return None
            axis = i
    n = 1 if axis is None else int(shape[axis])
    scale = np.broadcast_to(scale.astype(np.float32).astype(np.float64).reshape(-1), (n,)).copy()
    zf = np.broadcast_to(zero.astype(np.float64).reshape(-1), (n,))
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0) and np.all(zf == np.round(zf))):
        return None
    lo, hi = zero_point_bounds(bits, signed, symmetric)
    return Grid(scale=scale, zero=zf.astype(np.int64), lo=lo, hi=hi,
                dtype="int8" if signed else "uint8", axis=axis, entry=entry)
