"""The target registry: named targets (TVM target dict, host, cross compiler, tools).

``get_target('x86' | 'arm64' | 'rpi4' | ... | 'cuda' | 'vulkan' | '{"kind": ...}')``
returns a :class:`Target`; ``known_targets()`` lists the names. One module per
family: :mod:`.cpu` (x86, arm64 boards, armv7), :mod:`.cuda`, :mod:`.vulkan`,
:mod:`.raw` (a TVM target JSON given verbatim).
"""
from .base import Partition, Target, Tool  # noqa: F401
from .registry import get_target, known_targets, register  # noqa: F401
