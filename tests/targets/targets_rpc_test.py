"""Run a compiled library over TVM RPC on loopback: direct server, and tracker + 2 servers.

Servers and the tracker run in children forked from the test process (TVM's
own ``rpc.Server`` starts a fresh Python per server, ~10-20 s each here); every
session is then served by a further forked child, as on a real board.
"""
import platform
import socket
import multiprocessing
import time

import numpy as np
import pytest

pytest.importorskip("tornado", reason="RPC needs the 'rpc' extra (tornado, psutil, cloudpickle)")
pytest.importorskip("psutil", reason="RPC needs the 'rpc' extra (tornado, psutil, cloudpickle)")

from nnef_tvm import runtime  # noqa: E402
from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.errors import NNEFError  # noqa: E402

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 host build")


def _listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


_FORK = multiprocessing.get_context("fork")


@pytest.fixture
def spawn():
    """Start loop functions in forked children (TVM's server chdirs per session, so it
    must not run inside the test process); all of them are stopped at teardown."""
    procs = []

    def start(target, args):
        proc = _FORK.Process(target=target, args=args)
        proc.start()
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.terminate()
        proc.join(10)


def start_server(spawn, tracker_port=None, key=""):
    from tvm.rpc import server
    sock, port = _listening_socket()
    tracker = ("127.0.0.1", tracker_port) if tracker_port else None
    spawn(server._listen_loop, (sock, port, key, tracker, None, None))
    sock.close()                                 # the child owns it now
    return port


def start_tracker(spawn):
    from tvm.rpc import base, tracker
    sock, port = _listening_socket()
    spawn(tracker._tracker_server, (sock, base.random_key("tracker")))
    sock.close()
    return port


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    from tvm import relax
    from tvm.relax import op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((3, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            o = bb.emit(op.nn.relu(op.subtract(x, relax.const(np.float32(0.5)))))
            out = bb.emit_output(o)
        bb.emit_func_output(out)
    path = tmp_path_factory.mktemp("rpc") / "relu.so"
    compile_relax(bb.get(), "x86").export(str(path))
    return str(path)


def _reference(x):
    return np.maximum(x - 0.5, 0)


def test_direct_rpc_server(library, spawn):
    port = start_server(spawn)
    sess = runtime.connect(f"127.0.0.1:{port}")
    model = runtime.load(library, session=sess)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    np.testing.assert_allclose(model.run({"x": x})["output"], _reference(x), rtol=1e-6)
    # the library describes itself through its packed function on the remote side too
    assert runtime.module_metadata(model.lib)["target"]["name"] == "x86"


def test_tracker_with_two_servers(library, spawn):
    tport = start_tracker(spawn)
    for _ in range(2):
        start_server(spawn, tport, key="board")
    from tvm import rpc
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:          # wait until both servers registered
        summary = rpc.connect_tracker("127.0.0.1", tport).summary()
        if summary.get("queue_info", {}).get("board", {}).get("free", 0) >= 2:
            break
        time.sleep(0.2)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    sessions = [runtime.connect(tracker=f"127.0.0.1:{tport}", key="board") for _ in range(2)]
    for sess in sessions:                       # two concurrent sessions: both servers serve
        out = runtime.load(library, session=sess).run({"x": x})["output"]
        np.testing.assert_allclose(out, _reference(x), rtol=1e-6)


def test_connect_errors():
    with pytest.raises(NNEFError, match="HOST:PORT"):
        runtime.connect("localhost")
    with pytest.raises(NNEFError, match="either"):
        runtime.connect()
    with pytest.raises(NNEFError, match="--key"):
        runtime.connect(tracker="127.0.0.1:1")
    sock, port = _listening_socket()
    sock.close()                                 # nothing listens there any more
    with pytest.raises(NNEFError, match="RPC connection failed"):
        runtime.connect(f"127.0.0.1:{port}")
