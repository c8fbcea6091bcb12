"""A raw TVM target given as JSON (``--target '{"kind": "llvm", "mcpu": "skylake"}'``).

The escape hatch for anything the named targets do not cover. The JSON is
checked by TVM itself; a ``host`` key is split off as the host target. The
device kind follows the TVM target kind; an LLVM target whose triple is not
this machine's is treated as cross-compiled (``cross_compiler`` may be given in
the JSON as ``"nnef-tvm:cross-compiler"``, removed before TVM sees it).
"""
from __future__ import annotations

import json
import platform

from ..errors import NNEFError
from .base import Target, Tool

_CROSS_KEY = "nnef-tvm:cross-compiler"
_DEVICE_OF_KIND = {"llvm": "cpu", "c": "cpu", "cuda": "cuda", "vulkan": "vulkan",
                   "opencl": "opencl", "rocm": "rocm", "metal": "metal"}


def raw_target(spec, where=None) -> Target:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as e:
            raise NNEFError(f"target JSON is not valid JSON: {e}", where) from None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise NNEFError('a raw target must be a JSON object with a "kind", '
                        'e.g. {"kind": "llvm", "mcpu": "skylake"}', where)
    spec = dict(spec)
    cross = spec.pop(_CROSS_KEY, None)
    host = spec.pop("host", None)
    import tvm
    try:
        tvm.target.Target(spec, host=host) if host else tvm.target.Target(spec)
    except Exception as e:  # TVM's own validation message is the useful part
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NNEFError(f"TVM rejected the target JSON: {msg}", where) from None
    kind = spec["kind"]
    device = _DEVICE_OF_KIND.get(kind, kind)
    triple = spec.get("mtriple", "")
    machine = platform.machine().lower()
    host_arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    local = device != "cpu" or not triple or triple.split("-")[0] == host_arch
    if cross is None and not local and kind == "llvm":
        arch = triple.split("-")[0]
        cross = {"aarch64": "aarch64-linux-gnu-gcc", "arm64": "aarch64-linux-gnu-gcc"}.get(arch)
        if cross is None and arch.startswith("arm"):
            cross = "arm-linux-gnueabihf-gcc"
    tools = (Tool(cross, f"install a C cross compiler providing {cross}"),) if cross else ()
    tgt = Target("raw", f"raw TVM target {json.dumps(spec)}", spec, host=host, device=device,
                 cross_compiler=cross, tools=tools, runs_locally=local)
    if device in ("cuda", "vulkan"):
        # reuse the family hooks (nvcc packing, dlight schedules, codegen check)
        from . import cuda, vulkan
        family = cuda.CudaTarget if device == "cuda" else vulkan.VulkanTarget
        tgt = family(**{f: getattr(tgt, f) for f in tgt.__dataclass_fields__})
        if device == "cuda":
            tgt.options.setdefault("arch", spec.get("arch", cuda.DEFAULT_ARCH))
    return tgt
