"""The one error type users see.

Every problem with user input (model text, tensor files, archives, command-line
flags) is reported as an :class:`NNEFError` carrying where it was found: a file
plus line/column for text, or a file plus byte offset for binary data. The CLI
prints ``file:line:col: error: message`` and exits with status 1. Internal bugs
are *not* wrapped: they stay ordinary Python tracebacks so that they get fixed.

Several independent problems found in one pass are reported together as one
:class:`NNEFError` whose ``errors`` list holds each located problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class SourcePos:
    """A location in an input file: text (line/column, 1-based) or binary (byte offset)."""

    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    offset: Optional[int] = None

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        text = ":".join(parts)
        if self.offset is not None:
            text += f" (byte {self.offset})"
        return text


class NNEFError(Exception):
    """A problem with user input, located in a file.

    ``NNEFError(message, pos)`` for one problem; ``NNEFError.collect(errors)`` to
    report several at once (``.errors`` then lists each of them).
    """

    def __init__(self, message: str, pos: Optional[SourcePos] = None, *,
                 file: Optional[str] = None, line: Optional[int] = None,
                 column: Optional[int] = None, offset: Optional[int] = None,
                 errors: Optional[list["NNEFError"]] = None):
        if pos is None:
            pos = SourcePos(file, line, column, offset)
        self.message = message
        self.pos = pos
        self.errors: list[NNEFError] = list(errors) if errors else [self]
        super().__init__(self._render())

    # convenience accessors -------------------------------------------------
    @property
    def file(self) -> Optional[str]:
        return self.pos.file

    @property
    def line(self) -> Optional[int]:
        return self.pos.line

    @property
    def column(self) -> Optional[int]:
        return self.pos.column

    @property
    def offset(self) -> Optional[int]:
        return self.pos.offset

    def _render(self) -> str:
        if len(self.errors) > 1 or self.errors[0] is not self:
            return "\n".join(e.located() for e in self.errors)
        return self.located()

    def located(self) -> str:
        """``file:line:col: error: message`` (what the CLI prints)."""
        return f"{self.pos}: error: {self.message}"

    @classmethod
    def collect(cls, errors: Iterable["NNEFError"]) -> "NNEFError":
        """One error standing for several independent ones (flattened, in order)."""
        flat: list[NNEFError] = []
        for e in errors:
            flat.extend(e.errors)
        if not flat:
            raise ValueError("NNEFError.collect needs at least one error")
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        return cls(f"{len(flat)} errors", first.pos, errors=flat)

    def with_file(self, file: str) -> "NNEFError":
        """The same error(s) with the file name filled in where it was unknown."""
        def fix(e: NNEFError) -> NNEFError:
            if e.pos.file is not None:
                return e
            p = e.pos
            return NNEFError(e.message, SourcePos(file, p.line, p.column, p.offset))
        fixed = [fix(e) for e in self.errors]
        return NNEFError.collect(fixed)
