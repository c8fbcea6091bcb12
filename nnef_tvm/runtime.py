"""Load a compiled library and run it, here or on a remote board over TVM RPC.

Only ``tvm.runtime`` (and ``tvm.rpc`` for remote runs) is used: a deployment
machine needs the TVM runtime, numpy and this module, not the compiler.

Inputs are checked against the metadata embedded in the library (names,
dtypes, static dimensions) and problems are reported as :class:`NNEFError`.
"""
from __future__ import annotations

import os
import platform
from typing import Any, Optional

import numpy as np

from .artifact import metadata_from_module, read_metadata
from .errors import NNEFError
from .threads import configure_cpu_threads

DEVICES = ("cpu", "cuda", "vulkan", "opencl", "rocm", "metal")


class LoadedModel:
    """A Relax VM over a loaded library: ``.run({name: array}) -> {name: array}``."""

    def __init__(self, lib, device, metadata: dict, session=None):
        from tvm.runtime.vm import VirtualMachine
        self.lib = lib
        self.device = device
        self.metadata = metadata
        self.session = session
        self.vm = VirtualMachine(lib, device)
        self._main = self.vm[metadata.get("entry", "main")]

    @property
    def inputs(self) -> list[dict]:
        return self.metadata["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.metadata["outputs"]

    def _arguments(self, inputs: dict, where: Optional[str]) -> list:
        import tvm
        names = [s["name"] for s in self.inputs]
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise NNEFError(f"unknown input(s) {', '.join(unknown)}; the model takes "
                            f"{', '.join(names)}", file=where)
        args = []
        for spec in self.inputs:
            name = spec["name"]
            if name not in inputs:
                raise NNEFError(f"missing input '{name}' (shape {spec['shape']}, "
                                f"{spec['dtype']})", file=where)
            arr = np.asarray(inputs[name])
            want = np.dtype(spec["dtype"])
            if arr.dtype != want:
                if not np.can_cast(arr.dtype, want, casting="same_kind"):
                    raise NNEFError(f"input '{name}': expected {want}, got {arr.dtype}",
                                    file=where)
                arr = arr.astype(want)
            shape = spec["shape"]
            if len(shape) != arr.ndim or any(isinstance(d, int) and d != a
                                             for d, a in zip(shape, arr.shape)):
                raise NNEFError(f"input '{name}': expected shape {tuple(shape)}, got "
                                f"{tuple(arr.shape)}", file=where)
            args.append(tvm.runtime.tensor(np.ascontiguousarray(arr), self.device))
        return args

    def run(self, inputs: dict, *, where: Optional[str] = None) -> dict[str, np.ndarray]:
        """Run once. ``where`` names the inputs' source (a .npz) in error messages."""
        result = self._main(*self._arguments(inputs, where))
        values = _flatten(self._localize(result))
        names = [s["name"] for s in self.outputs]
        if len(values) != len(names):
            raise RuntimeError(f"library returned {len(values)} values for outputs {names}")
        return {n: v for n, v in zip(names, values)}


    def _localize(self, value):
        """Remote tuples come back as opaque RPC handles: unpack them on the server."""
        if self.session is None or type(value).__name__ != "RPCObjectRef":
            return value
        size = self.session.get_function("ffi.ArraySize")
        item = self.session.get_function("ffi.ArrayGetItem")
        return [self._localize(item(value, i)) for i in range(size(value))]


def _flatten(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        out = []
        for v in value:
            out.extend(_flatten(v))
        return out
    return [np.asarray(value)]


def load(path: str, device: str = "cpu", *, session=None, threads: Optional[int] = None
         ) -> LoadedModel:
    """Load an nnef-tvm library here, or on ``session`` (from :func:`connect`)."""
    import tvm
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NNEFError("no such library", file=path)
    metadata = read_metadata(path)
    if device not in DEVICES:
        raise NNEFError(f"unknown device '{device}'; use one of {', '.join(DEVICES)}")
    built_for = metadata.get("device", "cpu")
    if built_for != device:
        raise NNEFError(f"library was compiled for device '{built_for}' "
                        f"(target {metadata.get('target', {}).get('name')}), not '{device}'",
                        file=path)
    if session is not None:
        session.upload(path)
        lib = session.load_module(os.path.basename(path))
        dev = session.device(device, 0)
        return LoadedModel(lib, dev, metadata, session)
    foreign = _foreign_isa(path)
    if foreign:
        raise NNEFError(f"library is built for {foreign} (target "
                        f"{metadata.get('target', {}).get('name')}), this machine is "
                        f"{platform.machine()}: run it on the device with --rpc HOST:PORT "
                        "or --tracker HOST:PORT --key KEY", file=path)
    if threads:
        configure_cpu_threads(threads)
    dev = tvm.device(device, 0)
    if not dev.exist:
        raise NNEFError(f"no {device} device on this machine")
    try:
        lib = tvm.runtime.load_module(path)
    except Exception as e:  # dlopen failure: wrong ISA, missing device runtime
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NNEFError(f"cannot load library here ({metadata.get('target', {}).get('name')} "
                        f"target): {msg}", file=path) from None
    return LoadedModel(lib, dev, metadata)


_ELF_MACHINES = {3: "x86", 40: "ARM (32-bit)", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}
_HOST_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40,
                  "i686": 3, "riscv64": 243}


def elf_machine(path: str) -> Optional[int]:
    """ELF ``e_machine`` of a file (None if not ELF)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return int.from_bytes(head[18:20], order)


def _foreign_isa(path: str) -> Optional[str]:
    """Name of the library's ISA when it cannot run on this machine, else None."""
    mine = _HOST_MACHINES.get(platform.machine().lower())
    theirs = elf_machine(path)
    if mine is None or theirs is None or mine == theirs:
        return None
    return _ELF_MACHINES.get(theirs, f"ELF machine {theirs}")


def _host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise NNEFError(f"{flag} expects HOST:PORT, got '{text}'")
    return host, int(port)


def connect(rpc: Optional[str] = None, *, tracker: Optional[str] = None,
            key: Optional[str] = None, session_timeout: int = 0, priority: int = 1):
    """An RPC session: direct (``rpc='host:port'``) or through a tracker (+ ``key``)."""
    from tvm import rpc as tvm_rpc
    if (rpc is None) == (tracker is None):
        raise NNEFError("give either --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    try:
        if rpc is not None:
            host, port = _host_port(rpc, "--rpc")
            return tvm_rpc.connect(host, port, session_timeout=session_timeout)
        if not key:
            raise NNEFError("--tracker needs --key (the device key the servers registered)")
        host, port = _host_port(tracker, "--tracker")
        return tvm_rpc.connect_tracker(host, port).request(key, priority=priority,
                                                            session_timeout=session_timeout)
    except NNEFError:
        raise
    except Exception as e:  # connection refused, no such key, ...
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise NNEFError(f"RPC connection failed: {msg}") from None


def module_metadata(lib) -> dict[str, Any]:
    """Metadata through the library's own packed function (works on remote modules too)."""
    return metadata_from_module(lib)


def random_input(rng, spec: dict):
    """A random array for one input of a library's metadata (``name``/``shape``/``dtype``).

    Symbolic extents become 1; floats are standard normal, integers in [0, 8),
    logicals fair coins. Used by ``nnef-compile --verify`` and ``nnef-bench``.
    """
    import numpy as np
    shape = [d if isinstance(d, int) else 1 for d in spec["shape"]]
    dt = np.dtype(spec["dtype"])
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        return rng.integers(0, 8, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)
