"""nnef-compile: flags, exit codes, one-line errors, compile + verify, --check summary."""
import os
import platform
import shutil
import subprocess
import sys

import pytest

from nnef_tvm.cli.compile import main
from nnef_tvm.errors import NNEFError, SourcePos

X86 = platform.machine() == "x86_64"


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_targets(capsys):
    code, out, err = _run(["--list-targets"], capsys)
    assert code == 0
    for name in ("x86", "arm64", "rpi4", "rpi5", "jetson-orin-cpu", "rk3588", "armv7", "cuda",
                 "vulkan"):
        assert f"\n{name} " in "\n" + out
    assert "USE_VULKAN" in out or "ready" in out


def test_unknown_target_is_one_line_exit_1(capsys, model_file):
    code, out, err = _run([str(model_file), "--target", "gpu-of-the-future"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("nnef-compile: error: unknown target")
    assert "x86" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,fragment", [
    (["--bogus"], "unrecognized arguments"),
    ([], "MODEL"),
    (["m.nnef", "--shape", "input"], "NAME=D1,D2"),
    (["m.nnef", "--shape", "input=1,x"], "integers"),
    (["m.nnef", "--threads", "0"], "positive integer"),
    (["m.nnef", "--opt-level", "7"], "opt-level"),
])
def test_bad_flags_exit_2_one_line(capsys, argv, fragment):
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nnef-compile: error:")
    assert fragment in err


def test_subprocess_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnef_tvm.cli.compile", "x.nnef", "--target",
                           "warp-drive"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("nnef-compile: error: unknown target 'warp-drive'")
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not X86, reason="x86 host build")
def test_compile_verify_dump(tmp_path, capsys, model_file, khronos_reader):
    out_so = tmp_path / "tiny.so"
    dump = tmp_path / "ir"
    code, out, err = _run([str(model_file), "--target", "x86", "-o", str(out_so), "--verify",
                           "--dump-ir", str(dump)], capsys)
    assert code == 0, err
    assert out_so.is_file()
    assert "verify: OK" in out
    assert "optimizing for x86" in err and "linking" in err          # progress on stderr
    assert (dump / "fusion_report.txt").is_file()
    from nnef_tvm.artifact import read_metadata
    meta = read_metadata(str(out_so))
    assert [o["name"] for o in meta["outputs"]] == ["output", "pooled"]
    assert meta["source"]["path"] == "tiny.nnef"


@pytest.mark.skipif(not X86, reason="x86 host build")
def test_compile_default_output_name_and_shape(tmp_path, capsys, model_file, khronos_reader,
                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run([str(model_file), "-q", "--shape", "input=2,2,4,4"], capsys)
    assert code == 0, err
    assert err == ""                                                  # -q: no progress
    from nnef_tvm.artifact import read_metadata
    assert read_metadata(str(tmp_path / "tiny.so"))["inputs"][0]["shape"] == [2, 2, 4, 4]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="aarch64-linux-gnu-gcc not installed "
                           "(apt-get install -y gcc-aarch64-linux-gnu)")
def test_cross_compile_verify_skips_numerics(tmp_path, capsys, model_file, khronos_reader):
    code, out, err = _run([str(model_file), "--target", "rpi5", "-o", str(tmp_path / "a.so"),
                           "--verify", "-q"], capsys)
    assert code == 0, err
    assert "numeric check skipped" in out


def test_vulkan_one_line_error(tmp_path, capsys, model_file, khronos_reader):
    from nnef_tvm.targets import vulkan
    if vulkan.has_vulkan_codegen():
        pytest.skip("this TVM has a Vulkan code generator")
    code, out, err = _run([str(model_file), "--target", "vulkan", "-o", str(tmp_path / "v.so")],
                          capsys)
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "no Vulkan code generator" in err


def test_missing_cross_compiler_is_reported(tmp_path, capsys, model_file, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    if platform.machine() == "aarch64":
        pytest.skip("native AArch64 host")
    code, out, err = _run([str(model_file), "--target", "arm64"], capsys)
    assert code == 1
    assert "apt-get install -y gcc-aarch64-linux-gnu" in err


def test_check_summary(capsys, model_file, khronos_reader):
    code, out, err = _run([str(model_file), "--check"], capsys)
    assert code == 0, err
    assert "graph tiny: OK" in out
    assert "input: scalar[1, 2, 4, 4]" in out
    assert "output: scalar[1, 3, 4, 4]" in out and "pooled: scalar[1, 3, 1, 1]" in out
    lines = out.splitlines()
    hist = {ln.split()[0]: int(ln.split()[1]) for ln in lines
            if ln.startswith("  ") and len(ln.split()) == 2 and ln.split()[1].isdigit()}
    assert hist == {"external": 1, "variable": 1, "conv": 1, "relu": 1, "mul": 1,
                    "mean_reduce": 1}
    assert f"parameters: 1 tensors, {3 * 2 * 4} bytes" in out


def test_check_located_errors(capsys, model_file, monkeypatch):
    from nnef_tvm.reader import loader

    def bad(path, **kw):
        raise NNEFError.collect([NNEFError("undefined identifier 'q'", SourcePos(str(path), 7, 9)),
                                 NNEFError("wrong arity", SourcePos(str(path), 9, 5))])
    monkeypatch.setattr(loader, "load", bad)
    code, out, err = _run([str(model_file), "--check"], capsys)
    assert code == 1
    assert err.splitlines() == [f"{model_file}:7:9: error: undefined identifier 'q'",
                                f"{model_file}:9:5: error: wrong arity"]


def test_check_with_the_real_reader(capsys, real_reader):
    examples = "/work/shared/nnef/examples"
    good = os.path.join(examples, "01_flat_small_cnn.nnef")
    if not os.path.exists(good):
        pytest.skip("shared examples not present")
    code, out, err = _run([good, "--check"], capsys)
    assert code == 0, err
    assert "graph small_cnn: OK" in out and "conv" in out
    bad = os.path.join(examples, "i01_undefined_identifier.nnef")
    code, out, err = _run([bad, "--check"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(bad + ":") and ": error: " in err


def test_missing_tuning_dir_is_an_error(tmp_path, capsys, model_file, khronos_reader):
    code, out, err = _run([str(model_file), "-q", "-o", str(tmp_path / "t.so"), "--tuning-dir",
                           str(tmp_path / "no-such-dir")], capsys)
    assert code == 1
    assert "tuning directory not found" in err and err.count("\n") == 1


def test_empty_tuning_dir_uses_default_schedules(tmp_path, capsys, model_file, khronos_reader):
    (tmp_path / "store").mkdir()
    code, out, err = _run([str(model_file), "-o", str(tmp_path / "t.so"), "--tuning-dir",
                           str(tmp_path / "store"), "--verify"], capsys)
    assert code == 0, err
    assert "verify: OK" in out
