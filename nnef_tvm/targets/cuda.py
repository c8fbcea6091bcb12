"""NVIDIA CUDA target: dlight-scheduled kernels compiled with nvcc into the library.

* Every fused PrimFunc is scheduled with the dlight default rules (Matmul,
  GEMV, Reduction, GeneralReduction, Fallback) so no kernel is left as a
  host-side loop nest.
* TVM 0.27 without a CUDA driver keeps the generated CUDA *source* in the
  device module and compiles it when the library is loaded. We instead compile
  it here with ``nvcc`` into a fatbin (SASS for ``--arch sm_XX`` plus PTX of the
  same compute capability for newer GPUs) and put that into the library, so
  the deployed .so needs no CUDA compiler.
* ``--arch`` defaults to the local GPU (``nvidia-smi``), else ``sm_80``
  (Ampere A100: the oldest data-centre GPU still common in clusters; the PTX
  in the fatbin lets newer GPUs JIT it).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Optional

from ..errors import NNEFError
from .base import Target, Tool
from .registry import register

DEFAULT_ARCH = "sm_80"
_CALLBACK = "tvm_callback_cuda_compile"
NVCC = Tool("nvcc", "install the CUDA toolkit: https://developer.nvidia.com/cuda-downloads",
            paths=("/usr/local/cuda/bin",))


def detect_arch() -> Optional[str]:
    """``sm_XX`` of GPU 0 according to nvidia-smi, or None without a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"\s*(\d+)\.(\d+)", out.stdout or "")
    return f"sm_{m.group(1)}{m.group(2)}" if out.returncode == 0 and m else None


def _check_arch(arch: str) -> str:
    if not re.fullmatch(r"sm_\d{2,3}[af]?", arch or ""):
        raise NNEFError(f"--arch must look like sm_80 or sm_90a, got '{arch}'")
    return arch


@dataclass
class CudaTarget(Target):
    """CUDA target: dlight schedules + nvcc-compiled fatbin packing."""

    def schedule_passes(self) -> list:
        # dlight (via nnef_tvm.schedules): every kernel bound to blocks/threads
        from ..schedules.default import gpu_default_schedule
        return [gpu_default_schedule()]

    @property
    def arch(self) -> str:
        return self.tvm_target.get("arch", DEFAULT_ARCH)

    def build_context(self):
        """While building: CUDA source -> fatbin with nvcc for ``self.arch``.

        Only used where TVM finds a CUDA driver at build time (it then compiles
        the kernels right away instead of keeping the source); TVM's default
        callback would need NVRTC's Python bindings and guesses the arch.
        """
        import contextlib
        import tvm
        import tvm_ffi
        nvcc = NVCC.find()
        if nvcc is None:
            return contextlib.nullcontext()
        arch = self.arch

        def compile_source(code, *_ignored):
            with tempfile.TemporaryDirectory(prefix="nnef-tvm-nvcc-") as work:
                return bytearray(nvcc_fatbin(str(code), arch, nvcc, work))

        @contextlib.contextmanager
        def swapped():
            previous = tvm.get_global_func(_CALLBACK, allow_missing=True)
            tvm_ffi.register_global_func(_CALLBACK, compile_source, override=True)
            try:
                yield
            finally:
                if previous is not None:
                    tvm_ffi.register_global_func(_CALLBACK, previous, override=True)
        return swapped()

    def export(self, executable, path, addons, workspace) -> None:
        nvcc = NVCC.find()
        if nvcc is None:
            raise NNEFError(f"cannot export for target 'cuda': nvcc not found "
                            f"(install: {NVCC.install})")
        from ..artifact import include_options
        fpack = functools.partial(pack_imports_compiled, arch=self.arch, nvcc=nvcc)
        executable.export_library(path, addons=list(addons), workspace_dir=workspace,
                                  fpack_imports=fpack, options=include_options())


def nvcc_fatbin(source: str, arch: str, nvcc: str, workdir: str) -> bytes:
    """Compile CUDA C++ ``source`` to a fatbin with SASS for ``arch`` and its PTX."""
    compute = "compute_" + arch[3:]
    src = os.path.join(workdir, "kernels.cu")
    out = os.path.join(workdir, "kernels.fatbin")
    with open(src, "w") as f:
        f.write(source)
    cmd = [nvcc, "--fatbin", "-O3", "-lineinfo",
           f"--generate-code=arch={compute},code=[{arch},{compute}]", "-o", out, src]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        # generated code that nvcc rejects is a compiler bug, not a user error
        raise RuntimeError("nvcc failed on generated CUDA code:\n" + " ".join(cmd) + "\n"
                           + proc.stderr[-4000:])
    with open(out, "rb") as f:
        return f.read()


def _device_sources(mod) -> list[bytes]:
    found = []

    def visit(m):
        if m.kind == "cuda":
            found.append(str(m.inspect_source()).encode())
        for sub in m.imports:
            visit(sub)
    visit(mod)
    return found


def pack_imports_compiled(mod, is_system_lib, symbol_prefix, workspace_dir, *, arch, nvcc):
    """``fpack_imports`` for export_library: the module tree with CUDA source -> fatbin."""
    import tvm
    from .library_blob import (Blob, device_payload_format, join_device_payload,
                               split_device_payload, write_incbin_source)
    raw = tvm.get_global_func("runtime.ModulePackImportsToTensor")(mod).numpy().tobytes()
    blob = Blob.parse(raw)
    sources = _device_sources(mod)
    modules = []
    for kind, payload in blob.modules:
        if kind == "cuda" and payload is not None and device_payload_format(payload) == "cuda":
            fmt, fmap, code = split_device_payload(payload, sources)
            if fmt == "cuda":
                with tempfile.TemporaryDirectory(dir=workspace_dir) as work:
                    code = nvcc_fatbin(code.decode(), arch, nvcc, work)
                payload = join_device_payload("fatbin", fmap, code)
        modules.append((kind, payload))
    blob.modules = modules
    symbol = symbol_prefix + tvm.get_global_func("runtime.ModuleImportsBlobName")()
    return write_incbin_source(blob.serialize(), workspace_dir, symbol)


@register("cuda", "NVIDIA GPU via CUDA (nvcc); --arch sm_XX (default: local GPU, else sm_80)")
def cuda(arch: Optional[str] = None) -> Target:
    local = detect_arch()
    arch = _check_arch(arch) if arch else (local or DEFAULT_ARCH)
    return CudaTarget("cuda", f"NVIDIA CUDA {arch}", {"kind": "cuda", "arch": arch},
                      host={"kind": "llvm"}, device="cuda", tools=(NVCC,),
                      runs_locally=local is not None, options={"arch": arch})
