"""Shape inference for checked NNEF graphs (spec §2.2, §4; SPEC-NOTES §7 and §8).

:func:`infer_shapes` walks the operations in statement order (a valid topological
order) and fills ``Tensor.shape`` for every tensor. Each of the 118 standard
operations has its own shape function in :data:`SHAPE_FUNCTIONS`, compounds
included, so a graph may keep ``conv`` with bias, ``softmax``, pools, RoI ops and
so on atomic. The families live in small modules:

* :mod:`.shapes_graph`       external / constant / variable / update / copy_n / add_n
* :mod:`.shapes_elementwise` unary, binary, ternary, activations, normalizations, quantizers
* :mod:`.shapes_reduce`      reductions, moments, matmul, linear
* :mod:`.shapes_layout`      reshape, transpose, squeeze, slice, pad, concat, split, ...
* :mod:`.shapes_window`      conv family, box family, pools, resampling, RoI ops

Errors: shape errors cascade (one bad extent makes every later one meaningless),
so inference stops at the first violated rule and reports it precisely as an
:class:`NNEFError` at the operation's position, naming the operation and the
extents that disagree, e.g. ``conv: input has 4 channels but filter expects 3 x
groups 1``.

Body-less custom fragments need a consumer-supplied shape function
``custom_shapes[name](op, shape_of) -> list of output shapes`` (one entry per
result, a list of shapes for an array result); ``shape_of(value)`` returns the
shape tuple of an operand (``()`` for a literal).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..errors import NNEFError, SourcePos
from .graph import Graph, Identifier, Operation
from .shapes_common import ShapeMismatch, broadcast_to, fmt
from . import shapes_elementwise, shapes_graph, shapes_layout, shapes_reduce, shapes_window

ShapeFunction = Callable[[Operation, Callable[[Any], Any]], list]

#: One shape function per standard operation (``fn(op, shape_of) -> list``).
SHAPE_FUNCTIONS: dict[str, ShapeFunction] = {}
for _family in (shapes_graph, shapes_elementwise, shapes_reduce, shapes_layout, shapes_window):
    _overlap = SHAPE_FUNCTIONS.keys() & _family.SHAPES.keys()
    assert not _overlap, f"shape functions defined twice: {sorted(_overlap)}"
    SHAPE_FUNCTIONS.update(_family.SHAPES)
del _family, _overlap


def _error_pos(op: Operation):
    """Where to report: the user's invocation for lowered ops, else the op itself."""
    if op.origin and op.origin[0] is not None:
        return op.origin[0]
    return op.pos


def _is_extent(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v > 0


def _check_override(graph: Graph, input_shapes: dict) -> dict[str, tuple[int, ...]]:
    """Validate ``input_shapes`` (consumer overrides of external shapes, spec §2.2)."""
    externals = {}
    for op in graph.operations:
        if op.name == "external":
            out = op.outputs.get("output")
            if isinstance(out, Identifier):
                externals[str(out)] = op
    checked = {}
    for name, shape in input_shapes.items():
        op = externals.get(name)
        if op is None:
            known = ", ".join(f"'{n}'" for n in externals) or "none"
            raise NNEFError(f"input_shapes names '{name}', which is not an external input of graph "
                            f"'{graph.name}' (inputs: {known})")
        try:
            shape = tuple(shape)
        except TypeError:
            raise NNEFError(f"input shape for '{name}' must be a sequence of integers, found {shape!r}",
                            _error_pos(op)) from None
        if not all(_is_extent(s) for s in shape):
            raise NNEFError(f"input shape for '{name}' must hold positive integers, found {list(shape)!r}",
                            _error_pos(op))
        shape = tuple(int(s) for s in shape)
        declared = op.attribs.get("shape", [])
        if len(shape) != len(declared):
            raise NNEFError(f"input shape {fmt(shape)} for '{name}' has rank {len(shape)} but the "
                            f"external declares rank {len(declared)} ({fmt(declared)})",
                            _error_pos(op))
        checked[name] = shape
    return checked


def infer_shapes(graph: Graph, custom_shapes: Optional[dict[str, Callable]] = None,
                 input_shapes: Optional[dict[str, tuple]] = None) -> None:
    """Fill ``Tensor.shape`` for every tensor of ``graph`` (all shapes recomputed).

    ``input_shapes`` maps external tensor names to shapes that replace the
    declared ones (same rank, positive extents); everything downstream is
    re-propagated and re-validated. Raises :class:`NNEFError` at the first
    operation whose shape rules are violated.
    """
    custom_shapes = custom_shapes or {}
    overrides = _check_override(graph, input_shapes or {})
    shapes: dict[str, tuple[int, ...]] = {}

    def shape_of(value):
        if isinstance(value, Identifier):
            try:
                return shapes[value]      # an Identifier hashes and compares as its str
            except KeyError:
                # The checked graph guarantees definition before use.
                raise RuntimeError(f"tensor '{value}' is used before it is defined") from None
        if isinstance(value, (list, tuple)):
            return [shape_of(v) for v in value]
        return ()

    functions = SHAPE_FUNCTIONS
    for op in graph.operations:
        name = op.name
        if overrides and name == "external" and str(op.outputs.get("output")) in overrides:
            result = [overrides[str(op.outputs["output"])]]
        else:
            fn = functions.get(name)
            if fn is not None:          # a standard operation: the inlined fast path
                try:
                    result = fn(op, shape_of)
                except (ShapeMismatch, NNEFError):
                    result = _run_shape_function(op, shape_of, custom_shapes)   # re-raise, located
            else:
                result = _run_shape_function(op, shape_of, custom_shapes)
        outputs = op.outputs
        if len(outputs) == 1 and len(result) == 1:      # one output: the usual case
            out, = outputs.values()
            shape = result[0]
            if type(out) is Identifier and type(shape) is tuple:
                shapes[out] = shape
                continue
        _assign(op, result, shapes)

    for name, tensor in graph.tensors.items():
        if name in shapes:
            tensor.shape = shapes[name]
            _check_quantization(tensor)


def _check_quantization(tensor) -> None:
    """Per-channel ``graph.quant`` parameters must broadcast (left-aligned) to the tensor."""
    for key, value in (tensor.quantization or {}).items():
        if isinstance(value, (list, tuple, np.ndarray)):
            try:
                param = np.shape(value)
            except ValueError:  # jagged: the quantization reader reports it
                continue
            try:
                broadcast_to(tuple(int(e) for e in param), tensor.shape, key, f"tensor '{tensor.name}'")
            except ShapeMismatch as e:
                op = tensor.quantization.get("op-name", "quantization")
                raise NNEFError(f"{op} of '{tensor.name}': {e}", SourcePos(file="graph.quant")) from None


def _run_shape_function(op: Operation, shape_of, custom_shapes: dict) -> list:
    fn = SHAPE_FUNCTIONS.get(op.name)
    custom = fn is None
    if custom:
        fn = custom_shapes.get(op.name)
        if fn is None:
            raise NNEFError(f"{op.name}: no shape function for custom operation '{op.name}' "
                            f"(it has no body to infer shapes from); pass one as "
                            f"custom_shapes={{'{op.name}': fn}}", _error_pos(op))
    try:
        result = fn(op, shape_of)
    except ShapeMismatch as e:
        raise NNEFError(f"{op.name}: {e}", _error_pos(op)) from None
    except NNEFError as e:
        if e.pos is None or (e.pos.file is None and e.pos.line is None and e.pos.offset is None):
            raise NNEFError(e.message, _error_pos(op)) from None
        raise
    except (AssertionError, ValueError) as e:
        if not custom:
            raise
        raise NNEFError(f"{op.name}: custom shape function failed: {e}", _error_pos(op)) from None
    if custom:
        result = _check_custom_result(op, result)
    return result


def _check_custom_result(op: Operation, result) -> list:
    def as_shape(s):
        try:
            t = tuple(s)
        except TypeError:
            t = None
        if t is None or not all(_is_extent(v) for v in t):
            raise NNEFError(f"{op.name}: custom shape function returned {s!r}, "
                            f"expected a sequence of positive integers", _error_pos(op))
        return tuple(int(v) for v in t)

    if not isinstance(result, (list, tuple)):
        raise NNEFError(f"{op.name}: custom shape function must return a list with one shape "
                        f"per result, got {result!r}", _error_pos(op))
    fixed = []
    for out, s in zip(op.outputs.values(), result):
        if isinstance(out, (list, tuple)):
            if not isinstance(s, (list, tuple)) or any(isinstance(v, (int, np.integer)) for v in s):
                raise NNEFError(f"{op.name}: custom shape function must return a list of shapes "
                                f"for the array result, got {s!r}", _error_pos(op))
            fixed.append([as_shape(x) for x in s])
        else:
            fixed.append(as_shape(s))
    if len(result) != len(op.outputs):
        raise NNEFError(f"{op.name}: custom shape function returned {len(result)} shapes for "
                        f"{len(op.outputs)} results", _error_pos(op))
    return fixed


def _assign(op: Operation, result: list, shapes: dict) -> None:
    outputs = list(op.outputs.items())
    if len(result) != len(outputs):  # an internal inconsistency, not user input
        raise RuntimeError(f"shape function of '{op.name}' gave {len(result)} results "
                           f"for {len(outputs)} outputs")
    for (name, out), shape in zip(outputs, result):
        if isinstance(out, (list, tuple)):
            if not isinstance(shape, list):
                raise NNEFError(f"{op.name}: result '{name}' is a single tensor but is assigned "
                                f"to an array of {len(out)} identifiers", _error_pos(op))
            if len(shape) != len(out):
                raise NNEFError(f"{op.name}: result '{name}' is an array of {len(shape)} tensors "
                                f"but {len(out)} identifiers are assigned", _error_pos(op))
            for ident, s in zip(out, shape):
                shapes[ident] = tuple(s)
        else:
            if isinstance(shape, list):
                raise NNEFError(f"{op.name}: result '{name}' is an array of {len(shape)} tensors "
                                f"but is assigned to the single identifier '{out}'", _error_pos(op))
            shapes[out] = tuple(shape)
