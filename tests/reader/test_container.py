"""Containers: every supported kind reads the same members; hostile archives are refused with an
NNEFError naming the archive and the member, before anything is written anywhere."""
import bz2
import io
import lzma
import os
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib

import numpy as np
import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import tensorfile as tf
from nnef_tvm.reader.container import open_container

GRAPH = b"version 1.0;\ngraph G( x ) -> ( y )\n{\n    x = external(shape = [2]);\n    y = relu(x);\n}\n"
W = tf.tensor_bytes(np.arange(6, dtype=np.float32).reshape(2, 3))
FILES = {"graph.nnef": GRAPH, "conv1/filter.dat": W, "graph.quant": b""}


# ------------------------------------------------------------- builders ----
def make_folder(root, files=FILES):
    for name, data in files.items():
        path = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


def tar_bytes(entries, mode="w"):
    """entries: list of (TarInfo fields dict, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for fields, data in entries:
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def files_tar(files=FILES, prefix="", mode="w"):
    return tar_bytes([({"name": prefix + n}, d) for n, d in files.items()], mode)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def snapshot(*roots):
    out = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                out.add(os.path.join(dirpath, n))
    return out


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Route tempfile to a private folder so that we can see anything written there."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    return tmp_path


def refused(path, *words, **limits):
    """open_container must raise an NNEFError naming the archive, write nothing, and mention words."""
    root = os.path.dirname(path)
    before = snapshot(root)
    with pytest.raises(NNEFError) as e:
        with open_container(path, **limits) as c:
            for n in c.names():
                c.read_bytes(n)
    assert snapshot(root) == before
    assert e.value.file == path
    for w in words:
        assert w in str(e.value), str(e.value)
    return e.value


# ------------------------------------------------------------ good inputs ----
def check_members(c, expect=FILES):
    assert c.names() == sorted(expect)
    for name, data in expect.items():
        assert c.has(name) and c.read_bytes(name) == data
    values, header = tf.read_tensor(c.buffer("conv1/filter.dat"), c.display_name("conv1/filter.dat"))
    assert values.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert c.read_text("graph.nnef") == GRAPH.decode()


@pytest.mark.parametrize("kind", ["folder", "tar", "tgz", "tbz", "txz", "zip", "zip-stored", "tgz-topdir",
                                  "tar-dotslash"])
def test_container_kinds_read_the_same_members(kind, private_tmp):
    t = private_tmp
    if kind == "folder":
        path = make_folder(t / "m")
    elif kind == "tar":
        path = write(t / "m.tar", files_tar())
    elif kind == "tgz":
        path = write(t / "m.tgz", files_tar(mode="w:gz"))
    elif kind == "tbz":
        path = write(t / "m.tar.bz2", files_tar(mode="w:bz2"))
    elif kind == "txz":
        path = write(t / "m.tar.xz", files_tar(mode="w:xz"))
    elif kind == "tgz-topdir":
        path = write(t / "m.tgz", files_tar(prefix="model.nnef/", mode="w:gz"))
    elif kind == "tar-dotslash":
        path = write(t / "m.tar", files_tar(prefix="./"))
    else:
        buf = io.BytesIO()
        method = zipfile.ZIP_STORED if kind == "zip-stored" else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(buf, "w", method) as z:
            z.writestr("conv1/", b"")
            for n, d in FILES.items():
                z.writestr(n, d)
        path = write(t / "m.zip", buf.getvalue())
    before = snapshot(t)
    with open_container(path) as c:
        check_members(c)
        assert c.source == path and not c.is_single_file
        assert c.display_name("conv1/filter.dat").endswith(os.path.join("conv1", "filter.dat")) or \
            c.display_name("conv1/filter.dat").endswith("conv1/filter.dat")
    assert snapshot(t) == before


def test_container_reads_nnef_tools_compressed_models(private_tmp):
    helpers = pytest.importorskip("nnef_tools.io.nnef.helpers")
    folder = make_folder(private_tmp / "src")
    helpers.tgz_compress(folder, str(private_tmp / "out" / "m.tgz"), compression_level=1)
    with open_container(private_tmp / "out" / "m.tgz") as c:
        check_members(c)


def test_container_lone_graph_file(tmp_path):
    path = write(tmp_path / "model.nnef", GRAPH)
    with open_container(path) as c:
        assert c.is_single_file and c.names() == ["graph.nnef"]
        assert c.read_text("graph.nnef") == GRAPH.decode()
        assert c.display_name("graph.nnef") == path
        assert not c.has("conv1/filter.dat")


def test_container_label_lookup_forms(tmp_path):
    with open_container(make_folder(tmp_path / "m")) as c:
        assert c.has("/conv1/filter.dat")          # Khronos strips a leading '/'
        assert c.has("conv1\\filter.dat")          # '\\' is a label separator
        assert c.has("CONV1/Filter.dat")           # labels compare case-insensitively
        assert not c.has("conv1/missing.dat")
        with pytest.raises(NNEFError, match=r"\.\."):
            c.has("../m/graph.nnef")


def test_container_folder_maps_files_read_only(tmp_path):
    with open_container(make_folder(tmp_path / "m")) as c:
        values, _ = tf.read_tensor(c.buffer("conv1/filter.dat"))
        assert not values.flags.writeable
    assert values.sum() == 15                      # still valid after the container is closed


def test_container_text_must_be_text(tmp_path):
    path = make_folder(tmp_path / "m", {"graph.nnef": b"version 1.0;\n# \xff\n"})
    with open_container(path) as c, pytest.raises(NNEFError) as e:
        c.read_text("graph.nnef")
    assert (e.value.line, e.value.column) == (2, 3)


# ------------------------------------------------------------------ folders ----
def test_container_folder_without_graph(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(NNEFError, match="no graph.nnef"):
        open_container(tmp_path / "empty")


def test_container_missing_path(tmp_path):
    with pytest.raises(NNEFError, match="no such file"):
        open_container(tmp_path / "nothing")


def test_container_folder_symlink_leaving_the_folder(tmp_path):
    secret = write(tmp_path / "secret.dat", W)
    folder = make_folder(tmp_path / "m")
    os.symlink(secret, os.path.join(folder, "leak.dat"))
    os.symlink(os.path.join(folder, "conv1", "filter.dat"), os.path.join(folder, "inside.dat"))
    with open_container(folder) as c:
        assert "leak.dat" not in c.names() and "inside.dat" in c.names()
        assert c.read_bytes("inside.dat") == W
        with pytest.raises(NNEFError, match="outside the model folder"):
            c.buffer("leak.dat")


def test_container_folder_fifo_is_not_read(tmp_path):
    folder = make_folder(tmp_path / "m")
    os.mkfifo(os.path.join(folder, "pipe.dat"))
    with open_container(folder) as c, pytest.raises(NNEFError, match="not a regular file"):
        c.buffer("pipe.dat")


# ---------------------------------------------------------- hostile tars ----
HOSTILE_TAR = [
    ("dotdot", [({"name": "../evil.dat"}, b"x")], "'..'"),
    ("nested dotdot", [({"name": "a/../../evil.dat"}, b"x")], "'..'"),
    ("absolute", [({"name": "/etc/evil"}, b"x")], "absolute"),
    ("backslash", [({"name": "..\\evil.dat"}, b"x")], "backslash"),
    ("symlink", [({"name": "link.dat", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
     "symbolic link"),
    ("hardlink", [({"name": "hard.dat", "type": tarfile.LNKTYPE, "linkname": "graph.nnef"}, None)], "hard link"),
    ("chardev", [({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
     "character device"),
    ("blockdev", [({"name": "blk", "type": tarfile.BLKTYPE}, None)], "block device"),
    ("fifo", [({"name": "fifo", "type": tarfile.FIFOTYPE}, None)], "fifo"),
    ("duplicate", [({"name": "graph.nnef"}, b"again")], "duplicate"),
    ("duplicate via ./", [({"name": "./graph.nnef"}, b"again")], "duplicate"),
]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
@pytest.mark.parametrize("label,extra,words", HOSTILE_TAR, ids=[h[0] for h in HOSTILE_TAR])
def test_container_hostile_tar_members(label, extra, words, mode, private_tmp):
    entries = [({"name": "graph.nnef"}, GRAPH)] + [(dict(f), d) for f, d in extra]
    path = write(private_tmp / ("m.tgz" if mode == "w:gz" else "m.tar"), tar_bytes(entries, mode))
    err = refused(path, words)
    raw = extra[0][0]["name"]
    assert raw in str(err) or label.startswith("duplicate")


def test_container_tar_member_over_size_limit(private_tmp):
    path = write(private_tmp / "m.tar", files_tar())
    refused(path, "conv1/filter.dat", "over the limit", max_member_size=100)


def test_container_tar_total_over_limit(private_tmp):
    path = write(private_tmp / "m.tgz", files_tar(mode="w:gz"))
    refused(path, "in total", max_total_size=150)


def test_container_tar_too_many_members(private_tmp):
    entries = [({"name": "graph.nnef"}, GRAPH)] + [({"name": f"f{i}.dat"}, b"") for i in range(50)]
    path = write(private_tmp / "m.tar", tar_bytes(entries))
    refused(path, "more than 20 members", max_members=20)


def test_container_tar_size_field_lies(private_tmp):
    blob = bytearray(files_tar(mode="w"))
    # the first member is graph.nnef (pax format may add an 'x' header first; find the ustar header)
    i = blob.index(b"graph.nnef")
    blob[i + 124:i + 136] = b"%011o\x00" % (1 << 30)           # claims 1 GiB
    chk = sum(blob[i:i + 148]) + 8 * 32 + sum(blob[i + 156:i + 512])
    blob[i + 148:i + 156] = b"%06o\x00 " % chk
    path = write(private_tmp / "m.tar", bytes(blob))
    refused(path, "truncated")
    gz = write(private_tmp / "m.tgz", _gzip(bytes(blob)))
    refused(gz, "truncated")


def test_container_tar_bad_checksum(private_tmp):
    blob = bytearray(files_tar())
    blob[0] ^= 0x20
    path = write(private_tmp / "m.tar", bytes(blob))
    err = refused(path, "checksum")
    assert err.offset == 0


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _streamed_zero_tar_gz(total: int) -> bytes:
    """A gzip'd tar whose one member is ``total`` zero bytes, built without holding it in memory."""
    info = tarfile.TarInfo("graph.nnef")
    info.size = total
    header = info.tobuf(tarfile.USTAR_FORMAT)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(header)]
    zeros = bytes(1 << 20)
    for _ in range(total >> 20):
        out.append(c.compress(zeros))
    out.append(c.flush())
    return b"".join(out)


def test_container_gzip_bomb_is_stopped_while_inflating(private_tmp, monkeypatch):
    import resource
    blob = _streamed_zero_tar_gz(64 << 20)         # 64 MiB of zeros in ~64 KiB
    assert len(blob) < 100_000
    path = write(private_tmp / "bomb.tgz", blob)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(path, "compression bomb")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 150_000   # KiB


def test_container_gzip_bomb_also_stopped_by_total_limit(private_tmp):
    path = write(private_tmp / "bomb.tgz", _streamed_zero_tar_gz(8 << 20))
    refused(path, "in total", max_total_size=1 << 20, max_ratio=1e9)


def test_container_bz2_and_xz_bombs(private_tmp):
    zeros = files_tar({"graph.nnef": GRAPH, "z.dat": bytes(8 << 20)})
    for name, data in [("b.tar.bz2", bz2.compress(zeros, 1)), ("x.tar.xz", lzma.compress(zeros, preset=0))]:
        refused(write(private_tmp / name, data), "compression bomb", ratio_floor=1 << 20)


def test_container_truncated_and_corrupt_gzip(private_tmp):
    blob = files_tar(mode="w:gz")
    refused(write(private_tmp / "cut.tgz", blob[: len(blob) // 2]), "truncated")
    bad = bytearray(blob)
    bad[20:40] = bytes(20)
    refused(write(private_tmp / "bad.tgz", bytes(bad)))


def test_container_archive_without_graph(private_tmp):
    path = write(private_tmp / "m.tar", files_tar({"a.dat": W}))
    refused(path, "no graph.nnef", "a.dat")


def test_container_pax_header_size_is_capped(private_tmp):
    entries = [({"name": "graph.nnef", "pax_headers": {"comment": "x" * 5000}}, GRAPH)]
    path = write(private_tmp / "m.tar", tar_bytes(entries))
    refused(path, "extended header", max_meta_size=1024)
    with open_container(path) as c:                  # default limit: fine
        assert c.read_bytes("graph.nnef") == GRAPH


def test_container_long_names_via_pax(private_tmp):
    long = "d" * 120 + "/w.dat"
    path = write(private_tmp / "m.tar", files_tar({"graph.nnef": GRAPH, long: W}))
    with open_container(path) as c:
        assert c.read_bytes(long) == W


def test_container_gnu_long_names(private_tmp):
    buf = io.BytesIO()
    long = "e" * 150 + "/w.dat"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for n, d in {"graph.nnef": GRAPH, long: W}.items():
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    with open_container(write(private_tmp / "m.tar", buf.getvalue())) as c:
        assert c.read_bytes(long) == W


# ----------------------------------------------------------- hostile zips ----
def zip_bytes(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for item in members:
            if isinstance(item, zipfile.ZipInfo):
                z.writestr(item, b"" if item.filename.endswith("/") else b"data")
            else:
                name, data = item
                z.writestr(name, data)
    return buf.getvalue()


def _zinfo(name, mode):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


HOSTILE_ZIP = [
    ("dotdot", [("../evil.dat", b"x")], "'..'"),
    ("absolute", [("/abs.dat", b"x")], "absolute"),
    ("drive", [("C:/win.dat", b"x")], "absolute"),
    ("backslash", [("a\\..\\..\\evil.dat", b"x")], "backslash"),
    ("symlink", [_zinfo("link.dat", stat.S_IFLNK | 0o777)], "symbolic link"),
    ("fifo", [_zinfo("pipe", stat.S_IFIFO | 0o644)], "special file"),
    ("chardev", [_zinfo("dev", stat.S_IFCHR | 0o644)], "special file"),
    ("duplicate", [("graph.nnef", b"again")], "duplicate"),
]


@pytest.mark.parametrize("label,extra,words", HOSTILE_ZIP, ids=[h[0] for h in HOSTILE_ZIP])
def test_container_hostile_zip_members(label, extra, words, private_tmp):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about the duplicate we make on purpose
        blob = zip_bytes([("graph.nnef", GRAPH)] + extra)
    refused(write(private_tmp / "m.zip", blob), words)


def test_container_zip_bomb_refused_from_declared_sizes(private_tmp):
    blob = zip_bytes([("graph.nnef", GRAPH), ("z.dat", bytes(32 << 20))])
    assert len(blob) < 200_000
    refused(write(private_tmp / "bomb.zip", blob), "z.dat", "compression bomb")


def _patch_zip_size(blob: bytes, name: bytes, new_size: int) -> bytes:
    """Rewrite the uncompressed size of ``name`` in both its local header and the central directory."""
    b = bytearray(blob)
    local = b.index(b"PK\x03\x04" + b[4:4])
    pos = 0
    while True:
        local = b.find(b"PK\x03\x04", pos)
        if local < 0:
            break
        n = struct.unpack_from("<H", b, local + 26)[0]
        if b[local + 30:local + 30 + n] == name:
            struct.pack_into("<I", b, local + 22, new_size)
        pos = local + 4
    pos = 0
    while True:
        central = b.find(b"PK\x01\x02", pos)
        if central < 0:
            break
        n = struct.unpack_from("<H", b, central + 28)[0]
        if b[central + 46:central + 46 + n] == name:
            struct.pack_into("<I", b, central + 24, new_size)
        pos = central + 4
    return bytes(b)


@pytest.mark.parametrize("declared,words", [(100, "more than its declared 100"), (5000, "declares 5000")])
def test_container_zip_declared_size_lies(declared, words, private_tmp):
    data = bytes(range(256)) * 4                   # 1024 bytes, compressible a little
    blob = _patch_zip_size(zip_bytes([("graph.nnef", GRAPH), ("w.dat", data)]), b"w.dat", declared)
    refused(write(private_tmp / "lie.zip", blob), "w.dat", words)


def test_container_zip_streaming_bomb_with_lying_sizes(private_tmp):
    """Declared small (so no declared-ratio alarm) but inflating to 32 MiB: stopped at declared + 1."""
    import resource
    blob = _patch_zip_size(zip_bytes([("graph.nnef", GRAPH), ("z.dat", bytes(32 << 20))]), b"z.dat", 1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(write(private_tmp / "bomb.zip", blob), "z.dat", "more than its declared 1000")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000


def test_container_zip_crc_mismatch(private_tmp):
    blob = bytearray(zip_bytes([("graph.nnef", GRAPH), ("w.dat", W)], method=zipfile.ZIP_STORED))
    i = blob.index(W)
    blob[i + 130] ^= 0xFF
    refused(write(private_tmp / "crc.zip", bytes(blob)), "w.dat", "CRC")


def test_container_zip_too_many_members(private_tmp):
    blob = zip_bytes([("graph.nnef", GRAPH)] + [(f"f{i}", b"") for i in range(30)])
    refused(write(private_tmp / "many.zip", blob), "more than 10", max_members=10)


def test_container_zip_encrypted_and_unsupported_method(private_tmp):
    blob = bytearray(zip_bytes([("graph.nnef", GRAPH)], method=zipfile.ZIP_STORED))
    c = blob.index(b"PK\x01\x02")
    struct.pack_into("<H", blob, c + 8, 1)                 # central dir: encrypted flag
    refused(write(private_tmp / "enc.zip", bytes(blob)), "encrypted")
    blob = bytearray(zip_bytes([("graph.nnef", GRAPH)], method=zipfile.ZIP_LZMA))
    refused(write(private_tmp / "lzma.zip", bytes(blob)), "unsupported compression")


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_container_close_releases_maps_but_keeps_arrays_valid(kind, tmp_path):
    import mmap
    path = make_folder(tmp_path / "m") if kind == "folder" else write(tmp_path / "m.tar", files_tar())
    with open_container(path) as c:
        kept, _ = tf.read_tensor(c.buffer("conv1/filter.dat"))
        c.read_bytes("graph.nnef")
        maps = [m for m in c._maps if isinstance(m, mmap.mmap)]
    assert maps and any(m.closed for m in maps) == (kind == "folder")   # unused maps are closed
    assert not all(m.closed for m in maps)                               # the one in use is not
    assert kept.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="closed"):
        c.buffer("graph.nnef")
    with open_container(path) as c:
        maps = [m for m in c._maps if isinstance(m, mmap.mmap)]
        c.read_bytes("graph.nnef")
        maps = [m for m in c._maps if isinstance(m, mmap.mmap)]
    assert maps and all(m.closed for m in maps)


def test_container_zip_overlapping_members(private_tmp):
    blob = bytearray(zip_bytes([("a.dat", bytes(range(200)) * 5), ("graph.nnef", GRAPH)]))
    central = blob.index(b"PK\x01\x02")                      # first central entry: a.dat
    size = struct.unpack_from("<I", blob, central + 20)[0]
    struct.pack_into("<I", blob, central + 20, size + 40)    # its data now runs into graph.nnef's header
    refused(write(private_tmp / "overlap.zip", bytes(blob)), "overlap", "a.dat")


def test_container_folder_symlinked_subfolder_leaving_the_folder(tmp_path):
    outside = make_folder(tmp_path / "outside", {"w.dat": W})
    folder = make_folder(tmp_path / "m")
    os.symlink(outside, os.path.join(folder, "sub"))
    with open_container(folder) as c:
        assert c.has("sub/w.dat")
        with pytest.raises(NNEFError, match="outside the model folder"):
            c.read_bytes("sub/w.dat")
