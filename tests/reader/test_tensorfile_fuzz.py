"""Property tests: arbitrary or corrupted tensor files only ever raise NNEFError, quickly, and
never allocate more than the input justifies; valid random tensors round-trip."""
import resource
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import tensorfile as tf

FUZZ = settings(max_examples=150, deadline=500, suppress_health_check=[HealthCheck.too_slow])


def _valid_blob(draw):
    code = draw(st.sampled_from([0, 1, 2, 3, 4, 5]))
    if code == 0:
        bits = draw(st.sampled_from([16, 32, 64]))
    elif code == 5:
        bits = draw(st.sampled_from([1, 8]))
    else:
        bits = draw(st.integers(1, 64))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=4)))
    volume = int(np.prod(shape)) if shape else 1
    payload = draw(st.binary(min_size=(volume * bits + 7) // 8, max_size=(volume * bits + 7) // 8))
    head = bytearray(b"N\xef\x01\x00")
    head += struct.pack("<II", len(payload), len(shape))
    head += struct.pack("<8I", *(list(shape) + [0] * (8 - len(shape))))
    head += struct.pack("<II", bits, code) + bytes(76)
    return bytes(head) + payload


@st.composite
def valid_blobs(draw):
    return _valid_blob(draw)


@st.composite
def corrupted_blobs(draw):
    blob = bytearray(_valid_blob(draw))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "u32", "cut", "extend"]))
        if kind == "flip" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "u32" and len(blob) >= 128:
            i = draw(st.sampled_from([4, 8, 12, 16, 20, 40, 44, 48, 52, 84]))
            blob[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 8, 9, 64, 65, 2**31, 2**32 - 1])))
        elif kind == "cut":
            del blob[draw(st.integers(0, len(blob))):]
        else:
            blob += draw(st.binary(min_size=1, max_size=8))
    return bytes(blob)


def _read_safely(blob):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values, header = tf.read_tensor(blob, "fuzz.dat")
        except NNEFError as e:
            assert e.file == "fuzz.dat" and e.offset is not None and 0 <= e.offset <= max(len(blob), 128)
            return None
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (after - before) < 200_000          # KiB: nothing close to a giant allocation
    assert values.nbytes <= 8 * 8 * len(blob) + 64   # at most one 64-bit item per payload bit
    return values, header


@FUZZ
@given(st.binary(max_size=300))
def test_tensorfile_fuzz_random_bytes(blob):
    _read_safely(blob)


@FUZZ
@given(st.binary(min_size=126, max_size=140))
def test_tensorfile_fuzz_random_headers_with_magic(rest):
    _read_safely(b"N\xef\x01\x00" + rest)


@FUZZ
@given(corrupted_blobs())
def test_tensorfile_fuzz_corrupted_files(blob):
    _read_safely(blob)


@FUZZ
@given(valid_blobs())
def test_tensorfile_fuzz_valid_files_read_and_rewrite_identically(blob):
    out = _read_safely(blob)
    assert out is not None
    values, header = out
    assert values.shape == header.shape
    again = tf.tensor_bytes(values, item_type=header.item_type, bits=header.bits)
    if header.item_type == tf.ItemType.BOOL or header.bits % 8:
        # padding bits (and non-0/1 bool bytes) are not preserved; the decoded values are
        back, _ = tf.read_tensor(again)
        assert np.array_equal(back, values)
    else:
        assert again == blob


@settings(max_examples=100, deadline=1000)
@given(st.integers(1, 64), st.booleans(), st.lists(st.integers(1, 6), min_size=1, max_size=3),
       st.integers(0, 2**32 - 1))
def test_tensorfile_fuzz_int_round_trip(bits, signed, shape, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    a = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64 if signed else np.uint64)
    blob = tf.tensor_bytes(a, item_type="int" if signed else "uint", bits=bits)
    assert len(blob) == 128 + (a.size * bits + 7) // 8
    back, _ = tf.read_tensor(blob)
    assert np.array_equal(back.astype(a.dtype), a)


def test_tensorfile_huge_declared_tensor_is_rejected_without_allocating():
    # extents 65535^2 * 4 bytes = 16 GiB claimed (as a data length it cannot even be stored)
    head = bytearray(b"N\xef\x01\x00") + struct.pack("<II", 0xFFFFFFFF, 2)
    head += struct.pack("<8I", 65535, 65535, 0, 0, 0, 0, 0, 0) + struct.pack("<II", 32, 0) + bytes(76)
    with pytest.raises(NNEFError) as e:
        tf.read_tensor(bytes(head) + bytes(16))
    assert e.value.offset == 4
    # consistent header (1 GiB payload claimed) but a short file: truncated, nothing allocated
    head[4:8] = struct.pack("<I", 1 << 30)
    head[12:20] = struct.pack("<II", 1 << 15, 1 << 13)
    with pytest.raises(NNEFError, match="truncated"):
        tf.read_tensor(bytes(head) + bytes(16))
