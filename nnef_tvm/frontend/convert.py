"""The conversion driver: a checked, shape-inferred NNEF Graph -> Relax ``main``.

Walks the operations in statement order (a valid topological order), calls the
registered converter of each, binds its results to the NNEF tensor names, and
checks each result's static shape against shape inference (a mismatch is a
converter bug, not a user error, so it raises ``RuntimeError``).

Graph interface of the produced ``main`` function
-------------------------------------------------
* parameters: the graph inputs (``external`` tensors) in graph order, named after
  them; with ``keep_params=True`` followed by one parameter per ``variable``
  (in statement order, named after the tensor);
* results: the graph outputs in order (a tuple if more than one), followed by the
  results of ``update`` operations that are not already graph outputs. An
  ``update(variable, value)`` yields the variable's *next* value; persisting it
  between executions is the caller's job (feed it back as the variable
  parameter). The function attribute ``nnef_updates`` maps each variable name to
  the output index carrying its new value.
* with ``fake_quantize=True`` every real tensor carrying quantization
  (``graph.quant``) is passed through its fake-quantization op where it is
  defined (see :mod:`nnef_tvm.frontend.fake_quant`); with ``int8=True`` as well,
  conv/linear/matmul on int8/uint8-quantized operands run on integer codes
  (see :mod:`nnef_tvm.frontend.int8`).
* function attributes: ``nnef_input_names``, ``nnef_output_names`` (names of all
  results, updates included), ``nnef_param_names`` (variables kept as params),
  ``nnef_updates``.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import tvm
from tvm import relax

from ..errors import NNEFError
from ..reader.graph import Graph, Identifier, Operation
from . import registry
from .context import ConvertContext, ConvertOptions
from .fake_quant import fake_quantize


def check_supported(graph: Graph, extensions: Iterable[str] = ()) -> None:
    """Raise one NNEFError listing every operation of ``graph`` without a converter.

    Each use is reported at its own source position, so a model with three
    unsupported invocations gives three located messages in one error.
    """
    supported = registry.supported_ops(extensions)
    errors = []
    for op in graph.operations:
        if op.name not in supported:
            where = op.pos if op.pos is not None else (op.origin[0] if op.origin else None)
            errors.append(NNEFError(
                f"operation '{op.name}' is not supported by the TVM frontend "
                f"(no converter, and it could not be lowered to supported operations)", where))
    if errors:
        raise NNEFError.collect(errors)


def _tensor_type(ctx: ConvertContext, name: str) -> relax.TensorType:
    t = ctx.graph.tensors[name]
    if t.shape is None:
        raise NNEFError(f"shape of tensor '{name}' is unknown (run shape inference first)")
    return relax.TensorType([int(s) for s in t.shape], ctx.dtype(t.dtype))


def _variable_array(ctx: ConvertContext, op: Operation, name: str) -> np.ndarray:
    t = ctx.graph.tensors[name]
    if t.data is None:
        raise NNEFError(f"variable '{name}' (label '{op.attribs.get('label')}') has no data loaded",
                        op.pos)
    return np.asarray(t.data).astype(ctx.dtype(t.dtype), copy=False).reshape(
        [int(s) for s in t.shape])


def _bind_results(ctx: ConvertContext, op: Operation, result) -> None:
    outs = list(op.outputs.items())
    if len(outs) == 1:
        results = [result]
    else:
        if not isinstance(result, (list, tuple)) or len(result) != len(outs):
            raise RuntimeError(f"converter of {op.name} must return {len(outs)} results")
        results = list(result)
    for (rname, target), value in zip(outs, results):
        if isinstance(target, (list, tuple)):
            if not isinstance(value, (list, tuple)) or len(value) != len(target):
                raise RuntimeError(f"converter of {op.name}: result {rname} must be a list of "
                                   f"{len(target)} values")
            for t, v in zip(target, value):
                _bind_one(ctx, op, str(t), v)
        else:
            _bind_one(ctx, op, str(target), value)


def _bind_one(ctx: ConvertContext, op: Operation, name: str, value: relax.Expr) -> None:
    value = ctx.emit(value, name_hint=name)
    expected = ctx.graph.tensors[name]
    got_shape = ctx.shape(value)
    exp_dtype = ctx.dtype(expected.dtype)
    if expected.shape is not None and tuple(expected.shape) != got_shape:
        raise RuntimeError(f"converter of {op.name} produced shape {got_shape} for '{name}', "
                           f"shape inference says {tuple(expected.shape)}")
    if ctx.value_dtype(value) != exp_dtype:
        raise RuntimeError(f"converter of {op.name} produced dtype {ctx.value_dtype(value)} for "
                           f"'{name}', expected {exp_dtype}")
    if ctx.options.fake_quantize and expected.quantization and expected.dtype == "scalar":
        value = fake_quantize(ctx, name, value, expected.quantization, op.pos)
    ctx.values[name] = value


def convert_graph(graph: Graph, options: Optional[ConvertOptions] = None):
    """Build the Relax IRModule for ``graph``; returns ``(mod, params)``.

    ``params`` maps variable names to numpy arrays when ``options.keep_params``
    (empty otherwise). Call :func:`check_supported` first (``from_nnef`` does).
    """
    options = options or ConvertOptions()
    bb = relax.BlockBuilder()
    ctx = ConvertContext(graph=graph, bb=bb, options=options)

    inputs = [relax.Var(name, _tensor_type(ctx, name)) for name in graph.inputs]
    for name, var in zip(graph.inputs, inputs):
        ctx.values[name] = var
    params: dict[str, np.ndarray] = {}
    if options.keep_params:
        for op in graph.operations:
            if op.name == "variable":
                name = str(op.outputs["output"])
                ctx.param_vars[name] = relax.Var(name, _tensor_type(ctx, name))
                params[name] = _variable_array(ctx, op, name) if graph.tensors[name].data is not None \
                    else None
    fn_params = inputs + list(ctx.param_vars.values())

    try:
        out_names, updates = _build_main(ctx, bb, graph, fn_params, options)
    except BaseException:
        # close the binding block the failed function scope left open, so TVM does not
        # warn "BlockBuilder destroyed with remaining blocks" on a reported error
        try:
            bb._end_block()
        except Exception:  # pragma: no cover - nothing left to close
            pass
        raise
    mod = bb.get()
    attrs = {
        "nnef_graph_name": graph.name,
        "nnef_input_names": list(graph.inputs),
        "nnef_output_names": out_names,
        "nnef_param_names": list(ctx.param_vars),
        "nnef_updates": updates,
    }
    main = mod["main"]
    for k, v in attrs.items():
        main = main.with_attr(k, v)
    mod["main"] = main
    return mod, params


def _build_main(ctx, bb, graph, fn_params, options):
    """Emit ``main``: every operation in statement order, then the outputs."""
    with bb.function("main", fn_params):
        with bb.dataflow():
            for op in graph.operations:
                fn = registry.lookup(op.name, options.extensions)
                if fn is None:  # check_supported was skipped
                    raise NNEFError(f"operation '{op.name}' is not supported", op.pos)
                if options.int8:
                    from .int8 import int8_converter
                    fn = int8_converter(ctx, op) or fn
                try:
                    ctx.start_operation(op)
                    _bind_results(ctx, op, fn(ctx, op))
                except NNEFError:
                    raise
                except Exception as e:  # converter bug: keep the traceback, say where
                    where = op.pos or (op.origin[0] if op.origin else None)
                    e.add_note(f"while converting NNEF operation '{op.name}'"
                               + (f" at {where}" if where else ""))
                    raise
            out_names = list(graph.outputs)
            updates = {}
            for var_name, result_name in ctx.updates:
                if result_name not in out_names:
                    out_names.append(result_name)
                updates[var_name] = out_names.index(result_name)
            outs = [ctx.value(n) for n in out_names]
            result = outs[0] if len(outs) == 1 else relax.Tuple(outs)
            gv = bb.emit_output(result)
        bb.emit_func_output(gv)
    return out_names, updates


def variable_value(ctx: ConvertContext, op: Operation) -> relax.Expr:
    """Relax value for a ``variable``: its parameter, or its data as a constant."""
    name = str(op.outputs["output"])
    if name in ctx.param_vars:
        return ctx.param_vars[name]
    return relax.const(_variable_array(ctx, op, name))
