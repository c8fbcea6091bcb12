"""nnef-bench end to end on the tiny model: JSON schema, CSV columns, PNG plot, table.

One real run (``--repeat 3``, worker processes as users get them) is shared by
the tests of this module. Agreement is checked against onnxruntime running an
NNEF-Tools ONNX export of the same model (an independent implementation).
"""
import csv
import json

import pytest

from nnef_tvm.bench import ROW_KEYS, SCHEMA
from nnef_tvm.bench.report import CSV_COLUMNS, plot_series
from nnef_tvm.cli.bench import main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory, capsys_module=None):
    out = tmp_path_factory.mktemp("bench_out")
    files = {k: str(out / f"r.{k}") for k in ("json", "csv", "png")}
    rc = main([tiny_model, "--repeat", "3", "--warmup", "1", "--threads", "1",
               "--compare", "onnxruntime,tract,no-such-runtime", "--profile", "-q",
               "--json", files["json"], "--csv", files["csv"], "--plot", files["png"]])
    assert rc == 0
    with open(files["json"]) as f:
        result = json.load(f)
    return result, files


NUM = (int, float)


def test_json_schema(run):
    result, _ = run
    assert result["schema"] == SCHEMA
    for key, typ in [("date", str), ("machine", dict), ("method", dict), ("model", dict),
                     ("compiled", dict),
                     ("rows", list), ("notes", list)]:
        assert isinstance(result[key], typ), key
    assert isinstance(result["machine"]["cpu"], str) and result["machine"]["cores"] >= 1
    meth = result["method"]
    assert meth["warmup"] == 1 and meth["repeat"] == 3 and meth["threads"] == 1
    assert "first run" in meth["timed"] and "upload" in meth["timed"]
    assert result["model"]["name"] == "tiny_cnn"
    assert isinstance(result["compiled"]["x86"]["kernels"], int)
    assert result["compiled"]["x86"]["target"]["name"] == "x86"
    assert result["model"]["inputs"][0] == {"name": "input", "shape": [1, 3, 32, 32],
                                            "dtype": "float32"}
    for row in result["rows"]:
        assert set(row) == set(ROW_KEYS)
        assert row["status"] in ("ok", "skipped", "error")
        if row["status"] == "ok":
            assert row["samples"] == 3
            for k in ("median_ms", "p90_ms", "min_ms", "mean_ms", "throughput_per_s"):
                assert isinstance(row[k], NUM) and row[k] > 0, k
            assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
            assert isinstance(row["peak_memory_bytes"], int)
        else:
            assert isinstance(row["note"], str) and row["note"]


def test_rows_and_agreement(run):
    result, _ = run
    rows = {r["runtime"]: r for r in result["rows"]}
    assert set(rows) == {"nnef-tvm", "onnxruntime", "tract", "no-such-runtime"}
    tvm_row, ort = rows["nnef-tvm"], rows["onnxruntime"]
    assert tvm_row["status"] == "ok" and tvm_row["target"] == "x86"
    assert ort["status"] == "ok"
    assert "NNEF-Tools" in ort["source"]            # says which ONNX model it ran
    assert "onnxruntime" in result["agreement_reference"]
    assert ort["max_abs_error"] == 0.0
    assert tvm_row["max_abs_error"] < 1e-5            # softmax outputs in [0, 1]
    assert rows["no-such-runtime"]["status"] == "skipped"
    # ratio: median over the fastest other runtime on the host
    others = [r for r in result["rows"] if r["status"] == "ok" and r["runtime"] != "nnef-tvm"]
    best = min(others, key=lambda r: r["median_ms"])
    assert tvm_row["best_alternative"] == best["runtime"]
    assert tvm_row["ratio_to_best_alternative"] == pytest.approx(
        tvm_row["median_ms"] / best["median_ms"])


def test_profile_rows(run):
    result, _ = run
    prof = next(r for r in result["rows"] if r["runtime"] == "nnef-tvm")["profile"]
    names = {p["kernel"] for p in prof}
    assert any("conv2d" in n for n in names) and "softmax" in names
    assert sum(p["share"] for p in prof) == pytest.approx(1.0)
    for p in prof:
        assert p["calls"] >= 1 and p["ms"] >= 0 and isinstance(p["ops"], list)
    # the fusion report maps each fused kernel back to the NNEF statements it computes
    conv = [p for p in prof if p["kernel"].startswith("fused_conv2d")]
    assert len(conv) == 2
    for p in conv:
        ops = [o["op"] for o in p["ops"]]
        assert "conv" in ops and "relu" in ops
        assert all(o["pos"] and "graph.nnef:" in o["pos"] for o in p["ops"])
    lines = {next(o["pos"] for o in p["ops"] if o["op"] == "conv").split(":")[-2]
             for p in conv}
    assert lines == {"10", "17"}                # graph.nnef lines of conv1 and conv2


def test_csv_columns(run):
    result, files = run
    with open(files["csv"], newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        lines = list(reader)
    assert [r["runtime"] for r in lines] == [r["runtime"] for r in result["rows"]]
    assert all(r["model"] == "tiny_cnn" for r in lines)
    ok = [r for r in lines if r["status"] == "ok"]
    assert all(float(r["median_ms"]) > 0 for r in ok)


def test_plot_is_png_with_the_expected_series(run):
    result, files = run
    with open(files["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    series = plot_series(result)
    assert set(series) == {"median_ms", "p90_ms"}
    assert set(series["median_ms"]) == {"nnef-tvm x86", "onnxruntime", "tract"} - (
        set() if any(r["runtime"] == "tract" and r["status"] == "ok" for r in result["rows"])
        else {"tract"})


def test_table_on_stdout(tiny_model, capsys):
    rc = main([tiny_model, "--repeat", "2", "--warmup", "0", "--compare", "none", "-q",
               "--in-process"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "first run" in out and "nnef-tvm x86" in out and "median ms" in out


@pytest.mark.parametrize("argv, msg", [
    (["--rpc", "h:1", "--tracker", "h:2"], "either --rpc or --tracker"),
    (["--keys", "a"], "--keys goes with --tracker"),
    (["--tracker", "h:2"], "--tracker needs --keys"),
    (["--repeat", "0"], "positive integer"),
])
def test_usage_errors(tiny_model, capsys, argv, msg):
    assert main([tiny_model] + argv) == 2
    assert msg in capsys.readouterr().err
