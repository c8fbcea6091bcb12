"""Vulkan (SPIR-V) target.

The apache-tvm wheel on PyPI is built with ``USE_VULKAN=OFF``: it has no
``target.build.vulkan`` code generator. We still run the whole Relax pipeline
(legalization, fusion, dlight GPU schedules, lowering) and the VM/TIR build up
to the point where TVM looks for the code generator, so a model that cannot be
scheduled for a GPU fails with the real reason; the missing generator itself
becomes a one-line message that says what to install.
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

    def build_context(self):
        """Let VM codegen and TIR lowering (host/device split) run; translate the
        missing code generator, which TVM reports only when it gets there."""
        import contextlib

        @contextlib.contextmanager
        def translated():
            try:
                yield
            except Exception as e:
                if CODEGEN in str(e) and not has_vulkan_codegen():
                    raise NNEFError(MISSING_CODEGEN.format(codegen=CODEGEN)) from None
                raise
        return translated()


@register("vulkan", "any Vulkan 1.1 GPU via SPIR-V (needs a TVM built with USE_VULKAN=ON)")
def vulkan() -> Target:
    return VulkanTarget("vulkan", "Vulkan (SPIR-V)",
                        {"kind": "vulkan", "max_num_threads": 256,
                         "supports_float32": True, "supports_int32": True},
                        host={"kind": "llvm"}, device="vulkan", runs_locally=False)
