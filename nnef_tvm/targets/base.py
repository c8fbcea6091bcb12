"""The :class:`Target` record: everything the compiler needs to know about one deployment target.

A target is mostly *data* (a TVM target dict, a host, a cross compiler, the tools
it needs) plus a few hooks where a family of targets has to do something special:

* ``schedule_passes``  -- GPU targets need every kernel scheduled (thread
  bindings) before TIR lowering; CPU targets need nothing.
* ``check_codegen``    -- called after the Relax pipeline ran, right before TIR
  code generation; a target whose code generator is missing from this TVM build
  (Vulkan in the PyPI wheel) fails here with a clear message.
* ``export``           -- writes the one shared library (``fcompile`` for cross
  compilers, device-code packing for CUDA).
* ``partitions``       -- BYOC slot: sub-graphs matched by a pattern table are
  handed to an external code generator (an embedded NPU later). Nothing uses it
  yet; :class:`Partition` fixes the shape of the hook.

TVM is imported lazily (inside the hooks) so that listing targets stays cheap.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Tool:
    """An executable a target needs on the build machine, and how to get it."""

    executable: str
    install: str                       # the command a user runs to install it
    paths: tuple[str, ...] = ()        # extra places to look besides $PATH

    def find(self) -> Optional[str]:
        found = shutil.which(self.executable)
        if found:
            return found
        for p in self.paths:
            found = shutil.which(self.executable, path=p)
            if found:
                return found
        return None


@dataclass(frozen=True)
class Partition:
    """BYOC hook: offload sub-graphs matching ``patterns`` to codegen ``codegen``.

    ``patterns`` is a callable returning a list of ``relax.transform.FusionPattern``
    (a pattern table, evaluated lazily because it builds TVM objects); ``codegen``
    is the name of the registered external code generator
    (``relax.ext.<codegen>``). The compiler runs ``FuseOpsByPattern`` with these
    patterns (``annotate_codegen=True``) and then ``RunCodegen`` before
    legalization, so the partitioned functions never reach TIR.
    """

    name: str
    patterns: Callable[[], list]
    codegen: str
    options: dict = field(default_factory=dict)


@dataclass
class Target:
    """A named deployment target.

    ``tvm_target`` is the TVM target as a dict (``{"kind": "llvm", ...}``);
    ``host`` the host target dict for device targets (CUDA, Vulkan).
    ``device`` is the runtime device kind the library runs on (``cpu``,
    ``cuda``, ``vulkan``); ``runs_locally`` says whether this machine can
    execute the library (same ISA, device present).
    """

    name: str
    description: str
    tvm_target: dict
    host: Optional[dict] = None
    device: str = "cpu"
    cross_compiler: Optional[str] = None          # e.g. "aarch64-linux-gnu-gcc"
    tools: tuple[Tool, ...] = ()
    partitions: tuple[Partition, ...] = ()
    runs_locally: bool = True
    options: dict[str, Any] = field(default_factory=dict)   # family-specific (threads, arch)

    # ---------------------------------------------------------------- checks
    def available(self) -> list[str]:
        """What is missing on this machine to build for the target (empty: ready).

        Each entry names the missing thing and the command that installs it.
        """
        missing = []
        for tool in self.tools:
            if tool.find() is None:
                missing.append(f"{tool.executable} not found (install: {tool.install})")
        return missing

    # ------------------------------------------------------------- TVM side
    def tvm(self):
        """The ``tvm.target.Target`` object (with host when set)."""
        import tvm
        if self.host is not None:
            return tvm.target.Target(self.tvm_target, host=self.host)
        return tvm.target.Target(self.tvm_target)

    def schedule_passes(self) -> list:
        """Passes that schedule the fused PrimFuncs left unscheduled after tuning.

        The defaults live in :mod:`nnef_tvm.schedules.default` (CPU rules for
        LLVM, dlight for GPUs); a family may override this.
        """
        from ..schedules.default import default_schedule_passes
        return default_schedule_passes(self)

    def check_codegen(self) -> None:
        """Raise NNEFError if this TVM build cannot generate code for the target."""
        return None

    def build_context(self):
        """Context manager around ``relax.build`` (e.g. a device-compiler callback)."""
        import contextlib
        return contextlib.nullcontext()

    def fcompile(self):
        """The ``export_library`` link function (None: TVM's default host compiler)."""
        if self.cross_compiler:
            from tvm.support import cc
            tool = Tool(self.cross_compiler, "")
            return cc.cross_compiler(tool.find() or self.cross_compiler)
        return None

    def export(self, executable, path: str, addons: list[str], workspace: str) -> None:
        """Write the one shared library for ``executable`` (a relax VMExecutable)."""
        from ..artifact import include_options
        fcompile = self.fcompile()
        kwargs = {"options": include_options()}
        if fcompile is not None:
            kwargs["fcompile"] = fcompile
        executable.export_library(path, addons=list(addons), workspace_dir=workspace, **kwargs)

    def describe(self) -> dict:
        """JSON-able summary (for metadata and ``--list-targets``)."""
        out = {"name": self.name, "tvm_target": self.tvm_target, "device": self.device}
        if self.host is not None:
            out["host"] = self.host
        if self.cross_compiler:
            out["cross_compiler"] = self.cross_compiler
        return out
