"""nnef-run: --info without TVM, local runs vs numpy, input errors, --rpc, flag errors."""
import json
import platform
import socket
import subprocess
import sys
import multiprocessing

import numpy as np
import pytest

from nnef_tvm.cli.run import main

X86 = platform.machine() == "x86_64"
pytestmark = pytest.mark.skipif(not X86, reason="runs x86 builds")


@pytest.fixture(scope="module")
def tiny_so(tmp_path_factory, tiny):
    """The conftest model compiled for x86 (reader stood in by the Khronos adapter)."""
    from support.khronos import khronos_graph
    from nnef_tvm.compiler import compile_model
    from nnef_tvm.reader.graph import Model
    g = khronos_graph(tiny.text)
    g.tensors["w"].data = tiny.weights.copy()
    path = tmp_path_factory.mktemp("run") / "tiny.so"
    compile_model(Model(g), "x86").export(str(path))
    return str(path)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_info_needs_no_tvm(tiny_so):
    script = ("import sys; from nnef_tvm.cli.run import main; rc = main([%r, '--info']); "
              "print('TVM-IMPORTED' if 'tvm' in sys.modules else 'NO-TVM'); sys.exit(rc)" % tiny_so)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TVM" in proc.stdout
    assert "input: float32[1, 2, 4, 4]" in proc.stdout
    assert "output: float32[1, 3, 4, 4]" in proc.stdout and "target: x86" in proc.stdout


def test_info_json(tiny_so, capsys):
    code, out, err = _run([tiny_so, "--info", "--json"], capsys)
    assert code == 0
    meta = json.loads(out)
    assert [o["name"] for o in meta["outputs"]] == ["output", "pooled"]


def test_run_local_to_npz(tmp_path, tiny_so, tiny, capsys):
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4)).astype("float32")
    np.savez(tmp_path / "in.npz", input=x)
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "in.npz"), "--output",
                           str(tmp_path / "out.npz"), "--threads", "1"], capsys)
    assert code == 0, err
    got = np.load(tmp_path / "out.npz")
    want = tiny.reference(x)
    assert sorted(got.files) == ["output", "pooled"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_run_prints_summary_without_output(tmp_path, tiny_so, capsys):
    np.savez(tmp_path / "in.npz", input=np.ones((1, 2, 4, 4), "float32"))
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "in.npz")], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith("output: float32[1, 3, 4, 4] min")


@pytest.mark.parametrize("arrays,fragment", [
    ({}, "missing input 'input'"),
    ({"input": np.ones((1, 2, 4, 5), "float32")}, "expected shape (1, 2, 4, 4)"),
    ({"input": np.ones((1, 2, 4, 4), "float32"), "extra": np.ones(1)}, "unknown input(s) extra"),
])
def test_input_errors_are_located_in_the_npz(tmp_path, tiny_so, capsys, arrays, fragment):
    npz = tmp_path / "in.npz"
    np.savez(npz, **arrays)
    code, out, err = _run([tiny_so, "--inputs", str(npz)], capsys)
    assert code == 1
    assert err.startswith(f"{npz}: error: ") and fragment in err
    assert err.count("\n") == 1


def test_bad_files(tmp_path, tiny_so, capsys):
    code, out, err = _run([str(tmp_path / "nope.so"), "--info"], capsys)
    assert code == 1 and "cannot read library" in err
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "bad.npz")], capsys)
    assert code == 1 and err.startswith(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("argv,fragment", [
    (["--tracker", "h:1"], "--tracker needs --key"),
    (["--rpc", "h:1", "--tracker", "h:2", "--key", "k"], "either --rpc or --tracker"),
    (["--key", "k"], "--key goes with --tracker"),
    ([], "--inputs"),
    (["--device", "tpu"], "invalid choice"),
])
def test_flag_errors_exit_2(tiny_so, capsys, argv, fragment):
    code, out, err = _run([tiny_so] + argv, capsys)
    assert code == 2
    assert err.startswith("nnef-run: error:") and fragment in err and err.count("\n") == 1


def test_wrong_device(tmp_path, tiny_so, capsys):
    np.savez(tmp_path / "in.npz", input=np.ones((1, 2, 4, 4), "float32"))
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "in.npz"), "--device", "cuda"],
                          capsys)
    assert code == 1 and "compiled for device 'cpu'" in err


def test_run_over_rpc(tmp_path, tiny_so, tiny, capsys, request):
    pytest.importorskip("tornado", reason="RPC needs the 'rpc' extra")
    from tvm.rpc import server
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    # a forked child: TVM's server chdirs per session, keep that out of this process
    proc = multiprocessing.get_context("fork").Process(
        target=server._listen_loop, args=(sock, port, "", None, None, None))
    proc.start()
    sock.close()
    request.addfinalizer(lambda: (proc.terminate(), proc.join(10)))
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 4)).astype("float32")
    np.savez(tmp_path / "in.npz", input=x)
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "in.npz"), "--output",
                           str(tmp_path / "out.npz"), "--rpc", f"127.0.0.1:{port}"], capsys)
    assert code == 0, err
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(got["pooled"], tiny.reference(x)["pooled"], rtol=1e-5, atol=1e-6)


def test_run_through_tracker(tmp_path, tiny_so, tiny, capsys, request):
    pytest.importorskip("tornado", reason="RPC needs the 'rpc' extra")
    from tvm import rpc
    from tvm.rpc import base, server, tracker
    fork = multiprocessing.get_context("fork")

    def listening():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        return s, s.getsockname()[1]
    tsock, tport = listening()
    procs = [fork.Process(target=tracker._tracker_server,
                          args=(tsock, base.random_key("tracker")))]
    ssock, sport = listening()
    procs.append(fork.Process(target=server._listen_loop,
                              args=(ssock, sport, "pi", ("127.0.0.1", tport), None, None)))
    for p in procs:
        p.start()
    tsock.close()
    ssock.close()
    request.addfinalizer(lambda: [(p.terminate(), p.join(10)) for p in procs])
    import time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = rpc.connect_tracker("127.0.0.1", tport).summary().get("queue_info", {})
        if info.get("pi", {}).get("free", 0) >= 1:
            break
        time.sleep(0.2)
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 4)).astype("float32")
    np.savez(tmp_path / "in.npz", input=x)
    code, out, err = _run([tiny_so, "--inputs", str(tmp_path / "in.npz"), "--output",
                           str(tmp_path / "out.npz"), "--tracker", f"127.0.0.1:{tport}",
                           "--key", "pi"], capsys)
    assert code == 0, err
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(got["output"], tiny.reference(x)["output"], rtol=1e-5, atol=1e-6)
