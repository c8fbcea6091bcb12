"""Integer converters of conv, linear and matmul (``quantization='int8'``).

Each one runs the operation on integer codes (see :mod:`.kernels`): the data
operand is quantized once (or its codes are reused when its producer already
made them), constant weights are quantized at compile time and stored as
zero-point-free int8/uint8 constants (int16 only if ``q - z`` of the actual
weights needs 9 bits), ``conv2d`` / ``matmul`` accumulate in int32
(``out_dtype='int32'``), and the epilogue requantizes to the result's grid.
Data held as raw codes (offset ``z``) is padded with ``z`` and corrected by
``z * sum(w)`` (exact integer arithmetic).

When a check only possible at conversion time fails (a weight that is not a
constant after all, a groups value that does not fit), the standard float
converter handles the operation instead, so the fake-quant semantics apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from tvm import relax

from ...reader.graph import Identifier
from .. import registry
from ..fake_quant import _constant_value
from ..padding import crop, forward_window, pad_with_border, relax_padding
from .grid import Grid, storage_dtype
from .kernels import quantize_activation, requantize
from .plan import Plan, plan_operation

R = relax.op
_CONV = {1: R.nn.conv1d, 2: R.nn.conv2d, 3: R.nn.conv3d}


class _Fallback(Exception):
    """The integer path does not apply after all; use the float converter."""


@dataclass
class Int8State:
    """Per-conversion memory of the integer path.

    ``codes``: tensor name -> ((codes expr, offset), grid) for results produced as codes,
    so a consumer with the same grid reuses them instead of re-quantizing.
    ``exact``: tensor name -> the float value already on its grid (the
    dequantized codes), which :func:`~nnef_tvm.frontend.fake_quant.fake_quantize`
    leaves as it is (quantizing it again is the identity).
    """

    codes: dict = field(default_factory=dict)
    exact: dict = field(default_factory=dict)


def int8_state(ctx) -> Int8State:
    state = ctx.__dict__.get("_int8_state")
    if state is None:
        state = ctx.__dict__["_int8_state"] = Int8State()
    return state


def _same_grid(a: Grid, b: Grid) -> bool:
    return (a.per_tensor and b.per_tensor and a.lo == b.lo and a.hi == b.hi
            and np.float32(a.scale[0]) == np.float32(b.scale[0]) and a.zero[0] == b.zero[0])


def _data_codes(ctx, name: str, grid: Grid) -> tuple[relax.Expr, int]:
    """``(codes, offset)`` of tensor ``name``: its producer's codes when it made them."""
    cached = int8_state(ctx).codes.get(name)
    if cached is not None and _same_grid(cached[1], grid):
        return cached[0]
    return quantize_activation(ctx, ctx.value(name), grid)


def _constant(ctx, value) -> np.ndarray:
    data = _constant_value(ctx, value)
    if data is None:
        raise _Fallback()
    return data


def _weight_codes(ctx, name: str, grid: Grid, axis: Optional[int]) -> np.ndarray:
    codes = grid.centered(_constant(ctx, ctx.value(name)), axis)
    return codes.astype(storage_dtype(int(codes.min(initial=0)), int(codes.max(initial=0))))


def _const(codes: np.ndarray) -> relax.Expr:
    return relax.const(codes, str(codes.dtype))


def _bias_vector(ctx, op, channels: int) -> Optional[np.ndarray]:
    b = op.inputs.get("bias", 0.0)
    if isinstance(b, Identifier):
        data = _constant(ctx, ctx.value(b)).astype(np.float64).reshape(-1)
    else:
        data = np.asarray([float(b)])
    if data.size not in (1, channels):
        raise _Fallback()
    return np.broadcast_to(data, (channels,)).copy()


def _weight_scale(plan: Plan, channels: int) -> np.ndarray:
    return np.broadcast_to(plan.weight_grid.scale, (channels,)) * plan.data_grid.scale[0]


def _finish(ctx, plan: Plan, acc, axis: int, channels: int, bias) -> relax.Expr:
    name = str(next(iter(plan.op.outputs.values())))
    codes, value = requantize(ctx, acc, axis, _weight_scale(plan, channels), bias,
                              plan.out_grid, name)
    state = int8_state(ctx)
    if codes is not None:
        state.codes[name] = (codes, plan.out_grid)
        state.exact[name] = value
    return value


def _minus(ctx, acc, offset: int, sums) -> relax.Expr:
    """``acc - offset * sums`` (the data zero point's correction); nothing if offset = 0."""
    if not offset:
        return acc
    if isinstance(sums, np.ndarray):
        sums = relax.const((offset * sums.astype(np.int64)).astype(np.int32), "int32")
    else:
        sums = R.multiply(sums, relax.const(offset, "int32"))
    return ctx.emit(R.subtract(acc, sums))


def _conv(ctx, op, plan: Plan) -> relax.Expr:
    """NNEF conv (border 'constant'): the padding holds the code of the real 0."""
    xs, ws = ctx.shape(plan.data), ctx.shape(plan.weight)
    nsp = len(xs) - 2
    groups = int(op.attribs["groups"]) or xs[1]
    if nsp not in _CONV or len(ws) != len(xs) or xs[1] % groups or ws[0] % groups \
            or ws[1] * groups != xs[1]:
        raise _Fallback()
    win = forward_window(xs[2:], ws[2:], op.attribs["padding"], op.attribs["stride"],
                         op.attribs["dilation"])
    x, offset = _data_codes(ctx, plan.data, plan.data_grid)
    pads = [(0, 0), (0, 0)] + win.padding
    if offset:      # raw codes: pad with the zero point, subtract offset * sum(w) below
        x = pad_with_border(ctx, x, pads, "constant", value=offset)
        pads = [(0, 0)] * len(xs)
    else:
        x, pads = crop(ctx, x, pads)
    w = _weight_codes(ctx, plan.weight, plan.weight_grid, 0)
    acc = ctx.emit(_CONV[nsp](x, _const(w), strides=win.stride, padding=relax_padding(pads[2:]),
                              dilation=win.dilation, groups=groups, out_dtype="int32"))
    wsum = w.astype(np.int64).sum(axis=tuple(range(1, w.ndim))).reshape([1, -1] + [1] * nsp)
    acc = _minus(ctx, acc, offset, wsum)
    return _finish(ctx, plan, acc, 1, ws[0], _bias_vector(ctx, op, ws[0]))


def _swap_last(ctx, x):
    rank = ctx.rank(x)
    return ctx.emit(R.permute_dims(x, list(range(rank - 2)) + [rank - 1, rank - 2]))


def _linear(ctx, op, plan: Plan) -> relax.Expr:
    """linear(input, filter, bias) = input @ filter^T + bias; filter codes pre-transposed."""
    if ctx.rank(plan.data) != 2 or ctx.rank(plan.weight) != 2:
        raise _Fallback()
    x, offset = _data_codes(ctx, plan.data, plan.data_grid)
    wt = np.ascontiguousarray(_weight_codes(ctx, plan.weight, plan.weight_grid, 0).T)
    acc = ctx.emit(R.matmul(x, _const(wt), out_dtype="int32"))
    acc = _minus(ctx, acc, offset, wt.astype(np.int64).sum(axis=0, keepdims=True))
    channels = wt.shape[1]
    return _finish(ctx, plan, acc, 1, channels, _bias_vector(ctx, op, channels))


def _sum_codes(ctx, codes, axis: int) -> relax.Expr:
    return ctx.emit(R.sum(R.astype(codes, "int32"), axis=[axis], keepdims=True))


def _matmul(ctx, op, plan: Plan) -> relax.Expr:
    """matmul(A, B, transposeA, transposeB); constant B codes pre-transposed.

    With raw codes (offsets ``o_a``, ``o_b``): ``sum (a - o_a)(b - o_b) = sum a b
    - o_a colsum(b) - o_b rowsum(a) + K o_a o_b``.
    """
    a, oa = _data_codes(ctx, plan.data, plan.data_grid)
    if op.attribs.get("transposeA", False):
        a = _swap_last(ctx, a)
    k = ctx.shape(a)[-1]
    wvalue = ctx.value(plan.weight)
    rank = ctx.rank(wvalue)
    if _constant_value(ctx, wvalue) is not None:
        b, ob = _weight_codes(ctx, plan.weight, plan.weight_grid, plan.weight_axis), 0
        if op.attribs.get("transposeB", False):
            b = np.swapaxes(b, -1, -2)
        b = np.ascontiguousarray(b)
        colsum = b.astype(np.int64).sum(axis=-2, keepdims=True)
        b = _const(b)
    elif plan.weight_grid.per_tensor:
        b, ob = _data_codes(ctx, plan.weight, plan.weight_grid)
        if op.attribs.get("transposeB", False):
            b = _swap_last(ctx, b)
        colsum = _sum_codes(ctx, b, rank - 2) if oa else None
    else:
        raise _Fallback()
    acc = ctx.emit(R.matmul(a, b, out_dtype="int32"))
    acc = _minus(ctx, acc, oa, colsum)
    if ob:
        acc = _minus(ctx, acc, ob, _sum_codes(ctx, a, rank - 1))
        if oa:
            acc = ctx.emit(R.add(acc, relax.const(k * oa * ob, "int32")))
    channels = ctx.shape(acc)[-1]
    return _finish(ctx, plan, acc, rank - 1, channels, None)


_INT8 = {"conv": _conv, "linear": _linear, "matmul": _matmul}


def _activation_converter(ctx, op):
    """relu / literal clamp on the codes of an integer result with the same grid."""
    from .activations import clamp_codes, same_grid_activation
    x = op.inputs.get("x")
    cached = int8_state(ctx).codes.get(str(x)) if isinstance(x, Identifier) else None
    if cached is None:
        return None
    grid = same_grid_activation(ctx.graph, op, cached[1])
    if grid is None:
        return None

    def convert(ctx, op):
        name = str(next(iter(op.outputs.values())))
        codes, value = clamp_codes(ctx, op, cached[0][0], cached[0][1], grid, name)
        state = int8_state(ctx)
        state.codes[name] = ((codes, cached[0][1]), grid)
        state.exact[name] = value
        return value
    return convert


def _max_pool_converter(ctx, op):
    """max_pool of an integer result with the same grid, on its codes."""
    from .activations import max_pool_codes, shared_grid
    x = op.inputs.get("input")
    cached = int8_state(ctx).codes.get(str(x)) if isinstance(x, Identifier) else None
    if cached is None:
        return None
    (codes, offset), grid = cached[0], shared_grid(ctx.graph, op, cached[1])
    if grid is None or (offset and op.attribs.get("border") != "ignore"):
        return None       # raw codes: the padded real 0 is not code 0

    def convert(ctx, op):
        name = str(next(iter(op.outputs.values())))
        out, value = max_pool_codes(ctx, op, codes, offset, grid, name)
        state = int8_state(ctx)
        state.codes[name] = ((out, offset), grid)
        state.exact[name] = value
        return value
    return convert


def int8_converter(ctx, op):
    """The integer converter ``fn(ctx, op)`` for ``op``, or None when it stays float
    (also whenever NNEF ``scalar`` is not float32: the dequantized values are float32)."""
    if ctx.options.dtype != "float32":
        return None
    if op.name in ("relu", "clamp"):
        return _activation_converter(ctx, op)
    if op.name == "max_pool":
        return _max_pool_converter(ctx, op)
    if op.name not in _INT8:
        return None
    plan, _ = plan_operation(ctx.graph, op)
    if plan is None:
        return None
    float_converter = registry.lookup(op.name, ctx.options.extensions)

    def convert(ctx, op):
        try:
            return _INT8[op.name](ctx, op, plan)
        except _Fallback:
            return float_converter(ctx, op)
    return convert
