"""Which conv / linear / matmul operations can run on integer codes.

An operation qualifies when (NNEF names):

* its data operand (``input`` / ``A``) carries a per-tensor int8/uint8
  :class:`~.grid.Grid`;
* its weight operand (``filter`` / ``B``) carries a grid that is per tensor or
  per output channel (axis 0 of a conv or linear filter; the column axis of a
  matmul ``B``); a conv or linear filter, and a per-channel ``B``, must be a
  compile-time constant (a ``variable`` or layout ops of one) so its codes are
  computed once at compile time;
* ``conv`` uses ``border = 'constant'`` (the padded real 0 is the code ``z``);
* the bias is a literal or a compile-time constant;
* the int32 accumulator cannot overflow (``K * (max|q| + max|z|)_A * (max|q| + max|z|)_W < 2^31``).

The output's own quantization decides the epilogue (see
:mod:`.kernels`): an int8/uint8 per-tensor grid is requantized in integers,
anything else gets the dequantized real value (and its fake quantization).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...reader.graph import Graph, Identifier, Operation
from .grid import Grid, grid_of

INT8_OPS = ("conv", "linear", "matmul")
_LAYOUT_OPS = ("transpose", "reshape", "squeeze", "unsqueeze", "copy")


@dataclass
class Plan:
    """The integer plan of one operation: operand names and their grids."""

    op: Operation
    data: str
    weight: str
    data_grid: Grid
    weight_grid: Grid
    out_grid: Optional[Grid]      # None: the result leaves as a real value
    weight_axis: Optional[int]    # per-channel axis of the weight tensor as stored


def _tensor_grid(graph: Graph, name) -> Optional[Grid]:
    if not isinstance(name, Identifier):
        return None
    t = graph.tensors.get(str(name))
    return None if t is None else grid_of(t.quantization, t.shape)


def is_graph_constant(graph: Graph, name, depth: int = 0) -> bool:
    """``name`` is a ``variable`` with data, or layout ops (transpose, reshape...) of one."""
    if not isinstance(name, Identifier) or depth > 8:
        return False
    for op in graph.operations:
        if any(str(v) == str(name) for v in op.output_names()):
            if op.name == "variable":
                return graph.tensors[str(name)].data is not None
            if op.name in _LAYOUT_OPS:
                return is_graph_constant(graph, op.inputs.get("input"), depth + 1)
            return False
    return False


def _bias_ok(graph: Graph, op: Operation) -> bool:
    b = op.inputs.get("bias", 0.0)
    if isinstance(b, Identifier):
        return is_graph_constant(graph, b)
    return isinstance(b, (int, float)) and not isinstance(b, bool)


def _reduction_fits(data: Grid, weight: Grid, k: int) -> bool:
    """No partial sum of ``k`` products (raw codes or ``q - z``, plus the zero-point
    corrections) can leave int32: each factor is bounded by ``max|q| + max|z|``."""
    def span(g: Grid) -> int:
        return max(abs(g.lo), abs(g.hi)) + int(np.abs(g.zero).max())
    return k * span(data) * span(weight) < 2 ** 31


def plan_operation(graph: Graph, op: Operation) -> tuple[Optional[Plan], str]:
    """``(Plan, '')`` if ``op`` can run on integer codes, else ``(None, why not)``."""
    if op.name not in INT8_OPS:
        return None, "not a conv/linear/matmul"
    data, weight = ("A", "B") if op.name == "matmul" else ("input", "filter")
    dname, wname = op.inputs.get(data), op.inputs.get(weight)
    dgrid, wgrid = _tensor_grid(graph, dname), _tensor_grid(graph, wname)
    if dgrid is None or not dgrid.per_tensor:
        return None, f"'{data}' has no per-tensor int8/uint8 zero-point quantization"
    if wgrid is None:
        return None, f"'{weight}' has no int8/uint8 zero-point quantization"
    wshape = graph.tensors[str(wname)].shape
    wconst = is_graph_constant(graph, wname)
    if op.name == "matmul":
        out_axis = len(wshape) - (2 if op.attribs.get("transposeB", False) else 1)
        k = graph.tensors[str(dname)].shape[-1 if not op.attribs.get("transposeA", False) else -2]
    else:
        out_axis = 0
        k = int(np.prod(wshape[1:]))
        if not wconst:
            return None, f"'{weight}' is not a compile-time constant"
    if not wgrid.per_tensor and (wgrid.axis != out_axis or not wconst):
        return None, f"'{weight}' is quantized along axis {wgrid.axis}, not per output channel"
    if op.name == "conv" and op.attribs.get("border") != "constant":
        return None, f"border '{op.attribs.get('border')}' (only 'constant' pads with the zero point)"
    if op.name != "matmul" and not _bias_ok(graph, op):
        return None, "the bias is not a compile-time constant"
    if not _reduction_fits(dgrid, wgrid, int(k)):
        return None, f"a reduction over {k} products could overflow int32"
    out = str(next(iter(op.outputs.values())))
    ot = graph.tensors[out]
    ogrid = grid_of(ot.quantization, ot.shape)
    if ogrid is not None and not ogrid.per_tensor:
        ogrid = None
    return Plan(op=op, data=str(dname), weight=str(wname), data_grid=dgrid, weight_grid=wgrid,
                out_grid=ogrid, weight_axis=None if wgrid.per_tensor else out_axis), ""


def int8_report(graph: Graph) -> list[tuple[Operation, str]]:
    """Every conv/linear/matmul of ``graph`` with '' (integer) or why it stays float."""
    return [(op, plan_operation(graph, op)[1]) for op in graph.operations if op.name in INT8_OPS]


def int8_applicable(graph: Graph) -> bool:
    """True when ``graph`` has at least one conv/linear/matmul and all of them qualify."""
    report = int8_report(graph)
    return bool(report) and all(not why for _, why in report)
