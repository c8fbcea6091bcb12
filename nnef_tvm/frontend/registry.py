"""The converter registry: NNEF operation name -> function building Relax.

Each op family lives in its own module under :mod:`nnef_tvm.frontend.ops` and
registers its converters with the :func:`converter` decorator::

    @converter("relu")
    def relu(ctx, op):
        '''NNEF relu(x) = max(x, 0).'''
        return relax.op.nn.relu(ctx.input(op, "x"))

A converter receives the :class:`~nnef_tvm.frontend.context.ConvertContext` and
the :class:`~nnef_tvm.reader.graph.Operation`, and returns the Relax value(s) of
the operation's results: one expression for a single result, a tuple/list in
result order for several, or a list for an array result (``split``).

The set of registered names *is* the coverage table (see
``scripts/coverage_table.py``); a test checks it against ``shared/nnef/ops.json``.
"""
from __future__ import annotations

from typing import Callable, Iterable

_CONVERTERS: dict[str, Callable] = {}
_EXTENSION_SETS: dict[str, dict[str, Callable]] = {}


def converter(*names: str, extension: str | None = None):
    """Register the decorated function as the converter of each NNEF op in ``names``.

    With ``extension='tract'`` the converter goes into an opt-in extension set
    instead of the standard registry (e.g. ``tract_core_*`` operations).
    """
    def register(fn: Callable) -> Callable:
        table = _CONVERTERS if extension is None else _EXTENSION_SETS.setdefault(extension, {})
        for name in names:
            if name in table:
                raise RuntimeError(f"converter for {name!r} registered twice")
            table[name] = fn
        return fn
    return register


def _load_all() -> None:
    # importing the package imports every op-family module, which registers them
    from . import ops  # noqa: F401


def lookup(name: str, extensions: Iterable[str] = ()) -> Callable | None:
    """The converter for ``name`` or None (standard set first, then enabled extensions)."""
    _load_all()
    fn = _CONVERTERS.get(name)
    if fn is None:
        for ext in extensions:
            fn = _EXTENSION_SETS.get(ext, {}).get(name)
            if fn is not None:
                break
    return fn


def supported_ops(extensions: Iterable[str] = ()) -> set[str]:
    """Every NNEF operation name that has a converter."""
    _load_all()
    names = set(_CONVERTERS)
    for ext in extensions:
        names |= set(_EXTENSION_SETS.get(ext, {}))
    return names


def extension_sets() -> list[str]:
    _load_all()
    return sorted(_EXTENSION_SETS)
