"""nnef-tvm: compile Khronos NNEF models with Apache TVM (Relax).

Pipeline (one subpackage per stage)::

    reader/     NNEF text + tensor files + containers  -> checked Graph
    frontend/   Graph                                  -> tvm.IRModule (Relax)
    schedules/  fusion, default schedules, tuning logs per device
    targets/    named targets -> relax.build -> one .so
    runtime     load and run the .so locally or over RPC

TVM is imported lazily so that the reader (and ``nnef-compile --check``) works
without paying for it.
"""
from .errors import NNEFError, SourcePos  # noqa: F401
from .threads import set_default_threads as _set_default_threads

_set_default_threads()

__version__ = "0.1.0"


def load(path, **kwargs):
    """Read an NNEF model (folder, .tar, .tgz, .zip or a lone graph.nnef) -> Model."""
    from .reader.loader import load as _load
    return _load(path, **kwargs)


def from_nnef(model, **kwargs):
    """Convert a loaded model (or a path) to a Relax ``tvm.IRModule``."""
    from .frontend import from_nnef as _from_nnef
    return _from_nnef(model, **kwargs)


def compile(model, target="x86", **kwargs):  # noqa: A001 - mirrors the CLI verb
    """Compile a model for a named target -> CompiledModel (``.run``, ``.export``)."""
    from .compiler import compile_model
    return compile_model(model, target=target, **kwargs)
