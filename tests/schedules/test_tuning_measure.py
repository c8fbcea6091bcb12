"""Real MetaSchedule tuning, measured locally and through a loopback RPC tracker.

Slow: every run starts a runner process (and MetaSchedule's search a
builder process) that imports TVM before the first trial (10-30 s on a
loaded 2-core machine). The records must resume (a second run measures
nothing), be applied by the compiler, and the tuned build must still match
numpy. The local run uses MetaSchedule's evolutionary search only; the RPC
run uses the default strategy (template search first), so both kinds of
candidate are measured through a runner.
"""
import socket
import time

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.schedules.store import TuningStore  # noqa: E402
from nnef_tvm.schedules.tuning import tune_model  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402

pytestmark = pytest.mark.slow


def matmul_relu_module():
    from tvm import relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((8, 32), "float32"))
    w = relax.Var("w", relax.TensorType((32, 16), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    return bb.get()


def check_numbers(compiled):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 32)).astype("float32")
    w = rng.standard_normal((32, 16)).astype("float32")
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, np.maximum(x.astype(np.float64) @ w, 0), rtol=1e-5,
                               atol=1e-5)


def test_local_tuning_resumes_and_is_applied(tmp_path):
    store = TuningStore(tmp_path)
    lines = []
    s = tune_model(None, "x86", trials=2, store=store, mod=matmul_relu_module(),
                   progress=lines.append, seed=1, strategy="evolutionary")
    assert s.template_trials == 0 and set(s.phases) == {"evolutionary"}
    assert s.trials == 2 and s.skipped == 0
    log = store.read(s.device_key)
    assert sum(log.trial_counts().values()) == 2 and log.best()
    assert any("trials 2/2" in ln and "left ~" in ln for ln in lines), lines
    again = tune_model(None, "x86", trials=2, store=store, mod=matmul_relu_module(),
                       strategy="evolutionary")
    assert again.trials == 0 and again.skipped == 1
    compiled = compile_relax(matmul_relu_module(), get_target("x86"), tuning_dir=tmp_path)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    check_numbers(compiled)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracker():
    pytest.importorskip("tornado")
    pytest.importorskip("psutil")
    pytest.importorskip("cloudpickle")
    from tvm import rpc
    from tvm.rpc.tracker import Tracker
    port = _free_port()
    trk = Tracker("127.0.0.1", port=port, port_end=port + 50, silent=True)
    sport = _free_port()
    server = rpc.Server("127.0.0.1", port=sport, port_end=sport + 50, key="tune-loop",
                        tracker_addr=("127.0.0.1", trk.port), silent=True)
    client = rpc.connect_tracker("127.0.0.1", trk.port)
    for _ in range(300):
        if "tune-loop" in client.text_summary():
            break
        time.sleep(0.1)
    yield f"127.0.0.1:{trk.port}"
    server.terminate()
    trk.terminate()


def test_tuning_through_rpc_tracker(tmp_path, tracker):
    store = TuningStore(tmp_path)
    s = tune_model(None, "x86", trials=2, store=store, mod=matmul_relu_module(),
                   tracker=tracker, rpc_key="tune-loop", device_key_override="loopback-board")
    assert s.device_key == "loopback-board" and s.trials == 2 and s.template_trials == 2
    log = store.read("loopback-board")
    assert sum(log.trial_counts().values()) == 2
    assert log.best(), "no successful remote measurement"
    # the whole-model check ran both builds on the board
    assert s.in_model_ratio is not None and 0.1 < s.in_model_ratio < 10
    assert "in-model check" in s.phases
