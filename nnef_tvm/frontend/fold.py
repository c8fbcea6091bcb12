"""Graph-level folding of ``batch_normalization`` into the ``conv`` that feeds it.

NNEF-Tools (from ONNX/TFLite) and torch-to-nnef often emit an inference-time
batch norm with constant parameters right after a convolution::

    c = conv(x, W, b, ...);
    y = batch_normalization(c, mean, variance, offset, scale, epsilon = e);

NNEF defines ``batch_normalization`` as
``offset + scale * (input - mean) / sqrt(variance + epsilon)`` with the
parameters broadcasting left-aligned (per channel: ``[1, C]``). With
``s = scale / sqrt(variance + epsilon)`` per output channel this equals::

    y = conv(x, W * s[c_out], (b - mean) * s + offset, ...)

so the pair becomes one conv with new constant weights and bias, and no
normalization work is left at run time.

Why here (on the checked NNEF Graph) and not as a Relax pass: the graph says
directly which tensors are ``variable`` s with loaded data, how many readers a
tensor has, and how the parameters broadcast (NNEF's left-aligned rule, which
Relax no longer sees after the frontend inserted reshapes); and the folded conv
keeps the batch norm's tensor name, so the fusion report still attributes the
kernel to NNEF names. A Relax pattern would have to match the divide/sqrt chain
the converter emits, after constant folding has already rewritten it.

Only folds when it is exactly equivalent up to float rounding: filter, bias and
all four parameters are constants (``variable`` data or literals), the conv
output is read by the batch norm alone, is not a graph output and carries no
quantization; parameters vary along the channel axis only.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ..reader.graph import Graph, Identifier, Operation

_PARAMS = ("mean", "variance", "offset", "scale")


def _readers(graph: Graph) -> dict[str, int]:
    count: dict[str, int] = {}

    def visit(v):
        if isinstance(v, Identifier):
            count[str(v)] = count.get(str(v), 0) + 1
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)
    for op in graph.operations:
        for v in op.inputs.values():
            visit(v)
    for name in graph.outputs:
        count[str(name)] = count.get(str(name), 0) + 1
    return count


def _constant(graph: Graph, producers: dict, value) -> Optional[np.ndarray]:
    """numpy value of a literal or of a loaded ``variable`` tensor, else None."""
    if isinstance(value, Identifier):
        op = producers.get(str(value))
        t = graph.tensors.get(str(value))
        if op is None or op.name != "variable" or t is None or t.data is None or t.shape is None:
            return None
        return np.asarray(t.data, dtype=np.float64).reshape([int(s) for s in t.shape])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(float(value))
    return None


def _per_channel(a: np.ndarray, rank: int, channels: int) -> Optional[np.ndarray]:
    """A parameter broadcast left-aligned to ``rank`` and varying only along axis 1 -> [C]."""
    if a.ndim > rank:
        return None
    a = a.reshape(a.shape + (1,) * (rank - a.ndim))
    if any(n != 1 for i, n in enumerate(a.shape) if i != 1) or a.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(a.reshape(-1), (channels,)).astype(np.float64)


def fold_batch_norm(graph: Graph) -> tuple[Graph, list[str]]:
    """A copy of ``graph`` with each foldable conv + batch_normalization pair merged.

    Returns ``(graph, folded)`` with ``folded`` the batch-norm result names that
    now come out of a conv (the input graph itself is never modified; tensors
    are shallow-copied, data shared).
    """
    producers = {name: op for op in graph.operations for name in op.output_names()}
    readers = _readers(graph)
    replace: dict[int, Operation] = {}      # id(conv op) -> folded conv
    drop: set[int] = set()                  # id(batch_normalization op)
    new_vars: dict[int, list[Operation]] = {}
    tensors = {n: dataclasses.replace(t) for n, t in graph.tensors.items()}
    folded: list[str] = []
    for op in graph.operations:
        if op.name != "batch_normalization" or not isinstance(op.inputs.get("input"), Identifier):
            continue
        src = str(op.inputs["input"])
        conv = producers.get(src)
        out = str(op.outputs["output"])
        if conv is None or conv.name != "conv" or id(conv) in replace or readers.get(src) != 1 \
                or src in graph.outputs or graph.tensors[src].quantization \
                or graph.tensors[out].quantization or graph.tensors[src].shape is None:
            continue
        w = _constant(graph, producers, conv.inputs.get("filter"))
        b = _constant(graph, producers, conv.inputs.get("bias", 0.0))
        eps = op.attribs.get("epsilon")
        params = [_constant(graph, producers, op.inputs.get(p)) for p in _PARAMS]
        if w is None or b is None or not isinstance(eps, (int, float)) or any(p is None for p in params):
            continue
        shape = graph.tensors[src].shape
        rank, channels = len(shape), int(shape[1])
        if w.shape[0] != channels:
            continue
        mean, var, offset, scale = (_per_channel(p, rank, channels) for p in params)
        bias = _per_channel(b, 2, channels) if b.ndim <= 2 else None
        if any(p is None for p in (mean, var, offset, scale, bias)):
            continue
        s = scale / np.sqrt(var + float(eps))
        dtype = np.asarray(graph.tensors[str(conv.inputs["filter"])].data).dtype
        new_w = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dtype)
        new_b = ((bias - mean) * s + offset).reshape(1, channels).astype(dtype)
        w_name, b_name = _fresh(tensors, out + "_folded_filter"), _fresh(tensors, out + "_folded_bias")
        ops = []
        for name, data in ((w_name, new_w), (b_name, new_b)):
            tensors[name] = dataclasses.replace(graph.tensors[str(conv.inputs["filter"])], name=name,
                                                shape=tuple(data.shape), data=data,
                                                quantization=None, label=name)
            ops.append(Operation("variable", inputs={}, outputs={"output": Identifier(name)},
                                 attribs={"shape": list(data.shape), "label": name},
                                 pos=conv.pos, origin=getattr(conv, "origin", ())))
        inputs = dict(conv.inputs, filter=Identifier(w_name), bias=Identifier(b_name))
        replace[id(conv)] = dataclasses.replace(conv, inputs=inputs,
                                                outputs={"output": Identifier(out)})
        new_vars[id(conv)] = ops
        drop.add(id(op))
        del tensors[src]
        folded.append(out)
    if not folded:
        return graph, []
    operations = []
    for op in graph.operations:
        if id(op) in drop:
            continue
        operations.extend(new_vars.get(id(op), []))
        operations.append(replace.get(id(op), op))
    return dataclasses.replace(graph, operations=operations, tensors=tensors), folded


def _fresh(tensors: dict, base: str) -> str:
    name, k = base, 1
    while name in tensors:
        k += 1
        name = f"{base}{k}"
    return name
