"""Deployment to an emulated AArch64 board: compile for arm64, run over TVM RPC under QEMU.

The board is ``scripts/emulated_board.py``: an aarch64 Python with the aarch64
apache-tvm wheel, run by qemu-user on this x86_64 machine, serving TVM RPC on
127.0.0.1. Its setup (Debian arm64 packages + aarch64 wheels, ~0.5 GB) is cached
under ``$NNEF_TVM_BOARD_ROOT`` or ``~/.cache/nnef-tvm/arm64-board``; CI can run
``python3 scripts/emulated_board.py setup`` beforehand (or restore that folder).
The test skips only when the script says the machine cannot host the board
(exit code 3: no apt/dpkg-deb, no network, not x86_64 Linux). Without a host
aarch64-linux-gnu-gcc, setup unpacks Debian's cross gcc under the root too.

The arm64 outputs are compared with the x86 build of the same model and with a
numpy implementation of the tiny model written from the NNEF definitions.
"""
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "emulated_board.py"
TINY = REPO / "scripts" / "make_tiny_model.py"
AARCH64 = 183                     # ELF e_machine of AArch64

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the emulated board runs on x86_64 Linux hosts")


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _board(*args, timeout=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ reference
def _conv_same3x3(x, w, b):
    """NNEF conv, stride 1, padding (1,1),(1,1): cross-correlation plus bias [1, C]."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def _max_pool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def tiny_reference(weights, x):
    """The tiny model (scripts/make_tiny_model.py GRAPH) in float64 numpy."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    y = _max_pool2(np.maximum(_conv_same3x3(x.astype(np.float64), w["conv1/filter"],
                                            w["conv1/bias"]), 0))
    y = _max_pool2(np.maximum(_conv_same3x3(y, w["conv2/filter"], w["conv2/bias"]), 0))
    logits = y.reshape(1, -1) @ w["fc/weights"].T + w["fc/bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ fast unit tests
def test_depends_parser_takes_first_alternative_and_providers():
    board = _load_script(SCRIPT, "emulated_board_under_test")
    text = ("python3.11-minimal\n"
            "  PreDepends: libc6\n"
            "  Depends: libpython3.11-minimal\n"
            "libpython3.11-stdlib\n"
            " |Depends: media-types\n"
            "  Depends: mime-support\n"
            "  Depends: <libdb-virtual>\n"
            "    libdb5.3\n"
            "  Depends: libreadline8\n"
            "  Recommends: ca-certificates\n"
            "libreadline8\n"
            "  Depends: readline-common\n"
            "  Depends: libtinfo6\n"
            "libc6\n"
            "  Depends: libgcc-s1\n"
            "mime-support\n"
            "  Depends: mailcap\n"
            "mailcap\n"
            "  Depends: perl\n")
    graph = board.parse_depends(text)
    assert graph["libpython3.11-stdlib"][0] == ["media-types", "mime-support"]
    assert graph["libpython3.11-stdlib"][1] == ["<libdb-virtual>", "libdb5.3"]
    closure = board.resolve_closure(graph, ["python3.11-minimal", "libpython3.11-stdlib"])
    assert closure == sorted(["python3.11-minimal", "libpython3.11-stdlib", "libc6",
                              "libgcc-s1", "libpython3.11-minimal", "media-types",
                              "libdb5.3", "libreadline8", "libtinfo6"])
    # readline-common, mime-support, mailcap and perl are packaging data/tools: pruned
    assert "perl" not in closure and "readline-common" not in closure


def test_stop_without_a_board_is_harmless(tmp_path):
    res = _board("stop", "--root", str(tmp_path / "none"), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "not running" in res.stderr


def test_setup_without_apt_is_unavailable_not_a_failure(tmp_path):
    """No apt-get/dpkg-deb on PATH: exit code 3 (tests skip on it) and a reason."""
    empty = tmp_path / "bin"
    empty.mkdir()
    res = subprocess.run([sys.executable, str(SCRIPT), "setup", "--root", str(tmp_path / "r")],
                         text=True, capture_output=True, timeout=60, env={"PATH": str(empty)})
    assert res.returncode == 3, res.stderr
    assert "apt-get" in res.stderr and "not found" in res.stderr
    assert not (tmp_path / "r").exists()


def test_start_needs_setup(tmp_path):
    res = _board("start", "--root", str(tmp_path / "none"), timeout=60)
    assert res.returncode == 1
    assert "not set up" in res.stderr and "setup --root" in res.stderr


# ------------------------------------------------------------------ the board
@pytest.fixture(scope="module")
def board_root():
    board = _load_script(SCRIPT, "emulated_board_for_root")
    root = board.default_root()
    res = _board("setup", "--root", str(root), timeout=3600)
    if res.returncode == board.EXIT_UNAVAILABLE:
        pytest.skip(res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, f"board setup failed:\n{res.stderr[-4000:]}"
    return root


class _StartingBoard:
    """``emulated_board.py start`` running in the background.

    The board spends most of its start-up importing TVM under emulation; the
    tests compile their libraries meanwhile and ask for :attr:`port` when they
    need the server (which waits for ``start`` to report it).
    """

    def __init__(self, root):
        self.root = root
        self.first_port = _free_port()        # also names this run's instance
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "start", "--root", str(root), "--port",
             str(self.first_port), "--owner-pid", str(os.getpid())],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._port = None

    @property
    def port(self) -> int:
        if self._port is None:
            out, err = self.proc.communicate(timeout=900)
            assert self.proc.returncode == 0, f"board did not start:\n{err[-4000:]}"
            self._port = int(out.strip().splitlines()[-1])
        return self._port

    def stop(self):
        if self.proc.poll() is None:          # still starting: let start finish or fail
            try:
                self.proc.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        res = _board("stop", "--root", str(self.root), "--port", str(self.first_port),
                     timeout=120)
        assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def board(board_root):
    started = _StartingBoard(board_root)
    try:
        yield started
    finally:
        started.stop()


def test_board_exits_when_its_owner_is_gone(board_root):
    """--owner-pid: a board whose owner died ends itself (no orphan after a killed run)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    port = _free_port()
    res = _board("start", "--root", str(board_root), "--port", str(port), "--owner-pid",
                 str(gone.pid), "--timeout", "300", timeout=400)
    try:
        assert res.returncode == 1, res.stderr
        assert f"owner {gone.pid} is gone" in res.stderr
    finally:
        _board("stop", "--root", str(board_root), "--port", str(port), timeout=120)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    tiny = _load_script(TINY, "make_tiny_model_for_board")
    folder = tmp_path_factory.mktemp("board") / "tiny"
    weights = tiny.write_model(str(folder))
    return folder, weights


@pytest.fixture(scope="module")
def arm_library(tiny_model, board_root):
    """The tiny model cross-compiled for arm64 (once per module).

    Without a host aarch64-linux-gnu-gcc, setup unpacked Debian's cross gcc
    under the board root: ``toolchain`` names its folder, put first on PATH.
    """
    folder, _ = tiny_model
    with pytest.MonkeyPatch.context() as mp:
        if shutil.which("aarch64-linux-gnu-gcc") is None:
            res = _board("toolchain", "--root", str(board_root), timeout=60)
            assert res.returncode == 0, res.stderr
            mp.setenv("PATH", res.stdout.strip() + os.pathsep + os.environ.get("PATH", ""))
        return _compile(folder, "arm64", folder.parent / "tiny-arm64.so")


def _compile(model: Path, target: str, out: Path):
    from nnef_tvm.cli.compile import main as compile_main
    assert compile_main([str(model), "--target", target, "-o", str(out), "-q"]) == 0
    return out


def _elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", "not an ELF file"
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _nnef_run(*args):
    """The nnef-run command, as a user runs it (a separate process)."""
    exe = shutil.which("nnef-run")
    cmd = [exe] if exe else [sys.executable, "-m", "nnef_tvm.cli.run"]
    return subprocess.run(cmd + [str(a) for a in args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=900)


def test_arm64_library_on_emulated_board_matches_x86(tiny_model, board, arm_library, tmp_path):
    from nnef_tvm import runtime
    folder, weights = tiny_model
    x86 = _compile(folder, "x86", tmp_path / "tiny-x86.so")
    assert _elf_machine(arm_library) == AARCH64
    assert _elf_machine(x86) == 62

    rng = np.random.default_rng(2026)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)

    out_x86 = runtime.load(str(x86)).run({"input": x})["output"]
    remote = _nnef_run(arm_library, "--rpc", f"127.0.0.1:{board.port}", "--inputs",
                       tmp_path / "in.npz", "--output", tmp_path / "arm.npz")
    assert remote.returncode == 0, remote.stderr
    with np.load(tmp_path / "arm.npz") as b:
        assert b.files == ["output"]
        out_arm = b["output"]
    assert out_arm.shape == (1, 10) and out_arm.dtype == np.float32
    np.testing.assert_allclose(out_arm, out_x86, rtol=1e-5, atol=1e-5)
    ref = tiny_reference(weights, x)
    np.testing.assert_allclose(out_arm, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out_x86, ref, rtol=1e-4, atol=1e-5)
    # not a constant/degenerate output: the comparison can fail
    assert out_arm.max() - out_arm.min() > 1e-3


def test_board_serves_a_second_session(tiny_model, board, arm_library, tmp_path, capsys):
    """Each RPC session is a forked child on the board: a second client works too.

    This one goes through nnef-run's ``main`` in this process (same code path,
    no second host-side TVM import).
    """
    from nnef_tvm.cli.run import main as run_main
    _, weights = tiny_model
    x = np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(1, 3, 32, 32)
    np.savez(tmp_path / "in.npz", input=x)
    assert run_main([str(arm_library), "--rpc", f"127.0.0.1:{board.port}", "--inputs",
                     str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["output"], tiny_reference(weights, x),
                                   rtol=1e-4, atol=1e-5)


def test_arm64_library_refuses_to_load_here(arm_library):
    """Without --rpc, the x86 host says where to run the arm64 library."""
    from nnef_tvm import runtime
    from nnef_tvm.errors import NNEFError
    with pytest.raises(NNEFError, match="AArch64.*--rpc"):
        runtime.load(str(arm_library))
