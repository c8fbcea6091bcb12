"""Reference files of quantized models hold integer codes; NNEF tensors hold real values.

A zoo ``reference.npz`` written by the source runtime of a quantized model (the
TFLite interpreter of a full-integer int8 model) stores its inputs and outputs
as int8 *codes*. In NNEF a quantized tensor still denotes real values and its
``graph.quant`` entry only says how they are represented (spec §4.9.5 / §5.3),
so a compiled model takes and returns real numbers. Feeding codes as reals, or
subtracting real outputs from codes, measures nothing (the benchmark page once
showed ``max err 1e+02`` for a model whose outputs were within one step).

This module converts between the two with the tensor's own quantization:
codes -> reals for the fed inputs and the compared reference outputs, and the
error of an output in quantization steps (its absolute error divided by the
tensor's step: ``scale`` for ``zero_point_linear_quantize``, ``(max - min) / r``
for the min/max forms), which is the unit the int8 tolerances are written in.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import NNEFError
from ..reader.quant import dequantize


def _is_codes(array: np.ndarray, quant: Optional[dict]) -> bool:
    return bool(quant) and np.issubdtype(np.asarray(array).dtype, np.integer)


def codes_to_real(array: np.ndarray, quant: dict) -> Optional[np.ndarray]:
    """Real float32 values of integer ``array`` under ``quant`` (None: not a form we can map)."""
    try:
        return dequantize(np.asarray(array), None, quant)
    except NNEFError:
        return None


def real_feed(feed: dict, graph, input_dtypes: dict) -> tuple[dict, list[str]]:
    """``feed`` with integer-code inputs of quantized float inputs dequantized.

    Only inputs whose tensor carries quantization, whose array is integer and
    whose compiled input is a float type are converted (an integer model input
    takes its codes as they are). Returns the new feed and the converted names.
    """
    out, converted = dict(feed), []
    for name, value in feed.items():
        tensor = graph.tensors.get(name) if graph is not None else None
        quant = tensor.quantization if tensor is not None else None
        dtype = input_dtypes.get(name, "float32")
        if not _is_codes(value, quant) or not np.issubdtype(np.dtype(dtype), np.floating):
            continue
        real = codes_to_real(value, quant)
        if real is not None:
            out[name] = real.astype(dtype)
            converted.append(name)
    return out, converted


def real_reference(outputs: dict, graph) -> tuple[dict, dict]:
    """Reference outputs in real units, and {name: quantization} of those that were codes."""
    out, grids = dict(outputs), {}
    for name, value in outputs.items():
        tensor = graph.tensors.get(name) if graph is not None else None
        quant = tensor.quantization if tensor is not None else None
        if not _is_codes(value, quant):
            continue
        real = codes_to_real(value, quant)
        if real is not None:
            out[name] = real
            grids[name] = quant
    return out, grids


def step_size(quant: dict, rank: int) -> Optional[np.ndarray]:
    """One quantization step of ``quant`` in real units (broadcast left-aligned to ``rank``)."""
    op = quant.get("op-name")

    def arg(key):
        a = np.asarray(quant[key], dtype=np.float64)
        return a.reshape(a.shape + (1,) * max(0, rank - a.ndim))
    if op == "zero_point_linear_quantize":
        return arg("scale")
    if op in ("min_max_linear_quantize", "linear_quantize"):
        bits = int(quant["bits"])
        r = 2 ** bits - 1
        if op == "min_max_linear_quantize" and quant.get("signed") and quant.get("symmetric"):
            r -= 1
        return (arg("max") - arg("min")) / r
    return None


def error_in_steps(got: dict, want_real: dict, grids: dict) -> Optional[float]:
    """Largest |got - reference| in quantization steps over the outputs that were codes."""
    worst = None
    for name, quant in grids.items():
        if name not in got:
            return None
        a = np.asarray(got[name], dtype=np.float64)
        b = np.asarray(want_real[name], dtype=np.float64)
        if a.shape != b.shape:
            if a.size != b.size:
                return float("inf")
            a = a.reshape(b.shape)
        step = step_size(quant, b.ndim)
        if step is None:
            continue
        d = float(np.max(np.abs(a - b) / step)) if b.size else 0.0
        worst = d if worst is None else max(worst, d)
    return worst
