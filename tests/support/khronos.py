"""Adapter: run the Khronos reference parser (test oracle) and return *our* Graph objects.

Used where a test needs a graph before, or independently of, our own parser, and
for differential tests (same document through both readers).
"""
from __future__ import annotations

import numpy as np

from nnef_tvm.reader.graph import Graph, Identifier, Operation, Tensor

try:
    import nnef as _khronos
except ImportError:  # pragma: no cover - the oracle is a test extra
    _khronos = None


def _convert_value(v):
    if _khronos is not None and isinstance(v, _khronos.Identifier):
        return Identifier(str(v))
    if isinstance(v, list):
        return [_convert_value(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_convert_value(x) for x in v)
    if isinstance(v, np.ndarray):
        return v
    return v


def khronos_graph(text: str, *, lowered=(), infer_shapes: bool = True,
                  custom_shapes: dict | None = None) -> Graph:
    """Parse ``text`` with the Khronos parser and convert it to our Graph.

    ``lowered``: compound op names the Khronos parser should expand.
    """
    if _khronos is None:
        import pytest
        pytest.skip("Khronos nnef package not installed")
    g = _khronos.parse_string(text, lowered=list(lowered))
    if infer_shapes:
        _khronos.infer_shapes(g, custom_shapes=custom_shapes or {})
    ops = [
        Operation(
            name=op.name,
            inputs={k: _convert_value(v) for k, v in op.inputs.items()},
            outputs={k: _convert_value(v) for k, v in op.outputs.items()},
            attribs={k: _convert_value(v) for k, v in op.attribs.items()},
            dtype=op.dtype,
        )
        for op in g.operations
    ]
    tensors = {}
    for t in g.tensors.values():
        shape = tuple(t.shape) if (infer_shapes and t.shape is not None) else None
        label = None
        for op in g.operations:
            if op.name == "variable" and str(op.outputs["output"]) == t.name:
                label = op.attribs["label"]
        tensors[t.name] = Tensor(name=t.name, dtype=t.dtype, shape=shape, data=t.data,
                                 quantization=dict(t.quantization) or None, label=label)
    return Graph(name=g.name, inputs=list(g.inputs), outputs=list(g.outputs),
                 operations=ops, tensors=tensors)
