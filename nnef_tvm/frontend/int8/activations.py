"""relu / clamp / max_pool applied to integer codes (``quantization='int8'``).

When the operand of ``relu(x)`` or ``clamp(x, a, b)`` (literal bounds) is held as
codes by an integer conv/linear/matmul and the result carries the same grid
(TFLite's fused activations: conv, relu and relu6 share one quantization), the
fake-quant result is itself a code-wise clamp, so no float round trip is needed:

``fq(clamp(c * s, a, b)) = clamp(c, round(a / s), round(b / s)) * s`` for codes
``c`` on the grid, because NNEF ``round(v) = floor(v + 0.5)`` is monotone and lies
between ``floor(v)`` and ``ceil(v)``: ``c * s < a`` gives ``c <= round(a / s)``,
``c * s >= a`` gives ``c >= round(a / s)`` (and likewise for ``b``). ``round(a /
s)`` is evaluated in float32 exactly as the fake-quant formula does; ``relu`` is
the case ``a = 0``, ``b = +inf``. ``max_pool`` commutes with ``c -> c * s`` the
same way (see :func:`max_pool_codes`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from tvm import relax

from ...reader.graph import Identifier, Operation
from .grid import Grid, grid_of
from .kernels import code_form, dequantize

R = relax.op


def _literal(v) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def code_bounds(op: Operation) -> Optional[tuple[float, float]]:
    """Real bounds ``(a, b)`` of a relu / literal clamp, or None."""
    if op.name == "relu":
        return 0.0, float("inf")
    if op.name == "clamp":
        a, b = _literal(op.inputs.get("a")), _literal(op.inputs.get("b"))
        if a is not None and b is not None and a <= b:
            return a, b
    return None


def _nnef_round_f32(v: float, scale: float) -> float:
    f = np.float32
    with np.errstate(over="ignore"):
        return float(np.floor(f(v) / f(scale) + f(0.5)))


def clamp_codes(ctx, op: Operation, codes, offset: int, grid: Grid, name: str):
    """``(codes, float value)`` of relu/clamp on codes; ``grid`` is the shared grid."""
    a, b = code_bounds(op)
    _, lo, hi, _ = code_form(grid)
    scale = float(np.asarray(grid.entry["scale"], np.float32).reshape(()))
    low = max(lo, _nnef_round_f32(a, scale) + offset)
    high = min(hi, _nnef_round_f32(b, scale) + offset) if np.isfinite(b) else hi
    if low > lo or high < hi:
        codes = ctx.emit(R.clip(codes, int(low), int(high)))
    return codes, dequantize(ctx, codes, offset, grid, name)


def shared_grid(graph, op: Operation, cached_grid: Grid) -> Optional[Grid]:
    """The grid of ``op``'s result if it is per tensor and equal to ``cached_grid``."""
    out = graph.tensors[str(next(iter(op.outputs.values())))]
    g = grid_of(out.quantization, out.shape)
    if g is None or not g.per_tensor or not cached_grid.per_tensor:
        return None
    same = (g.lo == cached_grid.lo and g.hi == cached_grid.hi and g.zero[0] == cached_grid.zero[0]
            and np.float32(g.scale[0]) == np.float32(cached_grid.scale[0]))
    return g if same else None


def same_grid_activation(graph, op: Operation, cached_grid: Grid) -> Optional[Grid]:
    """The result grid if ``op`` is relu/literal clamp whose result shares ``cached_grid``."""
    if code_bounds(op) is None or not isinstance(op.inputs.get("x"), Identifier):
        return None
    return shared_grid(graph, op, cached_grid)


def max_pool_codes(ctx, op: Operation, codes, offset: int, grid: Grid, name: str):
    """``(codes, float value)`` of NNEF max_pool on codes (same grid in and out).

    The maximum commutes with the monotone map ``c -> c * s``, and under border
    'constant' the padded real 0 is the code 0 of zero-point-free codes (the caller
    only comes here with ``offset = 0`` for that border), so the float pool's
    zero-padding rule applies to the codes unchanged.
    """
    from ..ops.window import _window_args, window_reduce
    out = window_reduce(ctx, op, codes, "max", **_window_args(op))
    return out, dequantize(ctx, out, offset, grid, name)
