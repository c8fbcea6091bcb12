"""The tuning store: file format, concurrent appends, bad lines, export/import, keys.

These tests use synthetic MetaSchedule-shaped lines (no TVM): the store only
relies on the line layout ``[hash, module]`` / ``[workload index, record]``
with ``record[1]`` the measured seconds.
"""
import json
import multiprocessing
import os
import tarfile
import warnings

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.schedules import store as st
from nnef_tvm.schedules.store import (RECORD_FILE, WORKLOAD_FILE, StoreWarning, TuningStore,
                                      read_log, sanitize_key)


def wl(h):
    return [str(h), f"bW9kdWxl{h}"]


def rec(secs, tag="t"):
    return [[tag], [secs], {"kind": "llvm"}, []]


def test_append_then_read_round_trip(tmp_path):
    store = TuningStore(tmp_path)
    w = store.writer("dev")
    w.append(wl(1), rec(2e-6))
    w.append(wl(2), rec(5e-6))
    w.append(wl(1), rec(1e-6, "b"))
    w.append(wl(1), rec(1e10, "failed"))
    folder = tmp_path / "dev"
    # MetaSchedule's JSONDatabase layout: one workload per line, records by line index
    wls = [json.loads(x) for x in (folder / WORKLOAD_FILE).read_text().splitlines()]
    recs = [json.loads(x) for x in (folder / RECORD_FILE).read_text().splitlines()]
    assert [x[0] for x in wls] == ["1", "2"]
    assert [r[0] for r in recs] == [0, 1, 0, 0]
    log = store.read("dev")
    assert log.trial_counts() == {"1": 3, "2": 1}
    best = log.best()
    assert best["1"][0] == pytest.approx(1e-6) and best["1"][1][0] == ["b"]
    assert best["2"][0] == pytest.approx(5e-6)
    assert store.devices() == ["dev"]
    assert store.has_records("dev") and not store.has_records("other")


def test_failed_trials_count_but_are_never_best(tmp_path):
    store = TuningStore(tmp_path)
    store.writer("d").append(wl(7), rec(1e10))
    log = store.read("d")
    assert log.trial_counts() == {"7": 1}
    assert log.best() == {}


def test_second_writer_sees_first_writers_workloads(tmp_path):
    a, b = TuningStore(tmp_path).writer("d"), TuningStore(tmp_path).writer("d")
    a.append(wl(1), rec(1.0))
    b.append(wl(2), rec(2.0))
    a.append(wl(2), rec(3.0))        # must reuse line 1, written by b
    b.append(wl(1), rec(4.0))
    log = read_log(tmp_path / "d")
    assert [w.shash for w in log.workloads] == ["1", "2"]
    assert sorted((log.workloads[i].shash, r[1][0]) for i, r in log.records) == \
        [("1", 1.0), ("1", 4.0), ("2", 2.0), ("2", 3.0)]


def _writer_proc(root, proc_id, n):
    w = TuningStore(root).writer("shared")
    for i in range(n):
        w.append(wl(i % 5), rec(float(proc_id * 1000 + i), f"p{proc_id}"))


def test_concurrent_writers_lose_nothing(tmp_path):
    n_procs, n = 4, 40
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer_proc, args=(str(tmp_path), p, n)) for p in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # no corrupt line at all
        log = read_log(tmp_path / "shared")
    assert sorted(w.shash for w in log.workloads) == ["0", "1", "2", "3", "4"]   # no duplicate
    assert len(log.records) == n_procs * n
    # every record still points at its own workload
    for idx, r in log.records:
        value = int(r[1][0])
        assert log.workloads[idx].shash == str((value % 1000) % 5)
    assert sorted(int(r[1][0]) for _, r in log.records) == \
        sorted(p * 1000 + i for p in range(n_procs) for i in range(n))


def test_corrupt_lines_are_skipped_with_a_warning(tmp_path):
    store = TuningStore(tmp_path)
    w = store.writer("d")
    w.append(wl(1), rec(1.0))
    w.append(wl(2), rec(2.0))
    folder = tmp_path / "d"
    with open(folder / RECORD_FILE, "a") as f:
        f.write('[0, [["x"], [0.5], {}, []]]\n')    # good
        f.write("{not json\n")                        # garbage
        f.write('[9, [["x"], [0.1], {}, []]]\n')     # index out of range
        f.write('[1, [["torn"], [0.')                  # torn by a crash (no newline)
    with pytest.warns(StoreWarning, match=r"skipped 3 unreadable line\(s\) \(line 4, 5, 6\)"):
        log = store.read("d")
    assert log.trial_counts() == {"1": 2, "2": 1}
    assert log.skipped == 3
    # appending after a torn line starts a fresh line: the new record is readable
    w2 = store.writer("d")
    w2.append(wl(2), rec(0.25))
    with pytest.warns(StoreWarning):
        log = store.read("d")
    assert log.trial_counts() == {"1": 2, "2": 2}
    assert log.best()["2"][0] == 0.25


def test_corrupt_workload_line_drops_only_its_records(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / WORKLOAD_FILE).write_text('["1", "AAA"]\nnot a workload\n["3", "CCC"]\n')
    (folder / RECORD_FILE).write_text('[0, [[], [1.0], {}, []]]\n[1, [[], [2.0], {}, []]]\n'
                                      '[2, [[], [3.0], {}, []]]\n')
    with pytest.warns(StoreWarning):
        log = read_log(folder)
    assert log.trial_counts() == {"1": 1, "3": 1}
    # a writer counts the bad line too, so new records still index correctly
    TuningStore(tmp_path).writer("d").append(wl(4), rec(4.0))
    with pytest.warns(StoreWarning):
        log = read_log(folder)
    assert log.trial_counts() == {"1": 1, "3": 1, "4": 1}


@pytest.mark.parametrize("name", ["log.json", "log.tar.gz", "log.tgz"])
def test_export_import_round_trip(tmp_path, name):
    src = TuningStore(tmp_path / "a")
    w = src.writer("xeon")
    for i in range(6):
        w.append(wl(i % 3), rec(0.5 + i))
    f = tmp_path / name
    assert src.export("xeon", f) == 6
    if name.endswith("gz"):
        with tarfile.open(f) as tar:
            assert sorted(tar.getnames()) == [f"xeon/{RECORD_FILE}", f"xeon/{WORKLOAD_FILE}"]
    dst = TuningStore(tmp_path / "b")
    assert dst.import_(f) == {"xeon": 6}
    assert dst.read("xeon").trial_counts() == src.read("xeon").trial_counts()
    assert dst.read("xeon").best() == src.read("xeon").best()
    assert dst.import_(f) == {"xeon": 0}                    # no duplicates on re-import
    assert dst.import_(f, device_key="Other Box") == {"other-box": 6}


def test_export_skips_bad_lines_and_unused_workloads(tmp_path):
    store = TuningStore(tmp_path)
    store.writer("d").append(wl(1), rec(1.0))
    (tmp_path / "d" / WORKLOAD_FILE).open("a").write('["2", "unused"]\n')
    (tmp_path / "d" / RECORD_FILE).open("a").write("garbage\n")
    with pytest.warns(StoreWarning):
        store.export("d", tmp_path / "out.json")
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["format"] == st.EXPORT_FORMAT and doc["device_key"] == "d"
    assert doc["workloads"] == [wl(1)] and len(doc["records"]) == 1


def test_export_and_import_errors(tmp_path):
    store = TuningStore(tmp_path)
    with pytest.raises(NNEFError, match="no tuning records for device 'nope'"):
        store.export("nope", tmp_path / "x.json")
    with pytest.raises(NNEFError, match="not found"):
        store.import_(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(NNEFError, match="not a tuning log export"):
        store.import_(bad)
    bad.write_text("\x00\x01 not json")
    with pytest.raises(NNEFError, match="not a tuning log export"):
        store.import_(bad)


def test_sanitize_key():
    assert sanitize_key("Intel(R) Xeon(R) Processor") == "intel-r-xeon-r-processor"
    assert sanitize_key("  ../../etc ") == "etc"
    assert sanitize_key("NVIDIA H100 80GB HBM3/sm_90") == "nvidia-h100-80gb-hbm3-sm_90"
    assert len(sanitize_key("x" * 500)) <= 96
    with pytest.raises(NNEFError, match="no usable characters"):
        sanitize_key("///")


def test_default_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv(st.ENV_DIR, str(tmp_path / "mine"))
    assert TuningStore().root == tmp_path / "mine"
    monkeypatch.delenv(st.ENV_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert st.default_root() == tmp_path / "cache" / "nnef-tvm" / "tuning"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert st.default_root() == \
        type(tmp_path)(os.path.expanduser("~")) / ".cache" / "nnef-tvm" / "tuning"


@pytest.mark.parametrize("name", ["log.json", "log.tar.gz"])
def test_in_model_decisions_travel_with_an_export(tmp_path, name):
    from nnef_tvm.schedules import in_model_check as imc
    src = TuningStore(tmp_path / "a")
    w = src.writer("xeon")
    for i in range(3):
        w.append(wl(i), rec(0.5 + i))
    imc.record_decisions(tmp_path / "a" / "xeon", {"1": {"rules": "v", "ratio": 1.2}},
                         {"0": {"rules": "v", "record": "d0", "ratio": 0.8},
                          "2": {"rules": "v", "record": "d2", "ratio": 0.9}})
    f = tmp_path / name
    src.export("xeon", f)
    dst = TuningStore(tmp_path / "b")
    # a decision made on the importing machine stays
    dst.writer("xeon").append(wl(2), rec(9.0))
    imc.record_decisions(tmp_path / "b" / "xeon", {"2": {"rules": "v", "ratio": 1.1}})
    dst.import_(f)
    folder = tmp_path / "b" / "xeon"
    assert imc.vetoed_workloads(folder, "v") == {"1", "2"}
    assert imc.chosen_records(folder, "v") == {"0": "d0"}


def test_imported_decisions_of_the_wrong_shape_are_dropped(tmp_path):
    from nnef_tvm.schedules import in_model_check as imc
    n = imc.merge_imported_decisions(tmp_path, {
        "vetoes": {"a": {"rules": "v"}, "b": "not a dict", "c": {"rules": 3}},
        "choices": {"d": {"rules": "v"}, "e": {"rules": "v", "record": "x"}}})
    assert n == 2
    assert imc.vetoed_workloads(tmp_path, "v") == {"a"}
    assert imc.chosen_records(tmp_path, "v") == {"e": "x"}
    assert imc.merge_imported_decisions(tmp_path, {"vetoes": [], "choices": None}) == 0
