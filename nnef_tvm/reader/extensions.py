"""Opt-in, non-Khronos extension sets of the reader (e.g. ``'tract'``).

Why: documents written by Sonos tract / torch-to-nnef start with
``extension tract_registry tract_core;`` and invoke ``tract_core_*`` operations
that are not in NNEF 1.0.5. They are rejected by default (unknown extension);
``extensions=('tract',)`` makes those extension names legal, declares the
operations of ``ext_tract.nnef`` as if the document had declared them, gives
their shape functions, and rewrites the tract-specific input operation
``x = tract_core_external(shape = [...], datum_type = 'f32')`` to the standard
``x = external<scalar>(shape = [...])``. tract also accepts fragment definitions
and operator expressions without the KHR extension lines, so the set implies both.

Where the pieces live: this module holds the registry of sets, the text-level
preprocessing and the two entry points; :mod:`.tract_document` the syntax-tree
rewrites that make torch-to-nnef output checkable (called from semantics and, for
those needing the container or shapes, from the loader via :func:`prepare_document`);
:mod:`.tract_scan` the unrolling of ``tract_core_scan``; :mod:`.tract_shapes` the
shape functions; frontend/ops/tract.py the converters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Callable, Iterable

from ..errors import NNEFError, SourcePos
from . import ast
from .tract_shapes import SHAPES

@dataclass(frozen=True)
class ExtensionSet:
    name: str
    document_names: frozenset          # names legal on `extension ...;` lines once enabled
    fragment_file: str                 # body-less declarations (package data)
    implies: frozenset = frozenset()   # KHR extensions treated as enabled
    skip_fragments: frozenset = frozenset()   # document fragments dropped (metadata only)
    shapes: dict = field(default_factory=dict)


_FRAGMENTS = frozenset({"KHR_enable_fragment_definitions", "KHR_enable_operator_expressions"})
SETS = {
    "tract": ExtensionSet(
        name="tract",
        document_names=frozenset({"tract_registry", "tract_core", "tract_resource", "tract_symbol",
                                  "tract_transformers"}),
        fragment_file="ext_tract.nnef",
        implies=_FRAGMENTS,
        skip_fragments=frozenset({"tract_core_properties"}),
        shapes=SHAPES),
}

# tract datum types -> NNEF primitive types
DATUM_TYPES = {"f16": "scalar", "f32": "scalar", "f64": "scalar",
               "i8": "integer", "i16": "integer", "i32": "integer", "i64": "integer",
               "u8": "integer", "u16": "integer", "u32": "integer", "u64": "integer",
               "bool": "logical"}


def resolve(names: Iterable[str]) -> list[ExtensionSet]:
    """The extension sets named (ValueError for an unknown name: a caller bug or bad CLI flag)."""
    out = []
    for n in names:
        if n not in SETS:
            raise ValueError(f"unknown extension set {n!r} (known: {', '.join(sorted(SETS))})")
        out.append(SETS[n])
    return out


def owning_set(document_name: str):
    """The extension set that makes ``extension <document_name>;`` legal, or None."""
    for s in SETS.values():
        if document_name in s.document_names:
            return s
    return None


@lru_cache(maxsize=None)
def declared_fragments(fragment_file: str) -> tuple:
    from .syntax import parse
    text = resources.files(__package__).joinpath(fragment_file).read_text()
    return tuple(parse(text, file=fragment_file, allow_no_graph=True).fragments)


def shape_functions(sets: Iterable[ExtensionSet]) -> dict[str, Callable]:
    out: dict = {}
    for s in sets:
        out.update(s.shapes)
    return out

def rewrite_document(doc: ast.Document, sets: list[ExtensionSet]) -> ast.Document:
    """Make an extension document checkable as NNEF (see :mod:`.tract_document`)."""
    if not sets or doc.graph is None:
        return doc
    from .tract_document import rewrite_document as rewrite
    return rewrite(doc, sets)


def prepare_document(doc: ast.Document, sets, box=None, input_shapes=None) -> ast.Document:
    """Rewrites that need the container or the shapes (see :mod:`.tract_document`); the
    loader calls it before checking."""
    if not sets or doc.graph is None:
        return doc
    from .tract_document import prepare_document as prepare
    return prepare(doc, sets, box, input_shapes)


def fix_result_types(graph) -> None:
    """``tract_core_cast`` results take the type named by ``to`` (declared generic as the input)."""
    for op in graph.operations:
        if op.name == "tract_core_cast":
            to = op.attribs.get("to")
            if to in DATUM_TYPES:
                out = next(iter(op.outputs.values()))
                graph.tensors[str(out)].dtype = DATUM_TYPES[to]


_EXTENSION_LINE = re.compile(r"^[ \t]*extension\b([^;]*);", re.MULTILINE)
# the body may quote any text (export command, host, versions): braces inside strings do not end it
_PROPERTIES = re.compile(r"fragment\s+tract_core_properties\s*\(\s*\)\s*->\s*\([^{;]*\)\s*"
                         r"\{(?:[^}\"']|\"[^\"]*\"|'[^']*')*\}")


def _pos_at(text: str, offset: int, file) -> SourcePos:
    """The 1-based line and column of character ``offset`` of ``text``."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return SourcePos(file, line, col, offset)


def preprocess_text(text: str, sets: Iterable[ExtensionSet], file=None) -> str:
    """Text-level work done before parsing.

    Without the owning set enabled, an ``extension`` line naming an opt-in
    extension is reported here, before any syntax error its constructs would
    cause. With ``tract`` enabled, tract's metadata fragment
    ``tract_core_properties()`` (empty parameter list, which NNEF's grammar has
    not) is blanked out, keeping line/column positions of the rest.
    """
    enabled = {s.name for s in sets}
    for m in _EXTENSION_LINE.finditer(text):
        symbol = re.match(r"\s*tract_symbol\b\s*([A-Za-z_][A-Za-z0-9_]*)?", m.group(1))
        if symbol is not None and "tract" in enabled:
            start = m.start(1) + symbol.start(0) + len(symbol.group(0)) - len(symbol.group(0).lstrip())
            raise NNEFError(
                f"symbolic dimension '{symbol.group(1) or '?'}' (extension tract_symbol): nnef-tvm "
                f"compiles static shapes only; export without dynamic axes (torch-to-nnef: no "
                f"dynamic_axes)", _pos_at(text, start, file))
        for offset_name in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", m.group(1)):
            owner = owning_set(offset_name.group(0))
            if owner is not None and owner.name not in enabled:
                raise NNEFError(
                    f"extension '{offset_name.group(0)}' belongs to the opt-in '{owner.name}' "
                    f"extension set, which is not enabled (use --extensions {owner.name}, or "
                    f"extensions=('{owner.name}',))",
                    _pos_at(text, m.start(1) + offset_name.start(), file))
    if "tract" in enabled:
        text = _PROPERTIES.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text
