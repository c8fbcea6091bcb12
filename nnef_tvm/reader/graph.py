"""The checked NNEF graph: what the reader hands to the frontend.

This mirrors the shape of the Khronos Python API on purpose (``graph.operations``
with ``inputs``/``outputs``/``attribs``), so that anyone who knows NNEF tooling can
read it, but it is our own code and carries source positions for every operation.

Conventions
-----------
* Tensor references inside ``Operation.inputs`` / ``Operation.outputs`` are
  :class:`Identifier` objects (a ``str`` subclass). Anything else in ``inputs``
  (``float``, ``int``, ``bool``) is a literal operand, e.g. ``add(x, 1.0)`` or the
  ``bias = 0.0`` default of ``conv``. Arrays of tensors (``concat``'s ``values``,
  ``split``'s results) are Python lists of those.
* ``inputs`` holds the tensor-typed parameters, ``attribs`` the attribute-typed
  ones, both in declaration order and with defaults filled in.
* ``Tensor.dtype`` is the NNEF primitive type name: ``'scalar'``, ``'integer'``,
  ``'logical'``. The frontend chooses machine types (float32, int32/64, bool).
* Shapes are tuples of ints once shape inference has run, ``None`` before.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from ..errors import SourcePos


class Identifier(str):
    """The name of a tensor in the graph (distinguishes references from string literals)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Identifier({str.__repr__(self)})"


Value = Union[Identifier, float, int, bool, str, list, tuple]


@dataclass
class Tensor:
    """A named tensor of the graph (activation, external, constant or variable)."""

    name: str
    dtype: str = "scalar"                      # 'scalar' | 'integer' | 'logical'
    shape: Optional[tuple[int, ...]] = None    # filled by shape inference
    data: Optional[np.ndarray] = None          # variable data once loaded (may be a memmap)
    quantization: Optional[dict[str, Any]] = None  # {'op-name': ..., arg: value} from graph.quant
    label: Optional[str] = None                # variable label (-> label.dat)


@dataclass
class Operation:
    """One invocation in the (possibly lowered) graph body."""

    name: str                                  # NNEF operation name, e.g. 'conv'
    inputs: dict[str, Value] = field(default_factory=dict)
    outputs: dict[str, Value] = field(default_factory=dict)
    attribs: dict[str, Any] = field(default_factory=dict)
    dtype: Optional[str] = None                # bound generic type ('scalar', ...) if generic
    pos: Optional[SourcePos] = None            # where the invocation is written
    # For operations produced by lowering a fragment, the chain of invocations
    # that led here (outermost first), so errors and fusion reports can point at
    # the user's line rather than at the stdlib.
    origin: tuple[SourcePos, ...] = ()

    def input_names(self) -> list[str]:
        """Every tensor identifier this operation reads, in order."""
        return [str(v) for v in _identifiers(self.inputs.values())]

    def output_names(self) -> list[str]:
        """Every tensor identifier this operation writes, in order."""
        return [str(v) for v in _identifiers(self.outputs.values())]


def _identifiers(values):
    for v in values:
        if isinstance(v, Identifier):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _identifiers(v)


@dataclass
class Graph:
    """A checked NNEF graph: statement order is a valid topological order."""

    name: str
    inputs: list[str]
    outputs: list[str]
    operations: list[Operation] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Model:
    """What :func:`nnef_tvm.load` returns: the graph plus where it came from.

    ``fragments`` holds the custom fragment definitions of the document (by name),
    so that later stages can lower them or report them; ``source`` is the path the
    user gave; ``files`` the container member names that were read.
    """

    graph: Graph
    source: Optional[str] = None
    version: tuple[int, int] = (1, 0)
    extensions: list[str] = field(default_factory=list)
    fragments: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    document: Any = None                       # the parsed ast.Document (for re-lowering)

    @property
    def tensors(self) -> dict[str, Tensor]:
        return self.graph.tensors

    def parameter_bytes(self) -> int:
        return sum(t.data.nbytes for t in self.graph.tensors.values() if t.data is not None)
