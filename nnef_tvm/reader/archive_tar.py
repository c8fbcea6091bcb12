"""Reading untrusted tar archives (plain, gzip, bzip2, xz) into memory, never onto disk.

Headers are parsed here rather than by :mod:`tarfile` so that every check
happens before a member's data is read: regular files and folders only (no
links, devices or fifos), names and sizes through :class:`.archive_guards._Budget`,
pax and GNU long-name headers capped in size. An uncompressed ``.tar`` is
memory-mapped and members are served as zero-copy slices of the map; a
compressed one is inflated once through the bounded
:class:`.archive_guards._Inflater`.
"""
from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Optional

from ..errors import NNEFError, SourcePos
from .archive_guards import _Budget, _Inflater

if TYPE_CHECKING:
    from .container import Limits

_BLOCK = 512


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b > 127)
    return stored in (unsigned, signed)


def _tar_number(field: bytes, what: str, archive: str, offset: int) -> int:
    if field and field[0] & 0x80:                       # GNU base-256
        if field[0] & 0x40:
            raise NNEFError(f"tar header has a negative {what}", SourcePos(archive, offset=offset))
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise NNEFError(f"tar header has an invalid {what} field {text!r}",
                        SourcePos(archive, offset=offset)) from None


def _decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_pax(data: bytes, archive: str, offset: int) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\x00") == b"":
            break
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp])
        except ValueError:
            length = -1
        if sp < 0 or length <= sp - pos or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n":
            raise NNEFError("malformed pax extended header", SourcePos(archive, offset=offset + pos))
        key, _, value = data[sp + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = _decode_name(value)
        pos += length
    return records


_TAR_TYPES = {b"1": "hard link", b"2": "symbolic link", b"3": "character device",
              b"4": "block device", b"6": "fifo", b"S": "GNU sparse file", b"M": "multi-volume part",
              b"V": "volume label"}


def _walk_tar(read, archive: str, lim: Limits, budget: _Budget):
    """Parse tar headers from ``read(n)``; yield (name, size) for regular files.

    The caller must consume exactly ``size`` bytes plus padding (use ``_tar_pad``)
    before asking for the next member. pax (``x``) and GNU long-name (``L``)
    headers are honoured; their size is capped by ``lim.max_meta_size``.
    """
    offset = 0
    pax: dict[str, str] = {}
    long_name: Optional[str] = None
    while True:
        block = bytes(read(_BLOCK))
        if len(block) == 0:
            return                                          # missing end blocks: tolerated
        if len(block) < _BLOCK:
            raise NNEFError("tar archive is truncated inside a header", SourcePos(archive, offset=offset))
        if block.count(0) == _BLOCK:
            return                                          # end-of-archive marker
        if not _tar_checksum_ok(block):
            raise NNEFError("tar header checksum mismatch (corrupt or not a tar archive)",
                            SourcePos(archive, offset=offset))
        typeflag = block[156:157]
        size = _tar_number(block[124:136], "size", archive, offset + 124)
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise NNEFError("pax header has an invalid size", SourcePos(archive, offset=offset)) from None
        name = block[0:100].split(b"\x00", 1)[0]
        if block[257:263] == b"ustar\x00" and block[345] != 0:
            name = block[345:500].split(b"\x00", 1)[0] + b"/" + name
        raw = pax.get("path") or long_name or _decode_name(name)
        data_at = offset + _BLOCK
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > lim.max_meta_size:
                raise NNEFError(f"tar extended header of {size} bytes exceeds {lim.max_meta_size}",
                                SourcePos(archive, offset=offset))
            budget.count += 1
            if budget.count > lim.max_members:
                raise NNEFError(f"archive has more than {lim.max_members} members", SourcePos(archive))
            data = bytes(read(size))
            if len(data) < size:
                raise NNEFError("tar archive is truncated", SourcePos(archive, offset=data_at + len(data)))
            read(_tar_pad(size))
            offset = data_at + size + _tar_pad(size)
            if typeflag == b"x":
                pax = _parse_pax(data, archive, data_at)
            elif typeflag == b"L":
                long_name = _decode_name(data.split(b"\x00", 1)[0])
            continue
        pax, long_name = {}, None
        clean = budget.entry(raw)
        if typeflag in _TAR_TYPES:
            raise NNEFError(f"archive member '{raw}' is a {_TAR_TYPES[typeflag]}; only regular files and "
                            f"folders are allowed", SourcePos(archive, offset=offset))
        if typeflag == b"5":
            if size:
                raise NNEFError(f"tar folder entry '{raw}' has data", SourcePos(archive, offset=offset))
            offset = data_at
            continue
        if typeflag not in (b"0", b"\x00", b"7"):
            raise NNEFError(f"archive member '{raw}' has unsupported tar type {typeflag!r}",
                            SourcePos(archive, offset=offset))
        budget.file(raw, clean, size)
        yield clean, size, data_at
        offset = data_at + size + _tar_pad(size)


def _tar_pad(size: int) -> int:
    return -size % _BLOCK


def _read_plain_tar(path: str, lim: Limits):
    """Uncompressed tar: map the file and serve members as zero-copy slices."""
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(m)
    pos = [0]

    def read(n: int):
        start = pos[0]
        pos[0] = min(len(view), start + n)
        return view[start:pos[0]]

    budget = _Budget(path, lim)
    members = {}
    for name, size, at in _walk_tar(read, path, lim, budget):
        if at + size > len(view):
            raise NNEFError(f"tar archive is truncated inside member '{name}'", SourcePos(path, offset=len(view)))
        members[name] = view[at:at + size]
        pos[0] = at + size + _tar_pad(size)
    return members, [view, m]


def _read_compressed_tar(path: str, kind: str, lim: Limits) -> dict:
    budget = _Budget(path, lim)
    stream_limit = lim.max_total_size + lim.max_members * 3 * _BLOCK + 2 * lim.max_meta_size + 2 * _BLOCK
    members = {}
    with open(path, "rb") as f:
        inf = _Inflater(f, kind, path, lim, stream_limit)
        for name, size, at in _walk_tar(inf.read, path, lim, budget):
            data = inf.read(size)
            if len(data) < size:
                raise NNEFError(f"archive is truncated inside member '{name}'", SourcePos(path))
            inf.read(_tar_pad(size))
            members[name] = memoryview(data)
    return members

