"""scripts/ab_libs.py (paired A/B of libraries) and scripts/thread_scaling.py (per-kernel scaling)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script",
                                                  os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def two_tiny_libraries(tiny_compiled, tmp_path_factory):
    """The tiny model compiled once and exported twice, plus the same graph with other weights."""
    import nnef_tvm
    work = tmp_path_factory.mktemp("ab_libs")
    a, b = str(work / "a.so"), str(work / "b.so")
    tiny_compiled["x86"].export(a)
    tiny_compiled["x86"].export(b)
    other_dir = work / "other"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_tiny_model.py"),
                    "--seed", "7", str(other_dir)], check=True, capture_output=True)
    c = str(work / "c.so")
    nnef_tvm.compile(str(other_dir), target="x86").export(c)
    return a, b, c


def test_ab_libs_pairs_runs_and_flags_different_outputs(two_tiny_libraries, tmp_path, capsys):
    ab = _script("ab_libs")
    a, b, c = two_tiny_libraries
    out = tmp_path / "ab.json"
    assert ab.main([a, b, c, "--threads", "1", "--cycles", "6", "--kernels",
                    "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [os.path.basename(r["library"]) for r in rows] == ["a.so", "b.so", "c.so"]
    assert rows[0]["ratio_median"] == 1.0 and rows[0]["max_abs_diff_vs_first"] == 0.0
    assert rows[1]["max_abs_diff_vs_first"] == 0.0           # the same build: same outputs
    assert rows[2]["max_abs_diff_vs_first"] > 1e-3           # other weights: flagged
    assert all(r["median_ms"] > 0 for r in rows)
    assert data["kernels"], "per-kernel rows expected"
    k = data["kernels"][0]
    assert len(k["median_ms"]) == 3 and k["ratio_median"][0] == 1.0
    assert "kernel (in every library)" in capsys.readouterr().out


def test_ab_libs_needs_two_libraries(two_tiny_libraries):
    ab = _script("ab_libs")
    with pytest.raises(SystemExit):
        ab.main([two_tiny_libraries[0]])


def test_kernel_rows_are_paired_ratios():
    ab = _script("ab_libs")
    recs = [{"k1": [1.0, 2.0, 4.0], "only_a": [1.0]},
            {"k1": [0.5, 1.0, 2.0]},
            {"k1": [2.0, 2.0, 2.0]}]
    (row,) = ab.kernel_rows(recs)                    # only kernels present in every library
    assert row["kernel"] == "k1"
    assert row["ratio_median"] == [1.0, 0.5, 1.0]    # per-cycle ratios 2, 1, 0.5 -> median 1
    assert row["median_ms"] == [2.0, 1.0, 2.0]


def test_thread_scaling_rows_lost_time_and_order():
    ts = _script("thread_scaling")
    one = {"a": {"calls": 2, "ms": [1.0, 0.9]}, "b": {"calls": 1, "ms": [2.0]},
           "vm.builtin.alloc": {"calls": 5, "ms": [0.01]}}
    many = {"a": {"calls": 2, "ms": [0.9, 1.0]}, "b": {"calls": 1, "ms": [1.0]},
            "vm.builtin.alloc": {"calls": 5, "ms": [0.01]}}
    rows = ts.scaling_rows(one, many, 2)
    assert [r["kernel"] for r in rows] == ["a", "b"]          # VM builtins left out
    a, b = rows
    # a: min 0.9 on both; lost = 2 calls * (0.9 - 0.9 / 2)
    assert a["t1_ms"] == 0.9 and a["tn_ms"] == 0.9 and a["lost_ms"] == pytest.approx(0.9)
    assert b["speedup"] == 2.0 and b["lost_ms"] == pytest.approx(0.0)


def test_thread_scaling_on_a_library(two_tiny_libraries, tmp_path):
    ts = _script("thread_scaling")
    out = tmp_path / "scale.json"
    assert ts.main([two_tiny_libraries[0], "--threads", "2", "--runs", "3", "--reps", "1",
                    "--rounds", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["t1_ms"] > 0 and r["tn_ms"] > 0 for r in rows)
    assert np.all(np.diff([r["lost_ms"] for r in rows]) <= 0)     # sorted by time lost


def test_bench_tuned_pairs_tuned_with_untuned_and_tables_it(two_tiny_libraries, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    bt = _script("bench_tuned")
    a, b, _ = two_tiny_libraries
    p = bt.paired_tuned_ratio({"untuned": a, "tuned": b}, threads=1, cycles=8)
    assert p["cycles"] == 8 and 0 < p["q1"] <= p["median"] <= p["q3"]
    row = {"model": "tiny", "threads": 1, "trials": 4, "trials_measured": 3, "tuning_s": 5.0,
           "onnxruntime_ms": 1.0, "untuned_ms": 1.1, "tuned_ms": 0.9, "tuned_vs_ort": 0.9,
           "untuned_vs_ort": 1.1, "tuned_vs_untuned_paired": {"median": 0.8, "q1": 0.75,
                                                               "q3": 0.85}}
    lines = bt.table([row, dict(row, tuned_vs_untuned_paired=None)]).splitlines()
    assert lines[0].endswith("tuned/untuned paired (q1-q3) |")
    assert lines[2].endswith("| 0.800 (0.750-0.850) |") and lines[3].endswith("| - |")


def test_bench_tuned_runs_nnef_tune_with_the_package_it_imported(monkeypatch, tmp_path):
    import nnef_tvm
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    bt = _script("bench_tuned")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    kw = bt.same_package_env()
    root = os.path.dirname(os.path.dirname(os.path.abspath(nnef_tvm.__file__)))
    assert kw["cwd"] == root
    assert kw["env"]["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]
    out = subprocess.run([sys.executable, "-c", "import nnef_tvm; print(nnef_tvm.__file__)"],
                         capture_output=True, text=True, check=True, **kw).stdout.strip()
    assert os.path.abspath(out) == os.path.abspath(nnef_tvm.__file__)
