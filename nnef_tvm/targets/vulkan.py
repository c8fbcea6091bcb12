"""Vulkan (SPIR-V) target.

The apache-tvm wheel on PyPI is built with ``USE_VULKAN=OFF``: it has no
``target.build.vulkan`` code generator. We still run the whole Relax pipeline
(legalization, fusion, dlight GPU schedules, lowering), so a model that cannot
be scheduled for a GPU fails early with the real reason, and then stop right
before code generation with a message that says what to install.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import NNEFError
from .base import Target
from .registry import register

CODEGEN = "target.build.vulkan"
MISSING_CODEGEN = ("this TVM build has no Vulkan code generator ({codegen} is missing; the "
                   "PyPI wheel is built with USE_VULKAN=OFF): build TVM from source with "
                   "set(USE_VULKAN ON) to compile for the 'vulkan' target")


def has_vulkan_codegen() -> bool:
    import tvm
    return tvm.get_global_func(CODEGEN, allow_missing=True) is not None


@dataclass
class VulkanTarget(Target):
    def schedule_passes(self) -> list:
        # dlight (via nnef_tvm.schedules): every kernel bound to blocks/threads
        from ..schedules.default import gpu_default_schedule
        return [gpu_default_schedule()]

    def available(self) -> list[str]:
        missing = super().available()
        if not has_vulkan_codegen():
            missing.append(MISSING_CODEGEN.format(codegen=CODEGEN))
        return missing

    def check_codegen(self) -> None:
        if not has_vulkan_codegen():
            raise NNEFError(MISSING_CODEGEN.format(codegen=CODEGEN))


@register("vulkan", "any Vulkan 1.1 GPU via SPIR-V (needs a TVM built with USE_VULKAN=ON)")
def vulkan() -> Target:
    return VulkanTarget("vulkan", "Vulkan (SPIR-V)",
                        {"kind": "vulkan", "max_num_threads": 256,
                         "supports_float32": True, "supports_int32": True},
                        host={"kind": "llvm"}, device="vulkan", runs_locally=False)
