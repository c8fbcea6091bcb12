"""Integer arithmetic for quantized models (``quantization='int8'``).

The NNEF meaning of graph.quant is fake quantization (§5.3, SPEC-NOTES §6.3):
each listed tensor behaves as if its quantize op ran right after it was
produced. In int8 mode the frontend keeps that meaning everywhere (every other
op computes dequantize -> float -> fake-quantize, exactly as in 'fake' mode) but
runs ``conv``, ``linear`` and ``matmul`` whose operands carry int8/uint8
zero-point quantization on integer codes:

* :mod:`.grid` — when a graph.quant entry is an int8/uint8 grid;
* :mod:`.plan` — which operations qualify (also what 'auto' checks);
* :mod:`.kernels` — quantize / int32 accumulate / requantize building blocks;
* :mod:`.converters` — the integer conv / linear / matmul converters.

The integer result is the exact real value of the spec's formula rounded once
(in float64) by the result's quantize op; the fake-quant float path rounds the
float32 products and sums first, so the two agree except for results within
float32 noise of a rounding tie (see the tests for the measured counts).
"""
from .converters import int8_converter, int8_state
from .grid import Grid, grid_of
from .plan import INT8_OPS, int8_applicable, int8_report, plan_operation

__all__ = ["int8_converter", "int8_state", "Grid", "grid_of", "INT8_OPS", "int8_applicable",
           "int8_report", "plan_operation"]
