"""Reading untrusted zip archives into memory with our own bounded inflate loop.

:mod:`zipfile` is used only to list the central directory, which is checked
whole (names, types, encryption, methods, declared sizes and ratios) before any
data is read. Each member is then located through its own local header,
overlapping members are refused (a known zip-bomb construction), and its data
is inflated by us, stopping one byte past the declared size; the result must
match the declared size and CRC.
"""
from __future__ import annotations

import bz2
import os
import stat
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

from ..errors import NNEFError, SourcePos
from .archive_guards import _Budget, _ZlibStream

if TYPE_CHECKING:
    from .container import Limits

_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2"}


def _read_zip(path: str, lim: Limits) -> dict:
    """Zip: check the whole central directory first, then inflate each member with our own bounded loop."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    budget = _Budget(path, lim)
    if len(infos) > lim.max_members:
        raise NNEFError(f"archive has {len(infos)} members, more than {lim.max_members}", SourcePos(path))
    files = []
    for info in infos:
        raw = info.orig_filename
        clean = budget.entry(raw)
        mode = info.external_attr >> 16
        ftype = stat.S_IFMT(mode) if info.create_system == 3 else 0
        if ftype == stat.S_IFLNK:
            raise NNEFError(f"archive member '{raw}' is a symbolic link; only regular files and folders "
                            f"are allowed", SourcePos(path))
        if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise NNEFError(f"archive member '{raw}' is a special file (mode {oct(mode)}); only regular "
                            f"files and folders are allowed", SourcePos(path))
        if raw.endswith("/") or ftype == stat.S_IFDIR:
            if info.file_size:
                raise NNEFError(f"zip folder entry '{raw}' has data", SourcePos(path))
            continue
        if info.flag_bits & 0x1:
            raise NNEFError(f"archive member '{raw}' is encrypted", SourcePos(path))
        if info.compress_type not in _ZIP_METHODS:
            raise NNEFError(f"archive member '{raw}' uses unsupported compression method "
                            f"{info.compress_type}; expected stored, deflate or bzip2", SourcePos(path))
        budget.file(raw, clean, info.file_size)
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise NNEFError(f"stored archive member '{raw}' declares {info.file_size} bytes but "
                            f"occupies {info.compress_size}", SourcePos(path))
        if info.file_size > lim.ratio_floor and info.file_size > lim.max_ratio * max(info.compress_size, 1):
            raise NNEFError(f"archive member '{raw}' looks like a compression bomb: {info.compress_size} "
                            f"bytes declared to inflate to {info.file_size}", SourcePos(path))
        files.append((clean, info))

    members = {}
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        starts = [_zip_data_offset(f, info, path, file_size) for _, info in files]
        _check_no_overlap(files, starts, path)
        for (clean, info), start in zip(files, starts):
            members[clean] = memoryview(_zip_member(f, info, start, path, lim))
    return members


def _check_no_overlap(files, starts, path: str) -> None:
    """Members whose data ranges overlap (a known zip-bomb construction) are refused."""
    spans = sorted((info.header_offset, start + info.compress_size, info.orig_filename)
                   for (_, info), start in zip(files, starts))
    for (a0, a1, a), (b0, b1, b) in zip(spans, spans[1:]):
        if b0 < a1:
            raise NNEFError(f"archive members '{a}' and '{b}' overlap (zip bomb construction)",
                            SourcePos(path, offset=b0))


def _zip_data_offset(f, info: zipfile.ZipInfo, path: str, file_size: int) -> int:
    raw = info.orig_filename
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise NNEFError(f"archive member '{raw}': bad local header", SourcePos(path, offset=info.header_offset))
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    name = f.read(name_len)
    if name.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace") != raw:
        raise NNEFError(f"archive member '{raw}': local header names it differently",
                        SourcePos(path, offset=info.header_offset))
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.compress_size > file_size:
        raise NNEFError(f"archive member '{raw}' extends past the end of the archive",
                        SourcePos(path, offset=start))
    return start


def _zip_member(f, info: zipfile.ZipInfo, start: int, path: str, lim: Limits) -> bytes:
    """Inflate one member, trusting neither declared size: stop one byte past the declared size."""
    raw = info.orig_filename
    declared = info.file_size
    f.seek(start)
    left = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        data = f.read(left)
    else:
        dec = (_ZlibStream(zlib.decompressobj(-zlib.MAX_WBITS)) if info.compress_type == zipfile.ZIP_DEFLATED
               else bz2.BZ2Decompressor())
        out = bytearray()
        consumed = 0
        while True:
            if dec.eof:
                break
            if dec.needs_input:
                chunk = f.read(min(left, 256 * 1024))
                left -= len(chunk)
                consumed += len(chunk)
                if not chunk:
                    break
            else:
                chunk = b""
            room = declared + 1 - len(out)
            try:
                out += dec.decompress(chunk, min(room, 1 << 20))
            except (OSError, EOFError, zlib.error, ValueError) as e:
                raise NNEFError(f"archive member '{raw}' has corrupt compressed data: {e}", SourcePos(path)) from None
            if len(out) > declared:
                raise NNEFError(f"archive member '{raw}' inflates to more than its declared {declared} bytes",
                                SourcePos(path))
            if len(out) > lim.ratio_floor and len(out) > lim.max_ratio * max(consumed, 1):
                raise NNEFError(f"archive member '{raw}' looks like a compression bomb", SourcePos(path))
        data = bytes(out)
    if len(data) != declared:
        raise NNEFError(f"archive member '{raw}' holds {len(data)} bytes but declares {declared}",
                        SourcePos(path))
    if zlib.crc32(data) != info.CRC:
        raise NNEFError(f"archive member '{raw}' fails its CRC check (corrupt)", SourcePos(path))
    return data
