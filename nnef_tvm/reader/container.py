"""NNEF containers (spec §5): a folder, a tar (plain, gzip, bzip2, xz), a zip, or a lone graph.nnef.

A container is read into memory (or memory-mapped) and **nothing is written to
disk**: no extraction to a temporary folder, so no path in an archive can
overwrite anything. Archives are treated as hostile input. Before any member's
data is read we check its name (no absolute paths, no ``..``, no backslashes,
no NUL), its type (regular files and folders only: no symlinks, hard links,
devices or fifos), duplicates, the member count and the declared sizes against
limits. While data is decompressed we count the bytes actually produced —
header sizes are never trusted — and stop as soon as a member, the total, or
the compression ratio exceeds its limit (compression bombs).

For speed, an uncompressed ``.tar`` is memory-mapped and members are served as
zero-copy slices of the map; folders serve each file through its own read-only
map; compressed members are inflated into memory once.

Member names are ``/``-separated paths relative to the container root. A
single top-level folder inside an archive (``model.nnef/graph.nnef``, as made by
``tar czf model.tgz model.nnef``) is stripped. ``nnef_tools`` writes its
``.tgz`` files with members at the top level, which need no stripping.
"""
from __future__ import annotations

import bz2
import lzma
import mmap
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import NNEFError, SourcePos

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Safety limits for archives (all configurable through :func:`open_container`)."""

    max_member_size: int = 4 * GiB       # bytes of one member, uncompressed
    max_members: int = 10_000            # entries (files and folders)
    max_total_size: int = 8 * GiB        # bytes of all members, uncompressed (held in memory)
    max_ratio: float = 200.0             # uncompressed / compressed bytes ...
    ratio_floor: int = 16 * MiB          # ... checked once this much has been inflated
    max_meta_size: int = 1 * MiB         # one pax / GNU long-name header


# --------------------------------------------------------------- names ----
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


def _lookup_name(name: str) -> str:
    """Normalise a requested name (a variable label + '.dat', or 'graph.nnef').

    Labels may use '/' or '\\' as folder separator and Khronos strips one
    leading '/'; '..' is refused so that a label cannot reach outside the container.
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise NNEFError(f"member name '{name}' must not contain '..'")
    return "/".join(parts)


# ----------------------------------------------------------- container ----
class Container:
    """Read access to the files of one NNEF model (use as a context manager)."""

    def __init__(self, source: str, kind: str, members: Optional[dict] = None,
                 folder: Optional[str] = None, single_file: Optional[str] = None,
                 keep_alive: Optional[list] = None):
        self.source = source
        self.kind = kind                       # 'folder' | 'tar' | 'tar.gz' | ... | 'zip' | 'file'
        self._members = members                # archive: {name: buffer}
        self._folder = folder
        self._single = single_file
        self._maps: list = list(keep_alive or [])
        self._names: Optional[list[str]] = None
        self._folder_real = os.path.realpath(folder) if folder else None
        self._closed = False

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release member views and close the memory maps that no array still uses.

        Arrays made from :meth:`buffer` stay valid: a map they still reference is
        left open and freed together with the last such array.
        """
        views = [v for v in (self._members or {}).values() if isinstance(v, memoryview)]
        for v in views + [m for m in self._maps if isinstance(m, memoryview)]:
            try:
                v.release()
            except BufferError:
                pass          # exported to a numpy array: stays alive with it
        for m in self._maps:
            if isinstance(m, mmap.mmap):
                try:
                    m.close()
                except BufferError:
                    pass
        self._maps = []
        self._members = {} if self._members is not None else None
        self._closed = True

    # -- queries -------------------------------------------------------------
    @property
    def is_single_file(self) -> bool:
        return self._single is not None

    def names(self) -> list[str]:
        """All member (file) names, '/'-separated, sorted."""
        if self._names is None:
            if self._members is not None:
                self._names = sorted(self._members)
            elif self._single is not None:
                self._names = ["graph.nnef"]
            else:
                self._names = sorted(self._walk_folder())
        return list(self._names)

    def has(self, name: str) -> bool:
        return self._resolve(name) is not None

    def display_name(self, name: str) -> str:
        """How to name a member in messages (a path for folders, ``archive/member`` for archives)."""
        real = self._resolve(name) or _lookup_name(name)
        if self._single is not None:
            return self._single if real == "graph.nnef" else f"{self.source}/{real}"
        if self._folder is not None:
            return os.path.join(self._folder, *real.split("/"))
        return f"{self.source}/{real}"

    def buffer(self, name: str):
        """The member's bytes without copying: an mmap (folder) or a memoryview (archive)."""
        if self._closed:
            raise ValueError(f"container {self.source} is closed")
        real = self._resolve(name)
        if real is None:
            raise NNEFError(f"'{name}' is not in {self.source}", SourcePos(self.source))
        if self._members is not None:
            return self._members[real]
        path = self._single if self._single is not None else self._folder_file(real)
        return self._map_file(path)

    def read_bytes(self, name: str) -> bytes:
        return bytes(self.buffer(name))

    def read_text(self, name: str) -> str:
        """A text member (graph.nnef, graph.quant) decoded as UTF-8 (NNEF text is ASCII)."""
        data = self.read_bytes(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
            raise NNEFError(f"byte 0x{data[e.start]:02x} is not valid text; NNEF documents are ASCII",
                            SourcePos(self.display_name(name), line, column, e.start)) from None

    # -- internals -----------------------------------------------------------
    def _resolve(self, name: str) -> Optional[str]:
        want = _lookup_name(name)
        if self._single is not None:
            return want if want == "graph.nnef" else None
        if self._members is not None:
            if want in self._members:
                return want
        else:
            full = os.path.join(self._folder, *want.split("/"))
            if want and (os.path.islink(full) or os.path.isfile(full)):
                return want
        # case-insensitive fallback (labels are case-insensitive in the spec), only if unambiguous
        hits = [n for n in self.names() if n.lower() == want.lower()]
        return hits[0] if len(hits) == 1 else None

    def _walk_folder(self):
        for dirpath, dirnames, filenames in os.walk(self._folder, followlinks=False):
            rel = os.path.relpath(dirpath, self._folder)
            for fn in filenames:
                name = fn if rel == "." else f"{rel.replace(os.sep, '/')}/{fn}"
                full = os.path.join(dirpath, fn)
                if os.path.islink(full) and not self._inside(os.path.realpath(full)):
                    continue
                yield name

    def _inside(self, real: str) -> bool:
        return os.path.commonpath([real, self._folder_real]) == self._folder_real

    def _folder_file(self, name: str) -> str:
        path = os.path.join(self._folder, *name.split("/"))
        real = os.path.realpath(path)
        if not self._inside(real):
            raise NNEFError(f"'{name}' leads outside the model folder through a symbolic link "
                            f"(to {real})", SourcePos(path))
        try:
            st = os.stat(real)
        except OSError as e:
            raise NNEFError(f"cannot read '{name}': {e.strerror}", SourcePos(path)) from None
        if not stat.S_ISREG(st.st_mode):
            raise NNEFError(f"'{name}' is not a regular file", SourcePos(path))
        return real

    def _map_file(self, path: str):
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return b""
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise NNEFError(f"cannot read file: {e.strerror or e}", SourcePos(path)) from None
        self._maps.append(m)
        return m


# --------------------------------------------------------------- opening ----
def open_container(path: Union[str, os.PathLike], **limits) -> Container:
    """Open a model: folder, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip, or a lone graph.nnef.

    The archive kind is recognised by its content, not its extension. ``limits``
    override fields of :class:`Limits` (``max_member_size``, ``max_members``,
    ``max_total_size``, ``max_ratio``, ``ratio_floor``, ``max_meta_size``).
    """
    path = os.fspath(path)
    try:
        lim = Limits(**limits)
    except TypeError as e:
        raise TypeError(f"open_container: {e}") from None
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "graph.nnef")):
            raise NNEFError(f"model folder has no graph.nnef (an NNEF container needs one)", SourcePos(path))
        return Container(path, "folder", folder=path)
    if not os.path.exists(path):
        raise NNEFError("no such file or folder", SourcePos(path))
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise NNEFError(f"cannot read: {e.strerror or e}", SourcePos(path)) from None
    kind = _sniff(head)
    if kind is None:
        return Container(path, "file", single_file=path)
    try:
        if kind == "zip":
            members, keep = _read_zip(path, lim), []
        elif kind == "tar":
            members, keep = _read_plain_tar(path, lim)
        else:
            members, keep = _read_compressed_tar(path, kind, lim), []
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, ValueError, struct.error,
            NotImplementedError) as e:
        raise NNEFError(f"corrupt {kind} archive: {e}", SourcePos(path)) from None
    members = _strip_single_top_folder(members)
    if "graph.nnef" not in members:
        shown = ", ".join(sorted(members)[:8]) or "nothing"
        raise NNEFError(f"archive has no graph.nnef at its root (or in a single top-level folder); "
                        f"found: {shown}", SourcePos(path))
    return Container(path, kind, members=members, keep_alive=keep)


def _sniff(head: bytes) -> Optional[str]:
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) == 512 and (head[257:262] == b"ustar" or _tar_checksum_ok(head)):
        return "tar"
    return None


def _strip_single_top_folder(members: dict) -> dict:
    if "graph.nnef" in members or not members:
        return members
    relevant = [n for n in members if not n.startswith("__MACOSX/")]
    tops = {n.split("/", 1)[0] for n in relevant}
    if len(tops) != 1 or any("/" not in n for n in relevant):
        return members
    top = tops.pop() + "/"
    if top + "graph.nnef" not in members:
        return members
    return {n[len(top):]: v for n, v in members.items() if n.startswith(top)}


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


# ------------------------------------------------------------------ tar ----
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


# ------------------------------------------------------------------ zip ----
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
