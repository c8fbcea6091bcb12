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

This module holds the model-facing side (:class:`Container`, :func:`open_container`,
:class:`Limits`, folder access, name lookup); the archive readers live in
:mod:`.archive_tar` and :mod:`.archive_zip`, their shared defences in
:mod:`.archive_guards`.
"""
from __future__ import annotations

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
from .archive_tar import _read_compressed_tar, _read_plain_tar, _tar_checksum_ok
from .archive_zip import _read_zip

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

