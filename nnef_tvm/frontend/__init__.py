"""Frontend: checked NNEF Graph -> TVM Relax IRModule, one converter per op.

Entry points:

* :func:`from_nnef` — a :class:`~nnef_tvm.reader.graph.Model` (or a shape-inferred
  :class:`~nnef_tvm.reader.graph.Graph`) to an ``IRModule`` whose ``main`` takes
  the graph inputs and returns the graph outputs (see
  :mod:`nnef_tvm.frontend.convert` for the exact interface, variables and
  ``update``).
* :func:`check_supported` — one located error listing every unsupported op.
* :func:`supported_ops` — the names with a native converter.

Compound operations without a native converter are *lowered* through their
fragment bodies when the Model still carries its parsed document: the graph is
rebuilt by the reader's semantic checker with ``lower=`` every compound that
has no converter, so only supported primitives reach the converters.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional, Union

from ..reader.graph import Graph, Model
from .context import ConvertContext, ConvertOptions
from .convert import check_supported, convert_graph
from .registry import converter, lookup, supported_ops

__all__ = ["from_nnef", "quantization_mode", "check_supported", "supported_ops", "converter", "lookup",
           "ConvertContext", "ConvertOptions", "relower_graph"]


def relower_graph(model: Model, extensions: Iterable[str] = ()) -> Optional[Graph]:
    """Rebuild ``model``'s graph from its document, lowering unsupported compounds.

    Every fragment with a body whose name has no converter is expanded (custom
    fragments and standard compounds alike). Shapes are re-inferred with the
    model's external shapes (so earlier ``input_shapes`` overrides survive), and
    the variable data / quantization already attached are carried over.
    Returns None when that is impossible (no document, or the reader modules are
    not available), so the caller keeps ``model.graph``.
    """
    if getattr(model, "document", None) is None:
        return None
    try:  # the reader's semantic and shape modules (optional until they land)
        from ..reader import semantics
        from ..reader.shapes import infer_shapes
    except ImportError:
        return None
    supported = supported_ops(extensions)
    extensions = tuple(extensions)
    kw = {"extensions": extensions} if extensions else {}
    graph = semantics.build_graph(model.document, lower=lambda name: name not in supported, **kw)
    if isinstance(graph, tuple):
        graph = graph[0]
    old = model.graph.tensors
    shapes = {n: old[n].shape for n in graph.inputs if n in old and old[n].shape is not None}
    custom = None
    if extensions:
        from ..reader.extensions import resolve, shape_functions
        custom = shape_functions(resolve(extensions))
    infer_shapes(graph, input_shapes=shapes or None, custom_shapes=custom)
    for name, t in graph.tensors.items():
        if name in old:
            if t.data is None:
                t.data = old[name].data
            if t.quantization is None:
                t.quantization = old[name].quantization
    return graph


QUANTIZATION_MODES = ("auto", "fake", "int8", "none")


def quantization_mode(model: Union[Model, Graph], requested: str = "auto") -> str:
    """The quantization actually applied for ``requested`` ('auto' | 'fake' | 'int8' | 'none').

    'auto' -> 'int8' when the graph has conv/linear/matmul operations and all of
    them qualify for integer arithmetic (:func:`nnef_tvm.frontend.int8.int8_applicable`),
    else 'fake' when any tensor carries graph.quant information, else 'none'.
    'int8' is 'fake' with those operations on integer codes. 'fake' simulates every listed tensor as if its quantize op ran right
    after it was produced (NNEF §5.3, round = floor(x + 0.5)); 'none' computes
    in real arithmetic on the dequantized variables.
    """
    if requested not in QUANTIZATION_MODES:
        from ..errors import NNEFError
        raise NNEFError(f"quantization must be one of {', '.join(QUANTIZATION_MODES)}, "
                        f"not {requested!r}")
    if requested != "auto":
        return requested
    graph = model.graph if isinstance(model, Model) else model
    if not any(t.quantization for t in graph.tensors.values()):
        return "none"
    from .int8 import int8_applicable
    return "int8" if int8_applicable(graph) else "fake"


def _needs_lowering(graph: Graph, extensions) -> bool:
    supported = supported_ops(extensions)
    return any(op.name not in supported for op in graph.operations)


def _with_input_shapes(graph: Graph, input_shapes: dict) -> Graph:
    """A copy of ``graph`` (tensors copied, data shared) with shapes (re-)inferred,
    optionally for new input shapes; the caller's graph is left untouched."""
    from ..reader.shapes import infer_shapes

    copy = Graph(name=graph.name, inputs=list(graph.inputs), outputs=list(graph.outputs),
                 operations=list(graph.operations),
                 tensors={n: dataclasses.replace(t) for n, t in graph.tensors.items()})
    infer_shapes(copy, input_shapes={k: tuple(int(s) for s in v) for k, v in input_shapes.items()}
                 or None)
    return copy


def from_nnef(model: Union[Model, Graph], *, keep_params: bool = False, dtype: str = "float32",
              int_dtype: str = "int32", extensions: Iterable[str] = (),
              input_shapes: Optional[dict] = None, fake_quantize: bool = False,
              fold_batch_norm: bool = True, int8: bool = False):
    """Convert an NNEF model to a Relax ``IRModule``.

    ``model``: a Model (from the reader), a path to load, or a Graph (shapes are
    inferred on a copy when missing).
    ``keep_params``: variables become extra ``main`` parameters (after the inputs)
    instead of bound constants; then ``(mod, params)`` is returned, ``params``
    mapping variable names to numpy arrays.
    ``dtype`` / ``int_dtype``: machine types of NNEF ``scalar`` / ``integer``.
    ``extensions``: converter extension sets to enable (e.g. ``('tract',)``).
    ``input_shapes``: optional ``{input name: shape}`` overriding ``external``
    shapes (re-runs shape inference).
    ``fake_quantize``: simulate ``graph.quant`` by passing each quantized real
    tensor through its fake-quantization operation (default: real arithmetic).
    ``int8``: like ``fake_quantize`` (implies it), with conv/linear/matmul whose
    operands carry int8/uint8 zero-point quantization computed on integer codes
    (int32 accumulation, requantized with the result's quantize op; see
    :mod:`nnef_tvm.frontend.int8`).
    ``fold_batch_norm``: merge ``conv`` + constant ``batch_normalization`` pairs
    into one conv with new weights (see :mod:`nnef_tvm.frontend.fold`); never
    with ``keep_params`` (the variables stay the caller's parameters).

    Raises NNEFError (listing every unsupported op) before any conversion work.
    """
    extensions = tuple(extensions)
    if isinstance(model, (str, os.PathLike)):
        from ..reader.loader import load
        model = load(model)
    graph = model.graph if isinstance(model, Model) else model
    if isinstance(model, Model) and _needs_lowering(graph, extensions):
        relowered = relower_graph(model, extensions)
        if relowered is not None:
            graph = relowered
    check_supported(graph, extensions)
    if fold_batch_norm and not keep_params:
        from .fold import fold_batch_norm as _fold
        graph, _ = _fold(graph)
    if input_shapes or any(t.shape is None for t in graph.tensors.values()):
        graph = _with_input_shapes(graph, dict(input_shapes or {}))
    options = ConvertOptions(dtype=dtype, int_dtype=int_dtype, keep_params=keep_params,
                             extensions=extensions, fake_quantize=fake_quantize or int8,
                             int8=int8)
    mod, params = convert_graph(graph, options)
    if keep_params:
        return mod, params
    return mod
