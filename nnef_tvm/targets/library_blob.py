"""Read and rewrite the serialized module tree TVM embeds in an exported library.

``export_library`` stores every non-DSO module (the Relax VM executable, the
CUDA device module, ...) in one blob under the symbol ``__tvm_ffi__library_bin``.
Layout (tvm-ffi ``ProcessLibraryBin``; all integers little-endian u64)::

    <nbytes> <indptr: vec<u64>> <children: vec<u64>>
    then per module: <kind: str> [<payload: bytes>]   (no payload for "_lib")

with ``str``/``bytes`` = <len> <data> and ``vec`` = <len> <items>. A CUDA
module payload is ``<fmt: str> <fmap> <code: bytes>``: the CUDA source when
``fmt == "cuda"``. We replace it by compiled device code (``fmt == "fatbin"``)
so the library never needs a CUDA compiler at load time.

We also emit the blob as an assembler ``.incbin`` (fast for blobs of any size,
works with every GNU toolchain) instead of a C array.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass


def _u64(data: bytes, at: int) -> tuple[int, int]:
    return struct.unpack_from("<Q", data, at)[0], at + 8


def _bytes(data: bytes, at: int) -> tuple[bytes, int]:
    n, at = _u64(data, at)
    return data[at:at + n], at + n


def _vec(data: bytes, at: int) -> tuple[list[int], int]:
    n, at = _u64(data, at)
    return list(struct.unpack_from(f"<{n}Q", data, at)), at + 8 * n


def _pack_bytes(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


@dataclass
class Blob:
    indptr: list[int]
    children: list[int]
    modules: list[tuple[str, bytes | None]]     # (kind, payload or None for "_lib")

    @classmethod
    def parse(cls, data: bytes) -> "Blob":
        nbytes, at = _u64(data, 0)
        end = 8 + nbytes
        indptr, at = _vec(data, at)
        children, at = _vec(data, at)
        modules = []
        for _ in range(len(indptr) - 1):
            kind, at = _bytes(data, at)
            payload = None
            if kind != b"_lib":
                payload, at = _bytes(data, at)
            modules.append((kind.decode(), payload))
        if at != end:
            raise ValueError(f"library blob: parsed {at} of {end} bytes")
        return cls(indptr, children, modules)

    def serialize(self) -> bytes:
        body = struct.pack("<Q", len(self.indptr)) + struct.pack(f"<{len(self.indptr)}Q",
                                                                 *self.indptr)
        body += struct.pack("<Q", len(self.children)) + struct.pack(
            f"<{len(self.children)}Q", *self.children)
        for kind, payload in self.modules:
            body += _pack_bytes(kind.encode())
            if payload is not None:
                body += _pack_bytes(payload)
        return struct.pack("<Q", len(body)) + body


def device_payload_format(payload: bytes) -> str:
    """The ``fmt`` field of a device-module payload ("cuda" = source, "fatbin", ...)."""
    fmt, _ = _bytes(payload, 0)
    return fmt.decode()


def split_device_payload(payload: bytes, code_candidates: list[bytes]) -> tuple[str, bytes, bytes]:
    """(fmt, fmap bytes, code) of a device-module payload ``<fmt><fmap><code>``.

    The fmap encoding is private to TVM, so the code field is found from the end:
    it is one of ``code_candidates`` (the module sources we know).
    """
    fmt, at = _bytes(payload, 0)
    for code in code_candidates:
        tail = _pack_bytes(code)
        if payload.endswith(tail) and len(payload) - len(tail) >= at:
            return fmt.decode(), payload[at:len(payload) - len(tail)], code
    raise ValueError("device module payload does not end with a known source")


def join_device_payload(fmt: str, fmap: bytes, code: bytes) -> bytes:
    return _pack_bytes(fmt.encode()) + fmap + _pack_bytes(code)


def write_incbin_source(blob: bytes, directory: str, symbol: str) -> str:
    """A C file defining ``symbol`` as the bytes of ``blob`` (via ``.incbin``)."""
    bin_path = os.path.abspath(os.path.join(directory, "library_bin.bin"))
    with open(bin_path, "wb") as f:
        f.write(blob)
    c_path = os.path.join(directory, "library_bin.c")
    escaped = bin_path.replace("\\", "\\\\").replace('"', '\\"')
    with open(c_path, "w") as f:
        f.write(f"""/* serialized TVM module tree (generated) */
__asm__(
  ".section .rodata.{symbol},\\"a\\"\\n"
  ".balign 16\\n"
  ".globl {symbol}\\n"
  ".type {symbol}, %object\\n"
  "{symbol}:\\n"
  ".incbin \\"{escaped}\\"\\n"
  ".size {symbol}, . - {symbol}\\n"
  ".previous\\n");
""")
    return c_path
