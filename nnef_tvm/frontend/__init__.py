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

from typing import Iterable, Optional, Union

from ..errors import NNEFError
from ..reader.graph import Graph, Model
from .context import ConvertContext, ConvertOptions
from .convert import check_supported, convert_graph
from .registry import converter, lookup, supported_ops

__all__ = ["from_nnef", "check_supported", "supported_ops", "converter", "lookup",
           "ConvertContext", "ConvertOptions", "relower_graph"]


def relower_graph(model: Model, extensions: Iterable[str] = ()) -> Optional[Graph]:
    """Rebuild ``model``'s graph from its document, lowering unsupported compounds.

    Returns None when that is impossible (no document, or the reader's
    semantics module is not available), so the caller keeps ``model.graph``.
    """
    if getattr(model, "document", None) is None:
        return None
    try:
        from ..reader import semantics  # written by the reader; optional until it lands
    except ImportError:
        return None
    build = getattr(semantics, "build_graph", None)
    if build is None:
        return None
    supported = supported_ops(extensions)
    graph = build(model.document, lower=lambda name: name not in supported)
    if isinstance(graph, Model):
        graph = graph.graph
    # carry over what the reader attached to the tensors (data, quantization)
    for name, t in graph.tensors.items():
        old = model.graph.tensors.get(name)
        if old is not None:
            if t.data is None:
                t.data = old.data
            if t.shape is None:
                t.shape = old.shape
    if any(t.shape is None for t in graph.tensors.values()):
        try:
            from ..reader.shapes import infer_shapes
        except ImportError:
            return None
        infer_shapes(graph)
    return graph


def _needs_lowering(graph: Graph, extensions) -> bool:
    supported = supported_ops(extensions)
    return any(op.name not in supported for op in graph.operations)


def _override_input_shapes(graph: Graph, input_shapes: dict) -> None:
    unknown = [n for n in input_shapes if n not in graph.inputs]
    if unknown:
        raise NNEFError(f"input_shapes names unknown graph inputs: {', '.join(unknown)} "
                        f"(inputs are: {', '.join(graph.inputs)})")
    for op in graph.operations:
        if op.name == "external" and str(op.outputs["output"]) in input_shapes:
            shape = [int(s) for s in input_shapes[str(op.outputs["output"])]]
            if any(s <= 0 for s in shape):
                raise NNEFError(f"input shape for '{op.outputs['output']}' must be positive: {shape}")
            op.attribs["shape"] = shape
    try:
        from ..reader.shapes import infer_shapes
    except ImportError as e:  # pragma: no cover - until the shapes module lands
        raise NNEFError("input_shapes needs shape inference (nnef_tvm.reader.shapes)") from e
    for t in graph.tensors.values():
        if t.name not in input_shapes:
            t.shape = None
        else:
            t.shape = tuple(int(s) for s in input_shapes[t.name])
    infer_shapes(graph)


def from_nnef(model: Union[Model, Graph], *, keep_params: bool = False, dtype: str = "float32",
              int_dtype: str = "int32", extensions: Iterable[str] = (),
              input_shapes: Optional[dict] = None):
    """Convert an NNEF model to a Relax ``IRModule``.

    ``model``: a Model (from the reader) or a Graph whose shapes are inferred.
    ``keep_params``: variables become extra ``main`` parameters (after the inputs)
    instead of bound constants; then ``(mod, params)`` is returned, ``params``
    mapping variable names to numpy arrays.
    ``dtype`` / ``int_dtype``: machine types of NNEF ``scalar`` / ``integer``.
    ``extensions``: converter extension sets to enable (e.g. ``('tract',)``).
    ``input_shapes``: optional ``{input name: shape}`` overriding ``external``
    shapes (re-runs shape inference).

    Raises NNEFError (listing every unsupported op) before any conversion work.
    """
    extensions = tuple(extensions)
    graph = model.graph if isinstance(model, Model) else model
    if isinstance(model, Model) and _needs_lowering(graph, extensions):
        relowered = relower_graph(model, extensions)
        if relowered is not None:
            graph = relowered
    check_supported(graph, extensions)
    if input_shapes:
        _override_input_shapes(graph, dict(input_shapes))
    options = ConvertOptions(dtype=dtype, int_dtype=int_dtype, keep_params=keep_params,
                             extensions=extensions)
    mod, params = convert_graph(graph, options)
    if keep_params:
        return mod, params
    return mod
