"""``nnef-tune``: flags, exit codes, one-line errors, store export/import/list."""
import json

import pytest

from nnef_tvm.cli import tune as cli
from nnef_tvm.schedules.store import RECORD_FILE, TuningStore


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _fill(root, key="box", n=3):
    w = TuningStore(root).writer(key)
    for i in range(n):
        w.append([str(i % 2), "AAAA"], [[], [1e-6 * (i + 1)], {"kind": "llvm"}, []])


def test_help_documents_store_flags(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--trials", "--time-budget", "--device-key", "--tuning-dir", "--tracker",
                 "--key", "--export", "--import", "--list"):
        assert flag in out
    assert "NNEF_TVM_TUNING_DIR" in out


@pytest.mark.parametrize("argv, message", [
    ([], "required: MODEL"),
    (["m", "--trials", "0"], "expected a positive integer"),
    (["m", "--time-budget", "-5"], "expected a positive number of seconds"),
    (["m", "--time-budget", "soon"], "expected seconds"),
    (["m", "--tracker", "h:1"], "--tracker and --key go together"),
    (["m", "--key", "k"], "--tracker and --key go together"),
    (["--export", "a.json", "--import", "b.json"], "exclusive"),
    (["m", "--list"], "--list takes no MODEL"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_tracker_address_is_a_usage_error(tmp_path, capsys):
    code, _, err = _run(["m", "--tracker", "nohost", "--key", "k", "--tuning-dir", tmp_path],
                        capsys)
    assert code == 2 and "HOST:PORT" in err and err.count("\n") == 1


def test_remote_target_needs_a_tracker(tmp_path, capsys):
    from nnef_tvm.targets import get_target
    if get_target("armv7").runs_locally:
        pytest.skip("armv7 runs on this machine")
    code, _, err = _run(["m", "--target", "armv7", "--tuning-dir", tmp_path], capsys)
    assert code == 1 and "does not run on this machine" in err and "--tracker" in err


def test_list_export_import(tmp_path, capsys):
    code, out, _ = _run(["--list", "--tuning-dir", tmp_path / "a"], capsys)
    assert code == 0 and "no tuning records" in out
    _fill(tmp_path / "a")
    code, out, _ = _run(["--list", "--tuning-dir", tmp_path / "a"], capsys)
    assert code == 0 and "box: 2 workloads, 3 trials" in out
    f = tmp_path / "box.tgz"
    code, out, err = _run(["--export", f, "--device-key", "box", "--tuning-dir", tmp_path / "a"],
                          capsys)
    assert code == 0, err
    assert "3 trials of device box" in out and f.is_file()
    code, out, err = _run(["--import", f, "--tuning-dir", tmp_path / "b"], capsys)
    assert code == 0, err
    assert "imported 3 new trials for device box" in out
    assert (tmp_path / "b" / "box" / RECORD_FILE).read_text() == \
        (tmp_path / "a" / "box" / RECORD_FILE).read_text()
    code, out, _ = _run(["--import", f, "--tuning-dir", tmp_path / "b"], capsys)
    assert code == 0 and "imported 0 new trials" in out


def test_export_errors_are_one_line(tmp_path, capsys):
    code, _, err = _run(["--export", tmp_path / "x.json", "--device-key", "none",
                         "--tuning-dir", tmp_path], capsys)
    assert code == 1 and "no tuning records for device 'none'" in err
    assert err.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    code, _, err = _run(["--import", bad, "--tuning-dir", tmp_path], capsys)
    assert code == 1 and "not a tuning log export" in err and "Traceback" not in err


def test_tune_forwards_flags(tmp_path, capsys, monkeypatch):
    from nnef_tvm.schedules import tuning
    seen = {}

    def fake_tune(model, target, **kw):
        seen.update(kw, model=model, target=target)
        return tuning.TuneSummary("box", str(tmp_path / "box"), [("k", "1", 0, 4)], 0, 4, 1.5)
    monkeypatch.setattr(tuning, "tune_model", fake_tune)
    code, out, err = _run(["model_dir", "--trials", "4", "--time-budget", "90",
                           "--device-key", "Box", "--tuning-dir", tmp_path,
                           "--tracker", "127.0.0.1:9190", "--key", "board",
                           "--shape", "input=1,3,8,8", "--seed", "5", "-q"], capsys)
    assert code == 0, err
    assert seen["model"] == "model_dir" and seen["target"].name == "x86"
    assert seen["trials"] == 4 and seen["time_budget"] == 90.0
    assert seen["device_key_override"] == "Box"
    assert seen["tracker"] == "127.0.0.1:9190" and seen["rpc_key"] == "board"
    assert seen["input_shapes"] == {"input": [1, 3, 8, 8]} and seen["seed"] == 5
    assert seen["store"].root == tmp_path and seen["progress"] is None
    assert "1 distinct kernels" in out and "4 trials" in out
