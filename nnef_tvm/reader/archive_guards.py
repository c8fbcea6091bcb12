"""Defences shared by the tar and zip readers against hostile archives.

An archive handed to the compiler is untrusted input, so before any member's
data is read its name is checked (:func:`_clean_member_name`: no absolute
paths, ``..``, backslashes or NUL) and counted against the limits
(:class:`_Budget`: member count, duplicates, declared sizes); while data is
decompressed, :class:`_Inflater` counts the bytes actually produced -- header
sizes are never trusted -- and stops as soon as the total or the compression
ratio passes its limit (compression bombs). The limits themselves are
:class:`.container.Limits`.
"""
from __future__ import annotations

import bz2
import lzma
import zlib
from typing import TYPE_CHECKING

from ..errors import NNEFError, SourcePos

if TYPE_CHECKING:
    from .container import Limits


def _clean_member_name(raw: str, archive: str) -> str:
    """A safe, normalised archive member name ('' for the root folder entry)."""
    def bad(why: str) -> NNEFError:
        return NNEFError(f"unsafe archive member '{raw}': {why}", SourcePos(archive))
    if "\x00" in raw:
        raise bad("name contains a NUL byte")
    if "\\" in raw:
        raise bad("name contains a backslash")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise bad("absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise bad("'..' path component")
    return "/".join(parts)


class _Budget:
    """Counts members and bytes against the limits; all checks happen before data is read."""

    def __init__(self, archive: str, lim: Limits):
        self.archive, self.lim = archive, lim
        self.count = 0
        self.total = 0
        self.names: set[str] = set()

    def entry(self, raw: str) -> str:
        self.count += 1
        if self.count > self.lim.max_members:
            raise NNEFError(f"archive has more than {self.lim.max_members} members (at '{raw}')",
                            SourcePos(self.archive))
        return _clean_member_name(raw, self.archive)

    def file(self, raw: str, name: str, size: int) -> None:
        if not name:
            raise NNEFError(f"unsafe archive member '{raw}': a file without a name", SourcePos(self.archive))
        if name in self.names:
            raise NNEFError(f"duplicate archive member '{raw}'", SourcePos(self.archive))
        self.names.add(name)
        if size > self.lim.max_member_size:
            raise NNEFError(f"archive member '{raw}' is {size} bytes, over the limit of "
                            f"{self.lim.max_member_size}", SourcePos(self.archive))
        self.total += size
        if self.total > self.lim.max_total_size:
            raise NNEFError(f"archive members exceed {self.lim.max_total_size} bytes in total "
                            f"(at '{raw}')", SourcePos(self.archive))



class _Inflater:
    """A bounded streaming decompressor: ``read(n)`` never inflates more than asked for.

    It counts compressed input and inflated output, and fails as soon as the
    output passes ``limit`` bytes or the ratio output/input passes the limit.
    Concatenated streams (multi-member gzip) are followed.
    """

    _CHUNK = 256 * 1024

    def __init__(self, f, kind: str, archive: str, lim: Limits, limit: int):
        self.f, self.kind, self.archive, self.lim, self.limit = f, kind, archive, lim, limit
        self.consumed = 0
        self.produced = 0
        self.pending = b""          # compressed bytes not yet given to the decompressor
        self.dec = self._new()
        self.done = False

    def _new(self):
        if self.kind == "tar.gz":
            return _ZlibStream(zlib.decompressobj(16 + zlib.MAX_WBITS))
        if self.kind == "tar.bz2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()

    def _input(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        data = self.f.read(self._CHUNK)
        self.consumed += len(data)
        return data

    def read(self, n: int) -> bytes:
        out = []
        got = 0
        while got < n and not self.done:
            if self.dec.eof:
                rest = self.dec.unused_data or self._input()
                if not rest.strip(b"\x00"):
                    self.done = True           # end of input (zero padding after the stream is allowed)
                    break
                self.dec = self._new()
                self.pending = rest
                continue
            data = self._input() if self.dec.needs_input else b""
            if self.dec.needs_input and not data:
                raise NNEFError("compressed archive is truncated", SourcePos(self.archive, offset=self.consumed))
            try:
                chunk = self.dec.decompress(data, min(n - got, self._CHUNK))
            except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
                raise NNEFError(f"corrupt compressed data: {e}", SourcePos(self.archive)) from None
            self.produced += len(chunk)
            got += len(chunk)
            out.append(chunk)
            self._check()
        return b"".join(out)

    def _check(self) -> None:
        if self.produced > self.limit:
            raise NNEFError(f"archive inflates past {self.limit} bytes (limit); refusing it",
                            SourcePos(self.archive))
        if self.produced > self.lim.ratio_floor and self.produced > self.lim.max_ratio * max(self.consumed, 1):
            raise NNEFError(f"archive looks like a compression bomb: {self.consumed} compressed bytes "
                            f"inflate to more than {self.produced} (ratio limit {self.lim.max_ratio:g})",
                            SourcePos(self.archive))


class _ZlibStream:
    """Gives ``zlib.decompressobj`` the ``needs_input``/``eof``/``unused_data`` interface of bz2/lzma."""

    def __init__(self, d):
        self.d = d
        self.tail = b""

    @property
    def eof(self) -> bool:
        return self.d.eof

    @property
    def unused_data(self) -> bytes:
        return self.d.unused_data

    @property
    def needs_input(self) -> bool:
        return not self.tail and not self.d.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self.d.decompress(self.tail + data, max_length)
        self.tail = self.d.unconsumed_tail
        return out

