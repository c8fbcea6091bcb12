"""NNEF tensor files (``.dat``, spec §5.2): a 128-byte header plus a packed payload.

Layout (all little-endian)::

    0   magic 'N' 0xEF          2  version major, minor (only 1.0 exists)
    4   u32 data length         8  u32 rank (<= 8)
    12  8 x u32 extents (those beyond rank unused)
    44  u32 bits per item       48 u32 item type: vendor (high 16 bits) | code (low 16)
    52  32 bytes deprecated item-type parameters     84  44 bytes reserved
    128 payload: the row-major items as one continuous bit stream, last byte zero-padded

Why the reader is this strict: a ``.dat`` file is untrusted input that decides
how much memory we map and how it is interpreted, so every field is checked
(with the byte offset of the bad field) before the payload is touched, and the
payload size is derived with Python integers so that huge extents cannot
overflow into a plausible allocation.

Payload decoding rules (our reading of "continuous bit stream", which the spec
leaves open beyond the 1-bit bool case):

* widths that are a multiple of 8 bits: each item is ``bits/8`` little-endian
  bytes (8/16/32/64 are the usual machine types and are returned zero-copy);
* other widths: the stream is filled most-significant bit first, each item
  written most-significant bit first — the natural extension of the spec's
  1-bit bool packing (item ``i`` is bit ``7 - i % 8`` of byte ``i // 8``).

Signed integers (codes 3 and 4) are two's complement in ``bits`` bits.
"""
from __future__ import annotations

import enum
import io
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

import numpy as np

from ..errors import NNEFError, SourcePos

HEADER_SIZE = 128
MAX_RANK = 8
MAGIC = b"N\xef"
VERSION = (1, 0)

# Offsets of the header fields (used in error positions).
OFF_MAGIC = 0
OFF_VERSION = 2
OFF_DATA_LENGTH = 4
OFF_RANK = 8
OFF_EXTENTS = 12
OFF_BITS = 44
OFF_ITEM_TYPE = 48
OFF_VENDOR = 50          # high 16 bits of the little-endian item-type word
OFF_PARAMS = 52
OFF_RESERVED = 84

_HEADER = struct.Struct("<2s2BII8III8I11I")
assert _HEADER.size == HEADER_SIZE


class ItemType(enum.IntEnum):
    """Khronos item-type codes (vendor 0)."""

    FLOAT = 0
    UINT = 1
    QUINT = 2
    QINT = 3
    INT = 4
    BOOL = 5


_NNEF_DTYPE = {
    ItemType.FLOAT: "scalar", ItemType.QUINT: "scalar", ItemType.QINT: "scalar",
    ItemType.UINT: "integer", ItemType.INT: "integer",
    ItemType.BOOL: "logical",
}

_ITEM_TYPE_NAMES = {
    "float": ItemType.FLOAT, "uint": ItemType.UINT, "unsigned": ItemType.UINT,
    "quint": ItemType.QUINT, "qint": ItemType.QINT, "int": ItemType.INT,
    "signed": ItemType.INT, "bool": ItemType.BOOL, "logical": ItemType.BOOL,
}


@dataclass(frozen=True)
class TensorHeader:
    """The decoded header of a tensor file.

    ``item_type`` is the effective Khronos code: a deprecated code-1 file whose
    first parameter word is non-zero ("signed") reads as :attr:`ItemType.INT`.
    ``quant_params`` holds the deprecated (pre-1.0.3) ``(min, max)`` pair of a
    quantized file when one was written, else None.
    """

    version: tuple[int, int]
    data_length: int
    rank: int
    shape: tuple[int, ...]
    bits: int
    item_type: ItemType
    vendor: int = 0
    quant_params: Optional[tuple[float, float]] = None

    @property
    def dtype(self) -> str:
        """The NNEF data type this item type maps to (§5.2.1)."""
        return _NNEF_DTYPE[self.item_type]

    @property
    def is_quantized(self) -> bool:
        return self.item_type in (ItemType.QUINT, ItemType.QINT)

    @property
    def is_signed(self) -> bool:
        return self.item_type in (ItemType.INT, ItemType.QINT)

    @property
    def volume(self) -> int:
        n = 1
        for e in self.shape:
            n *= e
        return n

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype :func:`read_tensor` returns for this header."""
        return _result_dtype(self.item_type, self.bits)


def _result_dtype(item_type: ItemType, bits: int) -> np.dtype:
    if item_type == ItemType.FLOAT:
        return np.dtype({16: np.float16, 32: np.float32, 64: np.float64}[bits])
    if item_type == ItemType.BOOL:
        return np.dtype(np.bool_)
    width = 8 if bits <= 8 else 16 if bits <= 16 else 32 if bits <= 32 else 64
    kind = "i" if item_type in (ItemType.INT, ItemType.QINT) else "u"
    return np.dtype(f"{kind}{width // 8}")


def payload_length(volume: int, bits: int) -> int:
    """``ceil(volume * bits / 8)``: the payload size the spec requires."""
    return (volume * bits + 7) // 8


# ---------------------------------------------------------------- reading ----
def _fail(file: str, offset: int, message: str) -> NNEFError:
    return NNEFError(message, SourcePos(file, offset=offset))


def parse_header(data, name: str = "<tensor>") -> TensorHeader:
    """Decode and validate the 128-byte header of ``data`` (payload size included)."""
    view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    size = len(view)
    if size >= 1 and view[0] != MAGIC[0]:
        raise _fail(name, 0, f"not an NNEF tensor file: magic byte 0 is 0x{view[0]:02x}, expected 0x4e ('N')")
    if size >= 2 and view[1] != MAGIC[1]:
        raise _fail(name, 1, f"not an NNEF tensor file: magic byte 1 is 0x{view[1]:02x}, expected 0xef")
    if size < HEADER_SIZE:
        raise _fail(name, size, f"tensor file is truncated: {size} bytes, expected at least the "
                                f"{HEADER_SIZE}-byte header")
    fields = _HEADER.unpack_from(view, 0)
    _, major, minor, data_length, rank = fields[:5]
    extents = fields[5:13]
    bits, item_word = fields[13:15]
    params = fields[15:23]
    reserved = fields[23:34]

    if (major, minor) != VERSION:
        off = OFF_VERSION if major != 1 else OFF_VERSION + 1
        raise _fail(name, off, f"unsupported tensor file version {major}.{minor}, expected 1.0")
    if rank > MAX_RANK:
        raise _fail(name, OFF_RANK, f"tensor rank {rank} exceeds the maximum rank {MAX_RANK}")
    for i in range(rank):
        if extents[i] == 0:
            raise _fail(name, OFF_EXTENTS + 4 * i, f"extent {i} is 0, expected a positive extent")
    for i in range(rank, MAX_RANK):
        if extents[i] != 0:
            # The Khronos readers ignore unused extents, so we only warn.
            warnings.warn(f"{SourcePos(name, offset=OFF_EXTENTS + 4 * i)}: extent {i} beyond rank {rank} "
                          f"is {extents[i]}, expected 0 (ignored)", stacklevel=3)
            break

    vendor = item_word >> 16
    code = item_word & 0xFFFF
    if vendor != 0:
        raise _fail(name, OFF_VENDOR, f"unknown vendor-specific item type 0x{item_word:08x} "
                                      f"(vendor {vendor}); only Khronos item types (vendor 0) can be read")
    if code > max(ItemType):
        raise _fail(name, OFF_ITEM_TYPE, f"unknown item type code {code}, expected 0 (float), 1 (unsigned int), "
                                         f"2 (quantized unsigned), 3 (quantized signed), 4 (signed int) or 5 (bool)")
    item_type = ItemType(code)
    if item_type == ItemType.FLOAT and bits not in (16, 32, 64):
        raise _fail(name, OFF_BITS, f"{bits} bits per item is invalid for float items, expected 16, 32 or 64")
    if item_type == ItemType.BOOL and bits not in (1, 8):
        raise _fail(name, OFF_BITS, f"{bits} bits per item is invalid for bool items, expected 1 or 8")
    if not 1 <= bits <= 64:
        raise _fail(name, OFF_BITS, f"{bits} bits per item is invalid for integer items, expected 1 to 64")

    quant_params = None
    if item_type == ItemType.UINT and params[0] != 0:
        item_type = ItemType.INT      # deprecated pre-1.0.3 'signed' flag
    elif item_type in (ItemType.QUINT, ItemType.QINT) and (params[0] or params[1]):
        lo, hi = struct.unpack_from("<2f", view, OFF_PARAMS)
        quant_params = (lo, hi)
    for i, p in enumerate(reserved):
        if p != 0:
            raise _fail(name, OFF_RESERVED + 4 * i, "reserved header bytes 84..127 must be zero")

    shape = tuple(extents[:rank])
    volume = 1
    for e in shape:
        volume *= e
    expected = payload_length(volume, bits)
    if data_length != expected:
        raise _fail(name, OFF_DATA_LENGTH,
                    f"data length {data_length} does not match extents {list(shape)} at {bits} bits "
                    f"per item, expected {expected} bytes")
    if size < HEADER_SIZE + data_length:
        raise _fail(name, size, f"tensor file is truncated: {size} bytes, expected "
                                f"{HEADER_SIZE + data_length} (header + {data_length} data bytes)")
    if size > HEADER_SIZE + data_length:
        raise _fail(name, HEADER_SIZE + data_length,
                    f"tensor file has {size - HEADER_SIZE - data_length} trailing bytes after the "
                    f"{data_length} data bytes")
    return TensorHeader(version=(major, minor), data_length=data_length, rank=rank, shape=shape,
                        bits=bits, item_type=item_type, vendor=vendor, quant_params=quant_params)


def read_tensor(data, name: str = "<tensor>") -> tuple[np.ndarray, TensorHeader]:
    """Decode a tensor file held in ``data`` (bytes, bytearray, memoryview or mmap).

    Byte-aligned machine widths (8/16/32/64 bits, bool stored as 8 bits with
    only 0/1 values) are returned as zero-copy views of ``data`` (read-only when
    ``data`` is); other widths are unpacked into a new array.
    """
    header = parse_header(data, name)
    count = header.volume
    it, bits = header.item_type, header.bits
    if it == ItemType.BOOL:
        raw = np.frombuffer(data, np.uint8, header.data_length, HEADER_SIZE)
        if bits == 1:
            values = np.unpackbits(raw, count=count, bitorder="big").view(np.bool_)
        elif raw.size and raw.max() > 1:
            values = raw != 0                 # any non-zero byte is true
        else:
            values = raw.view(np.bool_)
    elif it == ItemType.FLOAT or bits in (8, 16, 32, 64):
        dt = _result_dtype(it, bits).newbyteorder("<")
        values = np.frombuffer(data, dt, count, HEADER_SIZE)
    else:
        raw = np.frombuffer(data, np.uint8, header.data_length, HEADER_SIZE)
        values = _unpack_ints(raw, count, bits, header.is_signed)
    return values.reshape(header.shape), header


def read_tensor_file(path: Union[str, os.PathLike]) -> tuple[np.ndarray, TensorHeader]:
    """Read a ``.dat`` file through a read-only memory map (the array keeps the map alive)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as e:
        raise NNEFError(f"cannot read tensor file: {e.strerror or e}", SourcePos(path)) from None
    return read_tensor(data, path)


def _unpack_ints(raw: np.ndarray, count: int, bits: int, signed: bool) -> np.ndarray:
    """Decode ``count`` integers of a width that numpy has no dtype for."""
    out = np.empty(count, _result_dtype(ItemType.INT if signed else ItemType.UINT, bits))
    if bits % 8 == 0:
        # little-endian byte groups (24, 40, 48, 56 bits)
        nbytes = bits // 8
        groups = raw[: count * nbytes].reshape(count, nbytes)
        acc = np.zeros(count, np.uint64)
        for k in range(nbytes):
            acc |= groups[:, k].astype(np.uint64) << np.uint64(8 * k)
        _store(out, acc, bits, signed)
        return out
    # MSB-first continuous bit stream, decoded in chunks to bound temporaries. Item i
    # starts at bit i*bits; it lies within the big-endian window of the 2 (bits <= 8)
    # or 8 (bits <= 57) bytes from its first byte; wider items go through a bit matrix.
    padded = np.concatenate([raw, np.zeros(8, np.uint8)])
    mask = np.uint64((1 << bits) - 1)
    for start in range(0, count, _CHUNK_ITEMS):
        n = min(_CHUNK_ITEMS, count - start)
        bitpos = (np.arange(start, start + n, dtype=np.uint64) * np.uint64(bits))
        first = (bitpos >> np.uint64(3)).astype(np.intp)
        skew = bitpos & np.uint64(7)
        if bits <= 8:
            window = (padded[first].astype(np.uint64) << np.uint64(8)) | padded[first + 1]
            acc = (window >> (np.uint64(16 - bits) - skew)) & mask
        elif bits <= 57:
            window = np.lib.stride_tricks.sliding_window_view(padded, 8)[first].view(">u8").reshape(n)
            acc = (window.astype(np.uint64) >> (np.uint64(64 - bits) - skew)) & mask
        else:
            first_bit = start * bits
            chunk = raw[first_bit // 8: (first_bit + n * bits + 7) // 8]
            full = np.zeros((n, 64), np.uint8)
            full[:, 64 - bits:] = np.unpackbits(chunk, count=n * bits, bitorder="big").reshape(n, bits)
            acc = np.packbits(full, axis=1, bitorder="big").view(">u8").reshape(n).astype(np.uint64)
        _store(out[start:start + n], acc, bits, signed)
    return out


_CHUNK_ITEMS = 1 << 16       # items per chunk of bit-stream (un)packing: <= 4 MiB temporaries


def _store(out: np.ndarray, acc: np.ndarray, bits: int, signed: bool) -> None:
    """Write unsigned ``bits``-wide values into ``out``, sign-extending when ``signed``."""
    if signed:
        shift = np.uint64(64 - bits)
        out[...] = ((acc << shift).view(np.int64) >> np.int64(64 - bits)).astype(out.dtype)
    else:
        out[...] = acc.astype(out.dtype)


# ---------------------------------------------------------------- writing ----
def _default_item_type(dtype: np.dtype) -> ItemType:
    if dtype.kind == "f":
        return ItemType.FLOAT
    if dtype.kind == "b":
        return ItemType.BOOL
    if dtype.kind == "i":
        return ItemType.INT
    if dtype.kind == "u":
        return ItemType.UINT
    raise ValueError(f"cannot write arrays of dtype {dtype} as an NNEF tensor")


def _coerce_item_type(item_type) -> ItemType:
    if isinstance(item_type, str):
        try:
            return _ITEM_TYPE_NAMES[item_type.lower()]
        except KeyError:
            raise ValueError(f"unknown item type name {item_type!r}; one of {sorted(_ITEM_TYPE_NAMES)}") from None
    return ItemType(int(item_type))


def encode_header(shape, bits: int, item_type) -> bytes:
    """The 128-byte header (version 1.0) for a tensor of ``shape``."""
    item_type = _coerce_item_type(item_type)
    shape = tuple(int(s) for s in shape)
    if len(shape) > MAX_RANK:
        raise ValueError(f"rank {len(shape)} exceeds the NNEF maximum of {MAX_RANK}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"NNEF tensor extents must be positive, got {list(shape)}")
    volume = 1
    for s in shape:
        volume *= s
    length = payload_length(volume, bits)
    if length > 0xFFFFFFFF or max(shape, default=0) > 0xFFFFFFFF:
        raise ValueError("tensor too large for the 32-bit fields of an NNEF tensor file")
    extents = list(shape) + [0] * (MAX_RANK - len(shape))
    return _HEADER.pack(MAGIC, *VERSION, length, len(shape), *extents, bits, int(item_type),
                        *([0] * 8), *([0] * 11))


def encode_payload(array: np.ndarray, item_type: ItemType, bits: int) -> Union[bytes, memoryview]:
    """Pack the items of ``array`` as the spec's bit stream (see the module docstring)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if item_type == ItemType.FLOAT:
        return memoryview(np.ascontiguousarray(flat.astype(f"<f{bits // 8}", copy=False))).cast("B")
    if item_type == ItemType.BOOL:
        truth = flat.astype(np.bool_, copy=False)
        if bits == 1:
            return np.packbits(truth, bitorder="big").tobytes()
        return truth.astype(np.uint8).tobytes()
    signed = item_type in (ItemType.INT, ItemType.QINT)
    values = _checked_ints(flat, bits, signed)
    if bits in (8, 16, 32, 64):
        dt = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        return memoryview(np.ascontiguousarray(values.astype(dt, copy=False))).cast("B")
    acc = values.astype(np.int64).view(np.uint64) if signed else values.astype(np.uint64)
    if bits < 64:
        acc = acc & np.uint64((1 << bits) - 1)
    if bits % 8 == 0:
        return acc.astype("<u8").view(np.uint8).reshape(-1, 8)[:, : bits // 8].tobytes()
    out = []
    for start in range(0, acc.size, _CHUNK_ITEMS):
        part = acc[start:start + _CHUNK_ITEMS]
        # big-endian bytes -> bits MSB first -> keep the low ``bits`` of each item -> one stream
        if bits <= 8:
            allbits = np.unpackbits(part.astype(np.uint8)[:, None], axis=1, bitorder="big")
            keep = allbits[:, 8 - bits:]
        else:
            allbits = np.unpackbits(part.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="big")
            keep = allbits[:, 64 - bits:]
        out.append(np.packbits(keep.reshape(-1), bitorder="big"))
    return np.concatenate(out).tobytes() if out else b""


def _checked_ints(flat: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    if flat.dtype.kind not in "iub":
        raise ValueError(f"integer item types need an integer array, got {flat.dtype}")
    if flat.size == 0:
        return flat
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    vmin, vmax = int(flat.min()), int(flat.max())
    if vmin < lo or vmax > hi:
        raise ValueError(f"values in [{vmin}, {vmax}] do not fit {'signed' if signed else 'unsigned'} "
                         f"{bits}-bit items [{lo}, {hi}]")
    return flat


def write_tensor(file_or_path: Union[str, os.PathLike, BinaryIO], array, *, item_type=None,
                 bits: Optional[int] = None) -> TensorHeader:
    """Write ``array`` as an NNEF tensor file (header version 1.0 + payload).

    ``item_type``: an :class:`ItemType`, its code, or a name ('float', 'uint',
    'quint', 'qint', 'int', 'bool'); default from the dtype. ``bits``: default
    the dtype's width (1 for bool, as the Khronos writer does). Integer values
    must fit in ``bits``. Returns the header written.
    """
    array = np.asarray(array)
    it = _coerce_item_type(item_type) if item_type is not None else _default_item_type(array.dtype)
    if bits is None:
        bits = 1 if it == ItemType.BOOL else 8 if array.dtype.kind == "b" else array.dtype.itemsize * 8
    if it == ItemType.FLOAT and bits not in (16, 32, 64):
        raise ValueError(f"float items need 16, 32 or 64 bits, got {bits}")
    if it == ItemType.BOOL and bits not in (1, 8):
        raise ValueError(f"bool items need 1 or 8 bits, got {bits}")
    if not 1 <= bits <= 64:
        raise ValueError(f"bits per item must be 1..64, got {bits}")
    header = encode_header(array.shape, bits, it)
    payload = encode_payload(array, it, bits)
    if isinstance(file_or_path, (str, os.PathLike)):
        with open(file_or_path, "wb") as f:
            f.write(header)
            f.write(payload)
    else:
        file_or_path.write(header)
        file_or_path.write(payload)
    shape = tuple(int(e) for e in array.shape)
    return TensorHeader(version=VERSION, data_length=payload_length(_volume(shape), bits), rank=len(shape),
                        shape=shape, bits=bits, item_type=it)


def _volume(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def tensor_bytes(array, *, item_type=None, bits: Optional[int] = None) -> bytes:
    """The complete tensor file for ``array`` as bytes (handy for tests and archives)."""
    buf = io.BytesIO()
    write_tensor(buf, array, item_type=item_type, bits=bits)
    return buf.getvalue()


# ------------------------------------------------------ loader-side check ----
def check_against_variable(header: TensorHeader, shape, dtype: Optional[str], label: str,
                           file: str) -> None:
    """Check a tensor file against its ``variable`` declaration (shape incl. rank, data type).

    ``dtype`` is the NNEF type of the variable ('scalar', 'integer', 'logical');
    quantized codes belong to 'scalar' variables (§5.2.1).
    """
    if shape is not None:
        declared = tuple(int(s) for s in shape)
        if declared != header.shape:
            if len(declared) != header.rank:
                off = OFF_RANK
            else:
                off = OFF_EXTENTS + 4 * next(i for i, (a, b) in enumerate(zip(declared, header.shape)) if a != b)
            raise NNEFError(f"shape {list(header.shape)} in tensor file does not match shape "
                            f"{list(declared)} of variable with label '{label}'", SourcePos(file, offset=off))
    if dtype is not None and dtype != header.dtype:
        raise NNEFError(f"tensor file holds {header.item_type.name.lower()} items ({header.dtype} data) but "
                        f"variable with label '{label}' is declared {dtype}", SourcePos(file, offset=OFF_ITEM_TYPE))
