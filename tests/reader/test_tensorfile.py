"""NNEF tensor files: round trips, the shared example files, the Khronos reader/writer as oracle,
and every header check (with the byte offset it reports)."""
import io
import mmap
import os
import struct
import warnings

import numpy as np
import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import tensorfile as tf
from nnef_tvm.reader.tensorfile import ItemType

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "nnef", "examples")
EXAMPLES = os.environ.get("NNEF_EXAMPLES", os.path.normpath(EXAMPLES))
if not os.path.isdir(EXAMPLES):
    EXAMPLES = "/work/shared/nnef/examples"
needs_examples = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="shared NNEF examples not available")


# ------------------------------------------------------------- references ----
def ref_header(shape, bits, code, data_length=None, params=(0,) * 8):
    """A header assembled field by field from the spec table (independent of tf.encode_header)."""
    volume = int(np.prod(shape)) if shape else 1
    if data_length is None:
        data_length = -(-volume * bits // 8)
    out = bytearray(b"N\xef\x01\x00")
    out += struct.pack("<I", data_length)
    out += struct.pack("<I", len(shape))
    out += b"".join(struct.pack("<I", e) for e in list(shape) + [0] * (8 - len(shape)))
    out += struct.pack("<II", bits, code)
    out += struct.pack("<8I", *params)
    out += bytes(44)
    assert len(out) == 128
    return bytes(out)


def ref_pack_bits(values, bits):
    """Spec packing written element by element: MSB-first continuous bit stream (small inputs only)."""
    stream = []
    for v in values:
        v = int(v) & ((1 << bits) - 1)
        stream.extend((v >> (bits - 1 - k)) & 1 for k in range(bits))
    stream.extend([0] * (-len(stream) % 8))
    return bytes(int("".join(map(str, stream[i:i + 8])), 2) for i in range(0, len(stream), 8))


def ref_pack_le(values, bits):
    nbytes = bits // 8
    return b"".join((int(v) & ((1 << bits) - 1)).to_bytes(nbytes, "little") for v in values)


def random_ints(rng, shape, bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dt = np.int64 if signed else np.uint64
    a = rng.integers(lo, hi, size=shape, endpoint=True, dtype=dt)
    a.flat[0] = lo
    a.flat[-1] = hi
    return a


# -------------------------------------------------------------- round trips ----
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (2, 3, 4), (1, 1, 1, 1, 1, 1, 1, 2)])
def test_tensorfile_float_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(dtype)
    if a.size > 1:
        a.flat[1] = np.inf
    blob = tf.tensor_bytes(a)
    bits = np.dtype(dtype).itemsize * 8
    assert blob == ref_header(shape, bits, 0) + a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    back, header = tf.read_tensor(blob)
    assert back.dtype == dtype and back.shape == shape
    assert back.tobytes() == a.tobytes()
    assert header.dtype == "scalar" and header.bits == bits and header.item_type == ItemType.FLOAT


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48, 53, 56, 63, 64])
def test_tensorfile_int_round_trip_every_width(bits, signed):
    rng = np.random.default_rng(bits)
    shape = (3, 5, 7)
    a = random_ints(rng, shape, bits, signed)
    code = ItemType.INT if signed else ItemType.UINT
    blob = tf.tensor_bytes(a, item_type=code, bits=bits)
    payload = ref_pack_le(a.ravel(), bits) if bits % 8 == 0 else ref_pack_bits(a.ravel(), bits)
    assert blob == ref_header(shape, bits, int(code)) + payload
    back, header = tf.read_tensor(blob)
    assert back.shape == shape
    assert back.dtype.kind == ("i" if signed else "u")
    assert back.dtype.itemsize * 8 >= bits
    assert np.array_equal(back.astype(np.int64 if signed else np.uint64), a)
    assert header.dtype == "integer" and header.is_signed == signed and not header.is_quantized


@pytest.mark.parametrize("code", [ItemType.QUINT, ItemType.QINT])
@pytest.mark.parametrize("bits", [4, 8, 16, 32])
def test_tensorfile_quantized_round_trip(code, bits):
    signed = code == ItemType.QINT
    a = random_ints(np.random.default_rng(1), (6, 2), bits, signed)
    blob = tf.tensor_bytes(a, item_type=code, bits=bits)
    back, header = tf.read_tensor(blob)
    assert np.array_equal(back.astype(np.int64 if signed else np.uint64), a)
    assert header.is_quantized and header.dtype == "scalar" and header.item_type == code


@pytest.mark.parametrize("bits", [1, 8])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 17, 64, 1000])
def test_tensorfile_bool_round_trip(bits, n):
    a = np.random.default_rng(n).random(n) < 0.5
    blob = tf.tensor_bytes(a, bits=bits)
    payload = ref_pack_bits(a, 1) if bits == 1 else bytes(int(v) for v in a)
    assert blob == ref_header((n,), bits, 5) + payload
    back, header = tf.read_tensor(blob)
    assert back.dtype == np.bool_ and np.array_equal(back, a)
    assert header.dtype == "logical"


def test_tensorfile_bool_packing_matches_spec_example():
    # SPEC-NOTES §6.2: T,F,T,T,F,F,T,F,T -> b2 80
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1], bool)
    assert tf.tensor_bytes(a)[128:] == bytes([0xB2, 0x80])


def test_tensorfile_bool8_nonzero_bytes_are_true():
    blob = ref_header((4,), 8, 5) + bytes([0, 1, 2, 255])
    back, _ = tf.read_tensor(blob)
    assert back.tolist() == [False, True, True, True]


def test_tensorfile_byte_aligned_reads_are_zero_copy(tmp_path):
    a = np.arange(1000, dtype=np.float32).reshape(10, 100)
    path = tmp_path / "w.dat"
    tf.write_tensor(path, a)
    blob = bytearray(path.read_bytes())
    back, _ = tf.read_tensor(blob)
    assert np.shares_memory(back, np.frombuffer(blob, np.uint8))
    blob[128:132] = struct.pack("<f", 42.0)       # a view sees changes of the buffer
    assert back[0, 0] == 42.0
    mapped, _ = tf.read_tensor_file(path)
    base = mapped
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert isinstance(base, mmap.mmap)
    assert not mapped.flags.writeable
    assert np.array_equal(mapped, a)


def test_tensorfile_write_to_file_object_and_path_agree(tmp_path):
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    buf = io.BytesIO()
    h1 = tf.write_tensor(buf, a)
    h2 = tf.write_tensor(tmp_path / "x.dat", a)
    assert buf.getvalue() == (tmp_path / "x.dat").read_bytes()
    assert h1 == h2 and h1.shape == (3, 4) and h1.bits == 16 and h1.item_type == ItemType.INT


def test_tensorfile_writer_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        tf.tensor_bytes(np.array([8]), item_type="int", bits=4)
    with pytest.raises(ValueError):
        tf.tensor_bytes(np.array([-1]), item_type="uint", bits=8)
    with pytest.raises(ValueError):
        tf.tensor_bytes(np.zeros(2, np.float32), bits=8)
    with pytest.raises(ValueError):
        tf.tensor_bytes(np.zeros((0, 2), np.float32))


def test_tensorfile_deprecated_signed_flag_reads_as_signed():
    payload = bytes([0xFF, 0x01])
    blob = ref_header((2,), 8, 1, params=(1, 0, 0, 0, 0, 0, 0, 0)) + payload
    back, header = tf.read_tensor(blob)
    assert header.item_type == ItemType.INT and back.tolist() == [-1, 1]


def test_tensorfile_deprecated_quant_params_are_kept():
    lo, hi = struct.unpack("<2I", struct.pack("<2f", -1.0, 1.0))
    blob = ref_header((2,), 8, 2, params=(lo, hi, 0, 0, 0, 0, 0, 0)) + bytes([0, 255])
    _, header = tf.read_tensor(blob)
    assert header.quant_params == (-1.0, 1.0)


# ----------------------------------------------------------- shared examples ----
@needs_examples
def test_tensorfile_example_filter_and_bias():
    codes, header = tf.read_tensor_file(os.path.join(EXAMPLES, "06_quantized", "conv1", "filter.dat"))
    assert header.shape == (3, 2, 1, 1) and header.bits == 8 and header.item_type == ItemType.QINT
    assert header.dtype == "scalar" and header.is_quantized
    assert codes.dtype == np.int8 and codes.ravel().tolist() == [4, -8, 12, -16, 20, -24]
    bias, header = tf.read_tensor_file(os.path.join(EXAMPLES, "06_quantized", "conv1", "bias.dat"))
    assert header.shape == (1, 3) and header.data_length == 12
    assert bias.dtype == np.float32 and bias.tolist() == [[0.5, -0.5, 0.0]]
    weights, _ = tf.read_tensor_file(os.path.join(EXAMPLES, "06_quantized", "fc", "weights.dat"))
    np.testing.assert_array_equal(weights, np.array([[0, .1, .2], [.3, .4, .5]], np.float32))


@needs_examples
def test_tensorfile_example_bad_magic_reports_offset_1():
    path = os.path.join(EXAMPLES, "i06_bad_dat_header", "w", "weights.dat")
    with pytest.raises(NNEFError) as e:
        tf.read_tensor_file(path)
    assert e.value.offset == 1 and e.value.file == path
    assert "magic" in e.value.message and "0xef" in e.value.message


# ----------------------------------------------------------- Khronos oracle ----
khronos = pytest.importorskip("nnef")

ORACLE_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16,
                 np.int32, np.uint32, np.int64, np.uint64, np.bool_]


@pytest.mark.parametrize("dtype", ORACLE_DTYPES)
def test_tensorfile_khronos_writes_we_read(dtype, tmp_path):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((2, 3, 5)) * 100).astype(dtype) if dtype != np.bool_ else rng.random((2, 3, 5)) < .5
    path = tmp_path / "k.dat"
    with open(path, "wb") as f:
        khronos.write_tensor(f, a)
    back, header = tf.read_tensor_file(path)
    assert back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes()
    assert tf.tensor_bytes(a) == path.read_bytes()       # and we write the very same bytes


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint32])
def test_tensorfile_khronos_quantized_both_ways(dtype, tmp_path):
    a = np.arange(-3, 3).astype(dtype) if np.dtype(dtype).kind == "i" else np.arange(6).astype(dtype)
    path = tmp_path / "q.dat"
    with open(path, "wb") as f:
        khronos.write_tensor(f, a, quantized=True)
    back, header = tf.read_tensor_file(path)
    assert header.is_quantized and np.array_equal(back, a)
    code = ItemType.QINT if np.dtype(dtype).kind == "i" else ItemType.QUINT
    ours = tmp_path / "ours.dat"
    tf.write_tensor(ours, a, item_type=code)
    with open(ours, "rb") as f:
        theirs, quantized = khronos.read_tensor(f, return_quantization=True)
    assert quantized and theirs.dtype == a.dtype and np.array_equal(theirs, a)


@pytest.mark.parametrize("dtype", ORACLE_DTYPES)
@pytest.mark.parametrize("shape", [(1,), (4, 1), (3, 1, 2, 1, 1)])
def test_tensorfile_we_write_khronos_reads(dtype, shape, tmp_path):
    rng = np.random.default_rng(4)
    a = (rng.standard_normal(shape) * 50).astype(dtype) if dtype != np.bool_ else rng.random(shape) < .5
    path = tmp_path / "o.dat"
    tf.write_tensor(path, a)
    with open(path, "rb") as f:
        theirs = khronos.read_tensor(f)
    assert theirs.dtype == a.dtype and theirs.shape == a.shape and np.array_equal(theirs, a)


# ---------------------------------------------------------- header checks ----
GOOD = ref_header((2, 3), 32, 0) + np.arange(6, dtype="<f4").tobytes()


def patched(offset, data, base=GOOD):
    b = bytearray(base)
    b[offset:offset + len(data)] = data
    return bytes(b)


def u32(v):
    return struct.pack("<I", v)


BAD_HEADERS = [
    ("empty", b"", 0, "truncated"),
    ("short header", GOOD[:100], 100, "truncated"),
    ("magic 0", patched(0, b"M"), 0, "magic byte 0"),
    ("magic 1", patched(1, b"\xee"), 1, "magic byte 1"),
    ("major", patched(2, b"\x02"), 2, "version 2.0"),
    ("minor", patched(3, b"\x01"), 3, "version 1.1"),
    ("rank 9", patched(8, u32(9)), 8, "rank 9"),
    ("zero extent", patched(16, u32(0)), 16, "extent 1 is 0"),
    ("float bits", patched(44, u32(8)), 44, "16, 32 or 64"),
    ("bits 0", patched(48, u32(1), patched(44, u32(0))), 44, "1 to 64"),
    ("bits 65", patched(48, u32(4), patched(44, u32(65))), 44, "1 to 64"),
    ("bool bits", patched(48, u32(5), patched(44, u32(4))), 44, "1 or 8"),
    ("code 6", patched(48, u32(6)), 48, "unknown item type code 6"),
    ("vendor", patched(48, u32(0x00010000)), 50, "vendor"),
    ("reserved", patched(100, b"\x01"), 100, "reserved"),
    ("data length", patched(4, u32(25)), 4, "expected 24 bytes"),
    ("truncated payload", GOOD[:-1], 151, "truncated"),
    ("trailing bytes", GOOD + b"\x00", 152, "trailing"),
    ("huge extents", patched(12, u32(0xFFFFFFFF) * 2), 4, "does not match"),
]


@pytest.mark.parametrize("label,blob,offset,words", BAD_HEADERS, ids=[b[0] for b in BAD_HEADERS])
def test_tensorfile_header_errors_are_located(label, blob, offset, words):
    with pytest.raises(NNEFError) as e:
        tf.read_tensor(blob, "w.dat")
    assert e.value.file == "w.dat"
    assert e.value.offset == offset, e.value
    assert words in e.value.message, e.value.message


def test_tensorfile_khronos_agrees_on_rejections(tmp_path):
    """Each fault the Khronos Python reader also checks is rejected by it as well (oracle sanity)."""
    for label, blob, _, _ in BAD_HEADERS:
        if label in ("magic 0", "magic 1", "major", "minor", "rank 9", "data length", "truncated payload",
                     "trailing bytes"):
            path = tmp_path / "bad.dat"
            path.write_bytes(blob)
            with open(path, "rb") as f, pytest.raises(ValueError):
                khronos.read_tensor(f)


def test_tensorfile_unused_extents_warn_but_read():
    blob = patched(12 + 4 * 5, u32(7))
    with pytest.warns(UserWarning, match="beyond rank"):
        back, header = tf.read_tensor(blob)
    assert header.shape == (2, 3) and back.shape == (2, 3)


def test_tensorfile_memoryview_and_mmap_inputs(tmp_path):
    back, _ = tf.read_tensor(memoryview(GOOD), "m")
    assert back.tolist() == [[0, 1, 2], [3, 4, 5]]
    path = tmp_path / "g.dat"
    path.write_bytes(GOOD)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    back, _ = tf.read_tensor(m, str(path))
    assert back.sum() == 15


def test_tensorfile_missing_file_is_an_nnef_error(tmp_path):
    with pytest.raises(NNEFError) as e:
        tf.read_tensor_file(tmp_path / "nope.dat")
    assert e.value.file.endswith("nope.dat")


def test_tensorfile_empty_file_is_truncated(tmp_path):
    (tmp_path / "e.dat").write_bytes(b"")
    with pytest.raises(NNEFError, match="truncated"):
        tf.read_tensor_file(tmp_path / "e.dat")


# ------------------------------------------------------- variable check ----
def test_tensorfile_check_against_variable():
    _, header = tf.read_tensor(GOOD)
    tf.check_against_variable(header, (2, 3), "scalar", "w", "w.dat")
    with pytest.raises(NNEFError) as e:
        tf.check_against_variable(header, (2, 3, 1), "scalar", "w", "w.dat")
    assert e.value.offset == 8 and "[2, 3, 1]" in e.value.message
    with pytest.raises(NNEFError) as e:
        tf.check_against_variable(header, (2, 4), "scalar", "w", "w.dat")
    assert e.value.offset == 16
    with pytest.raises(NNEFError) as e:
        tf.check_against_variable(header, (2, 3), "integer", "w", "w.dat")
    assert e.value.offset == 48 and "integer" in e.value.message
    _, qheader = tf.read_tensor(tf.tensor_bytes(np.zeros(3, np.int8), item_type="qint"))
    tf.check_against_variable(qheader, (3,), "scalar", "q", "q.dat")      # quantized -> scalar
    _, bheader = tf.read_tensor(tf.tensor_bytes(np.zeros(3, bool)))
    with pytest.raises(NNEFError):
        tf.check_against_variable(bheader, (3,), "scalar", "b", "b.dat")


@pytest.mark.parametrize("bits,signed", [(1, False), (3, True), (7, False), (13, True), (41, False), (60, True)])
def test_tensorfile_bit_stream_across_chunk_boundaries(bits, signed):
    """Large tensors are (un)packed in chunks: the stream around each boundary matches the spec packing."""
    n = 2 * 65536 + 37
    a = random_ints(np.random.default_rng(bits), (n,), bits, signed)
    blob = tf.tensor_bytes(a, item_type="int" if signed else "uint", bits=bits)
    payload = blob[128:]
    assert len(payload) == (n * bits + 7) // 8
    for k in (0, 65536 - 16, 65536 * 2 - 8, n - 37 - 8 + 5 - (n - 37 - 8 + 5) % 8):
        m = min(32, (n - k) // 8 * 8)
        assert payload[k * bits // 8:(k + m) * bits // 8] == ref_pack_bits(a[k:k + m], bits), k
    back, _ = tf.read_tensor(blob)
    assert np.array_equal(back.astype(a.dtype), a)
