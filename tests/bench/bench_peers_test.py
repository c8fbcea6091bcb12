"""Comparison runtimes are optional: missing or failing ones become notes, never crashes."""
import pytest

from nnef_tvm.bench import benchmark
from nnef_tvm.bench import peers
from nnef_tvm.bench.peers import Peer, PeerUnavailable


class _Missing(Peer):
    name = "missing-runtime"
    modules = ("a_module_that_is_not_installed_anywhere",)
    install = "pip install nothing"


class _CannotLoad(Peer):
    name = "cannot-load"

    def load(self, job, threads):
        raise RuntimeError("this runtime does not support operation 'conv'")


class _NoModel(Peer):
    name = "no-model"

    def prepare(self, model_dir, work, *, onnx_from="auto"):
        raise PeerUnavailable("no ONNX model for this graph")


class _Echo(Peer):
    """Returns a wrong answer of the right shape: agreement must notice."""
    name = "echo"

    def load(self, job, threads):
        import numpy as np
        return lambda values: [np.full((1, 10), 0.5, dtype="float32")]


@pytest.fixture
def fake_peers(monkeypatch):
    for p in (_Missing(), _CannotLoad(), _NoModel(), _Echo()):
        monkeypatch.setitem(peers.PEERS, p.name, p)


def test_missing_and_failing_peers_are_notes(tiny_model, tiny_compiled, fake_peers):
    res = benchmark(tiny_model, compare=["missing-runtime", "cannot-load", "no-model", "echo"],
                    warmup=0, repeat=2, isolate=False, compiled=tiny_compiled)
    rows = {r["runtime"]: r for r in res["rows"]}
    assert rows["nnef-tvm"]["status"] == "ok"
    m = rows["missing-runtime"]
    assert m["status"] == "skipped" and "not installed" in m["note"]
    assert "pip install nothing" in m["note"] and m["median_ms"] is None
    c = rows["cannot-load"]
    assert c["status"] == "error" and "does not support operation 'conv'" in c["note"]
    assert rows["no-model"]["status"] == "skipped"
    assert rows["no-model"]["note"] == "no ONNX model for this graph"
    # the first peer that ran is the agreement reference; a softmax output differs from 0.5
    assert res["agreement_reference"].startswith("outputs of echo")
    assert rows["echo"]["max_abs_error"] == 0.0
    assert rows["nnef-tvm"]["max_abs_error"] > 1e-3
    # ratios only between rows that ran
    assert rows["missing-runtime"]["ratio_to_best_alternative"] is None
    assert rows["nnef-tvm"]["best_alternative"] == "echo"


def test_no_peer_at_all_gives_a_note(tiny_model, tiny_compiled):
    res = benchmark(tiny_model, compare=[], warmup=0, repeat=2, isolate=False,
                    compiled=tiny_compiled)
    assert [r["runtime"] for r in res["rows"]] == ["nnef-tvm"]
    assert res["rows"][0]["max_abs_error"] is None
    assert res["rows"][0]["ratio_to_best_alternative"] is None
    assert any("agreement not checked" in n for n in res["notes"])


def test_peer_missing_check_uses_find_spec():
    assert _Missing().missing().startswith("not installed (a_module_that_is_not_installed")
    assert peers.OnnxRuntimePeer().missing() in (None,) or "onnxruntime" in \
        peers.OnnxRuntimePeer().missing()


def test_zoo_layout_prefers_the_source_onnx(tmp_path):
    (tmp_path / "m" / "nnef").mkdir(parents=True)
    (tmp_path / "m" / "source.onnx").write_bytes(b"")
    prep = peers.OnnxRuntimePeer().prepare(str(tmp_path / "m" / "nnef"), str(tmp_path))
    assert prep["onnx"] == str(tmp_path / "m" / "source.onnx")
    assert prep["source"] == "source model m/source.onnx"
    with pytest.raises(PeerUnavailable):
        peers.OnnxRuntimePeer().prepare(str(tmp_path), str(tmp_path), onnx_from="source")


def test_reference_npz_supplies_inputs_and_outputs(tiny_model, tiny_compiled, tmp_path):
    import numpy as np
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype("float32")
    want = tiny_compiled["x86"].run({"input": x})["output"]
    ref = tmp_path / "ref.npz"
    np.savez(ref, input=x, output=want + 0.25)        # a known offset
    res = benchmark(tiny_model, compare=[], warmup=0, repeat=2, isolate=False,
                    compiled=tiny_compiled, reference=str(ref))
    assert res["agreement_reference"] == str(ref)
    assert res["inputs_source"] == str(ref)
    assert res["rows"][0]["max_abs_error"] == pytest.approx(0.25, abs=1e-6)
