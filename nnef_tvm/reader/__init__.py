"""The NNEF reader: container -> syntax -> semantics -> shapes -> tensors.

Nothing in this subpackage imports TVM: ``nnef-compile --check`` stays fast and
the reader is tested on its own.
"""
from .graph import Graph, Identifier, Model, Operation, Tensor  # noqa: F401
