"""Name -> :class:`Target` lookup.

Each family module registers a factory per name with :func:`register`; a factory
takes the user's options (``threads=``, ``arch=``) and returns a fresh
:class:`Target`. A spec that starts with ``{`` is a raw TVM target JSON
(see :mod:`.raw`). Unknown names raise :class:`NNEFError` listing the known ones.
"""
from __future__ import annotations

import inspect

from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import NNEFError, SourcePos
from .base import Target


@dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    factory: Callable[..., Target]


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, description: str):
    """Decorator: register ``factory(**options) -> Target`` under ``name``."""
    def deco(factory):
        _REGISTRY[name] = _Entry(name, description, factory)
        return factory
    return deco


def _load_families() -> None:
    # importing the family modules runs their @register decorators
    from . import cpu, cuda, vulkan  # noqa: F401


def known_targets() -> dict[str, str]:
    """{name: one-line description} of every named target, in registration order."""
    _load_families()
    return {e.name: e.description for e in _REGISTRY.values()}


def get_target(spec, *, threads: Optional[int] = None, arch: Optional[str] = None,
               where: Optional[SourcePos] = None) -> Target:
    """Resolve a target name, a raw TVM target JSON string/dict, or a Target.

    ``where`` locates the spec for error messages (e.g. the ``--target`` flag).
    """
    if isinstance(spec, Target):
        return spec
    _load_families()
    if isinstance(spec, dict) or (isinstance(spec, str) and spec.lstrip().startswith("{")):
        from .raw import raw_target
        return raw_target(spec, where=where)
    if not isinstance(spec, str):
        raise NNEFError(f"a target is a name or a TVM target JSON, got {type(spec).__name__}",
                        where)
    entry = _REGISTRY.get(spec)
    if entry is None:
        names = ", ".join(_REGISTRY)
        raise NNEFError(f"unknown target '{spec}'; known targets: {names}, "
                        "or a raw TVM target JSON such as '{\"kind\": \"llvm\"}'", where)
    opts = {}
    if threads is not None:
        opts["threads"] = threads
    if arch is not None:
        opts["arch"] = arch
    accepted = inspect.signature(entry.factory).parameters
    bad = [k for k in opts if k not in accepted]
    if bad:
        flags = ", ".join(f"--{k}" for k in bad)
        raise NNEFError(f"target '{spec}' does not take {flags}", where)
    return entry.factory(**opts)
