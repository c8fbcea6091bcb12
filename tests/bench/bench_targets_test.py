"""Targets that cannot run anywhere are skipped before compiling, rows keep --targets order."""
import pytest

import nnef_tvm.compiler
from nnef_tvm.bench import benchmark
from nnef_tvm.errors import NNEFError


def test_unrunnable_targets_are_notes_in_order(tiny_model, tiny_compiled, monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("a target with nowhere to run must not be compiled")
    monkeypatch.setattr(nnef_tvm.compiler, "compile_model", no_compile)
    res = benchmark(tiny_model, targets=["no-such-target", "x86", "armv7"], compare=[],
                    warmup=0, repeat=1, isolate=False, compiled=tiny_compiled)
    rows = res["rows"]
    assert [r["target"] for r in rows] == ["no-such-target", "x86", "armv7"]
    assert rows[0]["status"] == "skipped" and "unknown target" in rows[0]["note"]
    assert rows[1]["status"] == "ok"
    assert rows[2]["status"] == "skipped"
    assert "--rpc" in rows[2]["note"] or "cannot build here" in rows[2]["note"]


@pytest.mark.parametrize("keys, want", [
    (["k"], {"x86": "k", "arm64": "k"}),
    (["a", "b"], {"x86": "a", "arm64": "b"}),
    (["arm64=b"], {"arm64": "b"}),
    (["arm64=b", "a"], {"arm64": "b", "x86": "a"}),
])
def test_keys_pair_with_targets(keys, want):
    from nnef_tvm.bench.core import _split_keys
    assert _split_keys(["x86", "arm64"], keys) == want


def test_keys_count_mismatch_is_an_error():
    from nnef_tvm.bench.core import _split_keys
    with pytest.raises(NNEFError, match="one key per target"):
        _split_keys(["x86", "arm64", "rpi4"], ["a", "b"])
    with pytest.raises(NNEFError, match="not one of the --targets"):
        _split_keys(["x86"], ["cuda=a"])


@pytest.mark.parametrize("exc, text", [
    (NNEFError("operation 'foo' is not supported"), "compile: operation 'foo' is not supported"),
    (RuntimeError("TVM code generation failed\nCheck failed: x"), "compile: RuntimeError: "
                                                                    "Check failed: x"),
])
def test_compile_failure_is_a_row_error(tiny_model, monkeypatch, exc, text):
    def failing(*a, **k):
        raise exc
    monkeypatch.setattr(nnef_tvm.compiler, "compile_model", failing)
    res = benchmark(tiny_model, targets=["x86"], compare=[], warmup=0, repeat=1,
                    isolate=False)
    row = res["rows"][0]
    assert row["status"] == "error" and row["note"] == text
