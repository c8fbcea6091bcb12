"""Property tests: corrupted archives of every kind only ever raise NNEFError, quickly."""
import io
import os
import tarfile
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import tensorfile as tf
from nnef_tvm.reader.container import open_container

GRAPH = b"version 1.0;\ngraph G( x ) -> ( y ) { x = external(shape = [2]); y = relu(x); }\n"
W = tf.tensor_bytes(np.arange(6, dtype=np.float32))


def _tar(mode):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for n, d in {"graph.nnef": GRAPH, "a/w.dat": W}.items():
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    return buf.getvalue()


def _zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("graph.nnef", GRAPH)
        z.writestr("a/w.dat", W)
    return buf.getvalue()


SEEDS = {"tar": _tar("w"), "tgz": _tar("w:gz"), "tbz": _tar("w:bz2"), "txz": _tar("w:xz"), "zip": _zip()}

LIMITS = dict(max_member_size=1 << 20, max_total_size=4 << 20, max_members=50, ratio_floor=1 << 16)


@st.composite
def mutated(draw):
    kind = draw(st.sampled_from(sorted(SEEDS)))
    blob = bytearray(SEEDS[kind])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "byte", "cut", "splice"]))
        if op == "flip":
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del blob[draw(st.integers(1, len(blob))):]
        else:
            i = draw(st.integers(0, len(blob)))
            blob[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(blob)


def _open_all(path):
    try:
        with open_container(path, **LIMITS) as c:
            for n in c.names():
                c.read_bytes(n)
    except NNEFError as e:
        assert e.file is not None


@settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(blob=mutated())
def test_container_fuzz_mutated_archives(blob, tmp_path):
    path = os.path.join(tmp_path, "fuzz.bin")
    with open(path, "wb") as f:
        f.write(blob)
    before = sorted(os.listdir(tmp_path))
    _open_all(path)
    assert sorted(os.listdir(tmp_path)) == before


@settings(max_examples=60, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from([b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04", b"PK\x05\x06", b""]),
       rest=st.binary(max_size=1200))
def test_container_fuzz_random_bytes_with_archive_magic(head, rest, tmp_path):
    path = os.path.join(tmp_path, "r.bin")
    with open(path, "wb") as f:
        f.write(head + rest)
    _open_all(path)
