"""A remote device on a loopback tracker: a TVM tracker and an RPC server in this test."""
import socket

import pytest

from nnef_tvm.bench import benchmark

pytest.importorskip("tornado")
pytest.importorskip("psutil")
pytest.importorskip("cloudpickle")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def loopback_tracker():
    from tvm import rpc
    from tvm.rpc.tracker import Tracker
    port = _free_port()
    tracker = Tracker("127.0.0.1", port=port, port_end=port + 50, silent=True)
    sport = _free_port()
    server = rpc.Server("127.0.0.1", port=sport, port_end=sport + 50, key="bench-loop",
                        tracker_addr=("127.0.0.1", tracker.port), silent=True)
    import time
    client = rpc.connect_tracker("127.0.0.1", tracker.port)
    for _ in range(100):                      # wait until the server registered its key
        if "bench-loop" in client.text_summary():
            break
        time.sleep(0.1)
    yield f"127.0.0.1:{tracker.port}"
    server.terminate()
    tracker.terminate()


def test_remote_device_through_tracker(tiny_model, tiny_compiled, loopback_tracker):
    res = benchmark(tiny_model, targets=["x86"], tracker=loopback_tracker,
                    keys=["x86=bench-loop"], compare=["onnxruntime"], warmup=1, repeat=3,
                    isolate=False, compiled=tiny_compiled, profile=True)
    rows = {r["runtime"]: r for r in res["rows"]}
    remote = rows["nnef-tvm"]
    assert remote["status"] == "ok", remote["note"]
    assert remote["host"] == f"tracker {loopback_tracker} key bench-loop"
    assert remote["device"] == "cpu (remote)"
    assert remote["samples"] == 3 and remote["median_ms"] > 0
    assert remote["peak_memory_bytes"] is None                 # not measured remotely
    assert "local runs only" in remote["note"] and remote["profile"] is None
    # outputs came back over RPC and agree with onnxruntime on the NNEF-Tools export
    assert remote["max_abs_error"] is not None and remote["max_abs_error"] < 1e-5
    # the remote device is another host: no ratio against local runtimes
    assert remote["ratio_to_best_alternative"] is None


def test_unknown_key_is_a_row_error_not_a_crash(tiny_model, tiny_compiled, loopback_tracker):
    res = benchmark(tiny_model, targets=["x86"], tracker=loopback_tracker,
                    keys=["no-such-device"], compare=[], warmup=0, repeat=1, isolate=False,
                    compiled=tiny_compiled, timeout=30)
    row = res["rows"][0]
    assert row["status"] == "error" and row["note"]
