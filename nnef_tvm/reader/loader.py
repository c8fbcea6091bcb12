"""``nnef_tvm.load``: one call from a path to a checked, shaped model with its weights.

The stages run in the order of the data flow (see DESIGN.md); each stage raises
:class:`~nnef_tvm.errors.NNEFError` with the file and position of the problem:

    container  -> graph.nnef text, graph.quant text, .dat buffers (nothing written to disk)
    syntax     -> ast.Document
    semantics  -> Graph (+ custom fragments), compound/custom lowering as requested
    shapes     -> Tensor.shape for every tensor
    quant      -> Tensor.quantization from graph.quant
    tensors    -> Tensor.data for every variable (memory-mapped for folders)

A lone ``graph.nnef`` file is accepted too: everything but the tensor data is
checked (``Tensor.data`` stays None).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Optional, Union

from ..errors import NNEFError
from .graph import Model

LowerSpec = Union[None, str, Iterable[str], Callable[[str], bool]]


def load(path: Union[str, os.PathLike], *, lower: LowerSpec = None, infer_shapes: bool = True,
         load_tensors: bool = True, input_shapes: Optional[dict] = None,
         custom_shapes: Optional[dict] = None, limits: Optional[dict] = None,
         realign_flat_quant: bool = False, extensions: Iterable[str] = ()) -> Model:
    """Read an NNEF model from a folder, .tar, .tgz/.tar.gz, .zip or a lone graph.nnef.

    ``lower``: which fragments to expand through their bodies (see
    :func:`nnef_tvm.reader.semantics.build_graph`); ``input_shapes`` overrides the
    shapes of ``external`` inputs; ``custom_shapes`` gives shape functions for
    body-less custom fragments; ``limits`` tunes the archive safety limits.
    ``realign_flat_quant`` (lenient, opt-in): accept NNEF-Tools' flat ``[C]``
    per-channel graph.quant arrays for tensors whose channel axis is not axis 0,
    re-aligning each to the one axis of extent C, with a warning naming the entry
    (see :func:`nnef_tvm.reader.quant.realign_flat_entry`).
    ``extensions``: opt-in non-Khronos extension sets, e.g. ``('tract',)`` for
    tract / torch-to-nnef documents (see :mod:`nnef_tvm.reader.extensions`).
    """
    from . import container as _container
    from . import semantics, shapes, syntax

    path = os.fspath(path)
    with _container.open_container(path, **(limits or {})) as box:
        graph_file = box.display_name("graph.nnef")
        text = box.read_text("graph.nnef")
        from .extensions import preprocess_text, resolve
        text = preprocess_text(text, resolve(extensions), file=graph_file)
        doc = syntax.parse(text, file=graph_file)
        if extensions:
            from .extensions import prepare_document
            doc = prepare_document(doc, resolve(extensions), box, input_shapes=input_shapes)
        graph, fragments = semantics.build_graph(doc, lower=lower, extensions=tuple(extensions))
        if infer_shapes:
            if extensions:
                from .extensions import resolve, shape_functions
                custom_shapes = {**shape_functions(resolve(extensions)), **(custom_shapes or {})}
            shapes.infer_shapes(graph, custom_shapes=custom_shapes, input_shapes=input_shapes)
        if box.has("graph.quant"):
            from . import quant
            entries = quant.parse_quant(box.read_text("graph.quant"), file=box.display_name("graph.quant"),
                                        fragments=fragments)
            quant.attach_quantization(graph, entries, realign_flat=realign_flat_quant)
        files = ["graph.nnef"] + (["graph.quant"] if box.has("graph.quant") else [])
        if load_tensors and not box.is_single_file:
            files += _load_variables(graph, box)
    return Model(graph=graph, source=path, version=doc.version,
                 extensions=[e.name for e in doc.extensions], fragments=fragments,
                 files=files, document=doc)


def _load_variables(graph, box) -> list[str]:
    """Attach each variable's data from ``<label>.dat``; all missing/bad files reported together."""
    from . import tensorfile

    errors: list[NNEFError] = []
    read: list[str] = []
    for op in graph.operations:
        if op.name != "variable":
            continue
        name = str(op.outputs["output"])
        tensor = graph.tensors[name]
        label = op.attribs["label"]
        member = label.lstrip("/") + ".dat"
        if not box.has(member):
            errors.append(NNEFError(f"variable '{name}' needs tensor file '{member}' (label '{label}'), "
                                    f"which is not in {box.source}", op.pos))
            continue
        try:
            array, header = tensorfile.read_tensor(box.buffer(member), name=box.display_name(member))
            tensorfile.check_against_variable(header, tensor.shape, tensor.dtype, label,
                                              box.display_name(member))
            if header.is_quantized:
                # codes -> reals through graph.quant (or the deprecated min/max in the header)
                from .quant import dequantize
                array = dequantize(array, header, tensor.quantization,
                                   file=box.display_name(member), name=name)
        except NNEFError as e:
            errors.append(e)
            continue
        tensor.data = array
        read.append(member)
    if errors:
        raise NNEFError.collect(errors)
    return read
