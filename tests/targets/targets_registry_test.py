"""The target registry: names, presets, raw JSON, availability, error messages."""
import json
import platform

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.targets import Target, get_target, known_targets
from nnef_tvm.targets import cpu, cuda, vulkan

EXPECTED = {"x86", "arm64", "rpi4", "rpi5", "jetson-orin-cpu", "rk3588", "armv7", "cuda",
            "vulkan"}


def test_known_names():
    names = known_targets()
    assert EXPECTED <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_named_target_is_a_valid_tvm_target(name):
    t = get_target(name)
    assert isinstance(t, Target) and t.name == name
    tvm_t = t.tvm()                      # TVM accepts the dict (no string flags)
    assert tvm_t.kind.name == t.tvm_target["kind"]
    assert isinstance(t.available(), list)


def test_unknown_name_lists_the_known_targets():
    with pytest.raises(NNEFError) as e:
        get_target("tpu9000")
    msg = e.value.message
    assert "unknown target 'tpu9000'" in msg
    for name in EXPECTED:
        assert name in msg


@pytest.mark.parametrize("board,mcpu", [("rpi4", "cortex-a72"), ("rpi5", "cortex-a76"),
                                        ("jetson-orin-cpu", "cortex-a78ae"),
                                        ("rk3588", "cortex-a76")])
def test_arm64_board_presets(board, mcpu):
    from tvm.target import codegen
    t = get_target(board)
    assert t.tvm_target["mtriple"] == "aarch64-linux-gnu"
    assert t.tvm_target["mcpu"] == mcpu
    assert "+neon" in t.tvm_target["mattr"]
    assert codegen.llvm_is_valid_cpu(mcpu, "aarch64-linux-gnu")
    if platform.machine() == "x86_64":
        assert t.cross_compiler == "aarch64-linux-gnu-gcc" and not t.runs_locally


def test_armv7_is_hard_float_neon():
    t = get_target("armv7")
    assert t.tvm_target["mtriple"].startswith("armv7")
    assert "+neon" in t.tvm_target["mattr"] and t.tvm_target["mfloat-abi"] == "hard"
    assert t.cross_compiler == "arm-linux-gnueabihf-gcc"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 host detection")
def test_x86_detects_host_cpu_and_masks_hidden_features():
    from tvm.target import codegen
    t = get_target("x86", threads=3)
    assert t.tvm_target["mcpu"] not in ("native", "")
    assert t.tvm_target["num-cores"] == 3 and t.options["threads"] == 3
    flags = cpu._cpuinfo_flags() or set()
    # every feature switched off is one /proc/cpuinfo does not list
    for feat in t.tvm_target.get("mattr", []):
        assert feat.startswith("-")
        assert cpu._X86_FLAGS[feat[1:]] not in flags
    # and every feature LLVM assumes for that CPU and left on is really there
    implied = codegen.llvm_get_cpu_features(t.tvm())
    for feat, flag in cpu._X86_FLAGS.items():
        if feat in implied:
            assert flag in flags, feat


def test_threads_must_be_positive():
    with pytest.raises(NNEFError, match="threads"):
        get_target("x86", threads=0)


def test_option_not_taken_by_target():
    with pytest.raises(NNEFError, match="does not take --arch"):
        get_target("x86", arch="sm_80")


def test_cuda_arch_option_and_validation():
    assert get_target("cuda", arch="sm_86").tvm_target == {"kind": "cuda", "arch": "sm_86"}
    with pytest.raises(NNEFError, match="sm_80"):
        get_target("cuda", arch="ampere")


def test_cuda_default_arch_is_local_gpu_or_sm80():
    t = get_target("cuda")
    assert t.tvm_target["arch"] == (cuda.detect_arch() or "sm_80")
    assert t.device == "cuda" and t.host == {"kind": "llvm"}


def test_raw_json_target():
    t = get_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}')
    assert t.name == "raw" and t.tvm_target["mcpu"] == "cortex-a55"
    assert t.tvm().kind.name == "llvm"
    if platform.machine() == "x86_64":
        assert t.cross_compiler == "aarch64-linux-gnu-gcc"
    assert get_target({"kind": "llvm"}).runs_locally


def test_raw_json_cuda_gets_cuda_hooks():
    t = get_target('{"kind": "cuda", "arch": "sm_75", "host": {"kind": "llvm"}}')
    assert isinstance(t, cuda.CudaTarget) and t.arch == "sm_75" and t.device == "cuda"


@pytest.mark.parametrize("spec,fragment", [
    ('{"kind": "llvm", ', "not valid JSON"),
    ('{"mcpu": "x"}', '"kind"'),
    ('{"kind": "no-such-kind"}', "TVM rejected"),
])
def test_raw_json_errors(spec, fragment):
    with pytest.raises(NNEFError) as e:
        get_target(spec)
    assert fragment in e.value.message


def test_vulkan_reports_missing_codegen():
    missing = get_target("vulkan").available()
    if vulkan.has_vulkan_codegen():
        pytest.skip("this TVM has a Vulkan code generator")
    assert any("target.build.vulkan" in m and "USE_VULKAN" in m for m in missing)


def test_missing_tool_names_install_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    t = get_target("arm64")
    if t.runs_locally:
        pytest.skip("native AArch64 host needs no cross compiler")
    missing = t.available()
    assert missing and "aarch64-linux-gnu-gcc" in missing[0]
    assert "apt-get install -y gcc-aarch64-linux-gnu" in missing[0]


def test_describe_is_json():
    for name in EXPECTED:
        json.dumps(get_target(name).describe())


def test_byoc_partition_hook_runs_first(small_module):
    """A target with a Partition gets FuseOpsByPattern(annotate_codegen) + RunCodegen first."""
    from tvm.relax.dpl import is_op, wildcard
    from tvm.relax.transform import FusionPattern
    from nnef_tvm.targets import Partition
    from nnef_tvm.targets.pipeline import build_phases

    def patterns():
        return [FusionPattern("npu.add", is_op("relax.add")(wildcard(), wildcard()))]
    t = get_target("x86")
    t.partitions = (Partition("npu", patterns, codegen="npu"),)
    phases = build_phases(t)
    assert [p.name for p in phases][:2] == ["partition", "legalize"]
    assert len(phases[0].passes) == 2                  # FuseOpsByPattern, RunCodegen
    mod = phases[0].passes[0](small_module)          # the pattern pass alone (no codegen)
    codegens = [f.attrs["Codegen"] for f in mod.functions.values()
                if f.attrs is not None and "Codegen" in f.attrs]
    assert codegens == ["npu"]
