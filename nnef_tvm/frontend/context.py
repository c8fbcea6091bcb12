"""The state a converter sees while one NNEF graph is turned into Relax.

A converter (see :mod:`nnef_tvm.frontend.registry`) is called as
``fn(ctx, op)`` with a :class:`ConvertContext` and the
:class:`~nnef_tvm.reader.graph.Operation`, and returns the Relax value(s) of the
op's results. It should only *build* expressions through the context; the
driver (:mod:`nnef_tvm.frontend.convert`) binds the results to the NNEF tensor
names and checks their shapes against shape inference.

What the context offers (stable API shared by all op families)
---------------------------------------------------------------
``ctx.bb``
    The :class:`tvm.relax.BlockBuilder` (inside a dataflow block).
``ctx.graph``, ``ctx.options``
    The graph being converted; the conversion options (dtype names...).
``ctx.input(op, param, dtype=None)``
    The Relax value of a tensor-typed parameter: an identifier gives the value
    bound to that tensor; a literal (``add(x, 1.0)``, ``bias = 0.0``) gives a
    rank-0 ``relax.const`` of ``dtype`` (default: the machine type of the
    parameter's NNEF type, guessed from the literal's Python type).
``ctx.inputs_list(op, param)``
    The same for an array parameter (``concat``'s ``values``).
``ctx.operand(value, dtype=None)`` / ``ctx.value(name)``
    The same for a raw operand (identifier, literal or Relax expr) / a tensor name.
``ctx.attr(op, name)``
    An attribute value (defaults are already filled in by the reader).
``ctx.shape(value)``
    NNEF shape tuple of an identifier (from shape inference), a literal (``()``)
    or a Relax expression (from its static type).
``ctx.rank(value)``
    ``len(ctx.shape(value))``.
``ctx.dtype(nnef_type)``
    Machine dtype for ``'scalar'`` / ``'integer'`` / ``'logical'`` (also accepts a
    machine dtype and returns it unchanged).
``ctx.value_dtype(expr)``
    The dtype of a Relax expression.
``ctx.result_shape(op, name=None)`` / ``ctx.result_dtype(op, name=None)``
    Inferred shape / machine dtype of a result tensor (first result by default).
``ctx.const(value, dtype='scalar', shape=None)``
    A Relax constant (numbers, lists or numpy arrays).
``ctx.emit(expr)``
    Emit a binding and return the Relax variable (its static type is then known).
``ctx.broadcast_operands(*exprs)``
    NNEF left-aligned broadcasting: every operand of lower rank (except rank 0)
    is reshaped with trailing unit extents to the highest rank, so that Relax's
    right-aligned broadcasting then does the NNEF thing (``[1, C]`` against
    ``[N, C, H, W]`` becomes ``[1, C, 1, 1]``). Returns the list of exprs.
``ctx.broadcast_to_rank(expr, rank)``
    Pad one operand with trailing unit extents up to ``rank``.
``ctx.error(op, message)``
    An :class:`~nnef_tvm.errors.NNEFError` located at the op's source position
    (use for user-input problems a converter finds, e.g. unsupported attribute
    combinations): ``raise ctx.error(op, "...")``.
``ctx.nnef_round(expr)``
    NNEF ``round`` = ``floor(x + 0.5)`` (Relax ``round`` is half-to-even).
``ctx.param_vars`` / ``ctx.updates``
    Variables kept as ``main`` parameters; ``(variable, result)`` pairs of ``update``.
``norm_axes(axes, rank)`` (module function)
    Axes as non-negative ints.

Machine types: NNEF ``scalar`` -> ``options.dtype`` (float32 by default),
``integer`` -> ``options.int_dtype`` (int32), ``logical`` -> ``bool``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import tvm
from tvm import relax

from ..errors import NNEFError
from ..reader.graph import Graph, Identifier, Operation


@dataclass
class ConvertOptions:
    """Conversion options chosen by the caller of :func:`from_nnef`."""

    dtype: str = "float32"        # machine type of NNEF 'scalar'
    int_dtype: str = "int32"      # machine type of NNEF 'integer'
    keep_params: bool = False     # variables as function parameters instead of constants
    extensions: tuple = ()        # enabled converter extension sets (e.g. 'tract')
    fake_quantize: bool = False   # simulate graph.quant with fake-quantization ops
    int8: bool = False            # conv/linear/matmul on integer codes (frontend.int8)


@dataclass
class ConvertContext:
    """Conversion state: the block builder and the NNEF-name -> Relax-value table."""

    graph: Graph
    bb: relax.BlockBuilder
    options: ConvertOptions = field(default_factory=ConvertOptions)
    values: dict[str, relax.Expr] = field(default_factory=dict)
    # variables turned into function parameters (keep_params=True), by tensor name
    param_vars: dict[str, relax.Var] = field(default_factory=dict)
    # update(variable, value) results, in graph order: (variable name, result name)
    updates: list[tuple[str, str]] = field(default_factory=list)
    # name of the tensor being converted (see emit/start_operation)
    naming: Optional[str] = None
    _helper_count: int = 0

    # -- types ---------------------------------------------------------------
    def dtype(self, nnef_type: str) -> str:
        """Machine dtype for an NNEF primitive type name (machine names pass through)."""
        if nnef_type == "scalar":
            return self.options.dtype
        if nnef_type == "integer":
            return self.options.int_dtype
        if nnef_type == "logical":
            return "bool"
        if nnef_type is None:
            return self.options.dtype
        return nnef_type

    def value_dtype(self, expr: relax.Expr) -> str:
        return str(self._type(expr).dtype)

    def result_dtype(self, op: Operation, name: Optional[str] = None) -> str:
        return self.dtype(self.graph.tensors[self._result_name(op, name)].dtype)

    def result_shape(self, op: Operation, name: Optional[str] = None) -> tuple[int, ...]:
        return tuple(self.graph.tensors[self._result_name(op, name)].shape)

    def _result_name(self, op: Operation, name: Optional[str]) -> str:
        v = op.outputs[name] if name is not None else next(iter(op.outputs.values()))
        if isinstance(v, (list, tuple)):
            v = v[0]
        return str(v)

    # -- operands ------------------------------------------------------------
    def attr(self, op: Operation, name: str) -> Any:
        return op.attribs[name]

    def value(self, name: str) -> relax.Expr:
        """The Relax value bound to tensor ``name``."""
        try:
            return self.values[str(name)]
        except KeyError:
            raise RuntimeError(f"tensor {name!r} used before it was defined") from None

    def input(self, op: Operation, param: str, dtype: Optional[str] = None) -> relax.Expr:
        """The Relax value of tensor parameter ``param`` of ``op`` (identifier or literal)."""
        return self.operand(op.inputs[param], dtype)

    def inputs_list(self, op: Operation, param: str, dtype: Optional[str] = None) -> list[relax.Expr]:
        """The Relax values of the tensor-array parameter ``param``."""
        items = op.inputs[param]
        if not isinstance(items, (list, tuple)):
            items = [items]
        return [self.operand(v, dtype) for v in items]

    def operand(self, v: Any, dtype: Optional[str] = None) -> relax.Expr:
        """Identifier -> bound value; Python literal -> rank-0 constant."""
        if isinstance(v, Identifier):
            return self.value(v)
        if isinstance(v, relax.Expr):
            return v
        if dtype is None:
            if isinstance(v, bool):
                dtype = "logical"
            elif isinstance(v, int):
                # integer literal in a scalar position cannot occur after type
                # checking; an integer literal means an integer tensor operand
                dtype = "integer"
            else:
                dtype = "scalar"
        return self.const(v, dtype)

    def const(self, value: Any, dtype: str = "scalar", shape: Optional[Sequence[int]] = None) -> relax.Expr:
        arr = np.asarray(value, dtype=self.dtype(dtype))
        if shape is not None:
            shape = tuple(int(s) for s in shape)
            if arr.size == 1 and int(np.prod(shape)) != 1:
                arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
            else:
                arr = arr.reshape(shape)
        return relax.const(arr, str(arr.dtype))

    # -- shapes --------------------------------------------------------------
    def shape(self, value: Any) -> tuple[int, ...]:
        """NNEF shape of an identifier, a literal (``()``), or a Relax expression."""
        if isinstance(value, Identifier) or (isinstance(value, str) and value in self.graph.tensors):
            t = self.graph.tensors[str(value)]
            if t.shape is not None:
                return tuple(int(s) for s in t.shape)
            value = self.value(value)
        if isinstance(value, relax.Expr):
            ty = self._type(value)
            return tuple(int(s) for s in ty.shape.values)
        return ()

    def rank(self, value: Any) -> int:
        return len(self.shape(value))

    def _type(self, expr: relax.Expr):
        ty = getattr(expr, "ty", None)
        if ty is None or not isinstance(ty, relax.TensorType) or ty.shape is None:
            expr = self.bb.normalize(expr)
            ty = expr.ty
        return ty

    # -- building ------------------------------------------------------------
    def emit(self, expr: relax.Expr, name_hint: Optional[str] = None) -> relax.Expr:
        """Emit ``expr`` into the current dataflow block; returns its variable.

        Variables are named after the NNEF tensor being computed (helper values
        get ``<tensor>_<k>``): Relax spans do not survive legalization in TVM
        0.27, variable names do, and the fusion report maps kernels back to
        NNEF operations through them.
        """
        if isinstance(expr, (relax.Var, tvm.ir.expr.Constant)):
            return expr
        if name_hint is None and self.naming is not None:
            self._helper_count += 1
            name_hint = f"{self.naming}_{self._helper_count}"
        return self.bb.emit(expr, name_hint=name_hint or "")

    def start_operation(self, op) -> None:
        """Called by the driver before each converter: names its values after ``op``'s first output."""
        names = op.output_names()
        self.naming = names[0] if names else None
        self._helper_count = 0

    def broadcast_to_rank(self, expr: relax.Expr, rank: int) -> relax.Expr:
        """Append unit extents to ``expr`` until it has ``rank`` dimensions (rank 0 stays)."""
        shape = self.shape(expr)
        if len(shape) == 0 or len(shape) >= rank:
            return expr
        return self.emit(relax.op.reshape(expr, list(shape) + [1] * (rank - len(shape))))

    def broadcast_operands(self, *exprs: relax.Expr) -> list[relax.Expr]:
        """Apply NNEF's left-aligned broadcasting rule before a Relax element-wise op."""
        rank = max((self.rank(e) for e in exprs), default=0)
        return [self.broadcast_to_rank(e, rank) for e in exprs]

    def nnef_round(self, expr: relax.Expr) -> relax.Expr:
        """NNEF round: ``floor(x + 0.5)`` (ties go up; Relax round is half-to-even)."""
        half = relax.const(0.5, self.value_dtype(expr))
        return relax.op.floor(relax.op.add(expr, half))

    # -- errors --------------------------------------------------------------
    def error(self, op: Operation, message: str) -> NNEFError:
        return NNEFError(f"{op.name}: {message}", op.pos)


def norm_axes(axes: Iterable[int], rank: int) -> list[int]:
    """Axes as non-negative ints (NNEF axes are non-negative already; tolerate -1 style)."""
    return [int(a) + rank if int(a) < 0 else int(a) for a in axes]
