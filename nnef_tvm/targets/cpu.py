"""CPU targets (LLVM): this x86 host, 64-bit ARM boards, 32-bit ARMv7.

LLVM in TVM 0.27 rejects ``-mcpu=native``, so the x86 target detects the host
CPU itself: the CPU name comes from LLVM (``llvm_get_system_cpu``) and every
feature LLVM would assume for that CPU but ``/proc/cpuinfo`` does not list
(hypervisors hide AVX-512/AMX) is switched off explicitly in ``mattr``. A
binary built this way runs on this machine and on the same CPU model.

ARM presets fix ``mcpu`` for a known board so LLVM schedules for that core;
the library is linked with the GNU cross compiler of the triple.
"""
from __future__ import annotations

import platform
from typing import Optional

from ..threads import default_thread_count
from .base import Target, Tool
from .registry import register

# LLVM feature name -> /proc/cpuinfo flag (x86). Only features whose absence
# matters for code generation are listed; anything else follows mcpu.
_X86_FLAGS = {
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3", "popcnt": "popcnt",
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
    "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16", "avx512ifma": "avx512ifma",
    "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2", "avxvnni": "avx_vnni",
    "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16",
}

AARCH64_GCC = Tool("aarch64-linux-gnu-gcc", "apt-get install -y gcc-aarch64-linux-gnu")
ARMHF_GCC = Tool("arm-linux-gnueabihf-gcc", "apt-get install -y gcc-arm-linux-gnueabihf")


def _cpuinfo_flags() -> Optional[set[str]]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def host_is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def host_is_aarch64() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def detect_x86_host() -> tuple[str, list[str]]:
    """(mcpu, mattr) describing this x86 host for LLVM."""
    from tvm.target import codegen
    import tvm
    cpu = codegen.llvm_get_system_cpu()
    if not cpu or cpu == "generic":
        return "x86-64", []
    implied = codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu}))
    flags = _cpuinfo_flags()
    mattr = []
    if flags is not None:
        for feat, flag in _X86_FLAGS.items():
            if feat in implied and flag not in flags:
                mattr.append(f"-{feat}")
    return cpu, mattr


@register("x86", "this x86-64 host (CPU model and features detected), LLVM; --threads N")
def x86(threads: Optional[int] = None) -> Target:
    if threads is not None and threads < 1:
        from ..errors import NNEFError
        raise NNEFError(f"--threads must be >= 1, got {threads}")
    n = threads or default_thread_count()
    if host_is_x86_64():
        mcpu, mattr = detect_x86_host()
        tgt = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": n}
        if mattr:
            tgt["mattr"] = mattr
        return Target("x86", f"x86-64 host ({mcpu})", tgt, options={"threads": n})
    tgt = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v2", "num-cores": n}
    return Target("x86", "x86-64 (generic, cross-compiled)", tgt, runs_locally=False,
                  cross_compiler="x86_64-linux-gnu-gcc",
                  tools=(Tool("x86_64-linux-gnu-gcc", "apt-get install -y gcc-x86-64-linux-gnu"),),
                  options={"threads": n})


def _arm64(name: str, description: str, mcpu: Optional[str], threads: Optional[int]) -> Target:
    tgt = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    if mcpu:
        tgt["mcpu"] = mcpu
    if threads:
        tgt["num-cores"] = threads
    local = host_is_aarch64()
    return Target(name, description, tgt, cross_compiler=None if local else AARCH64_GCC.executable,
                  tools=() if local else (AARCH64_GCC,), runs_locally=local,
                  options={"threads": threads} if threads else {})


# name -> (mcpu, description)
ARM64_BOARDS = {
    "arm64": (None, "generic AArch64 Linux (NEON), cross-compiled with aarch64-linux-gnu-gcc"),
    "rpi4": ("cortex-a72", "Raspberry Pi 4 (BCM2711, Cortex-A72)"),
    "rpi5": ("cortex-a76", "Raspberry Pi 5 (BCM2712, Cortex-A76)"),
    "jetson-orin-cpu": ("cortex-a78ae", "NVIDIA Jetson Orin, CPU only (Cortex-A78AE)"),
    "rk3588": ("cortex-a76", "Rockchip RK3588 (big cores Cortex-A76)"),
}


def _make_board(name: str, mcpu: Optional[str], description: str):
    def factory(threads: Optional[int] = None) -> Target:
        return _arm64(name, description, mcpu, threads)
    factory.__name__ = name.replace("-", "_")
    return factory


for _name, (_mcpu, _desc) in ARM64_BOARDS.items():
    register(_name, _desc)(_make_board(_name, _mcpu, _desc))


@register("armv7", "32-bit ARMv7-A Linux, hard float, NEON (arm-linux-gnueabihf-gcc)")
def armv7(threads: Optional[int] = None) -> Target:
    tgt = {"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mattr": ["+neon", "+vfp4"],
           "mfloat-abi": "hard"}
    if threads:
        tgt["num-cores"] = threads
    return Target("armv7", "32-bit ARMv7-A (NEON, hard float)", tgt,
                  cross_compiler=ARMHF_GCC.executable, tools=(ARMHF_GCC,), runs_locally=False,
                  options={"threads": threads} if threads else {})
