"""The NNEF standard library as fragments: all 118 standard operations (spec §4).

``stdlib.nnef`` (next to this module) declares every standard operation as a
fragment: primitives without a body, the 45 compounds with their spec bodies.
It is parsed once with the project's own parser, so the semantic checker treats
standard and custom fragments alike and lowering is generic.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from . import ast

STDLIB_PATH = Path(__file__).with_name("stdlib.nnef")


@lru_cache(maxsize=1)
def standard_fragments() -> dict[str, ast.Fragment]:
    """Name -> fragment for every standard operation (parsed from ``stdlib.nnef`` once, cached)."""
    from .syntax import parse
    text = STDLIB_PATH.read_text(encoding="utf-8")
    doc = parse(text, "stdlib.nnef", allow_no_graph=True)
    return {f.name: f for f in doc.fragments}
