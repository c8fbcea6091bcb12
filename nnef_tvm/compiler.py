"""Compile an NNEF model for a named target -> :class:`CompiledModel` (run it, export one .so).

``compile_model`` reads the model (``nnef_tvm.load``), converts it to Relax
(``nnef_tvm.from_nnef``) and hands the IRModule to :func:`compile_relax`, which
is also the entry point for a hand-built Relax module (tests, other frontends).

The input/output description stored in the artifact comes from the NNEF graph
(names, quantization) and from the Relax ``main`` signature (shapes, dtypes):
``main`` takes the graph inputs in ``graph.inputs`` order and returns the
outputs in ``graph.outputs`` order (one tensor, or a tuple when several).
"""
from __future__ import annotations

import inspect
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from .errors import NNEFError
from . import artifact

Progress = Optional[Callable[[str], None]]


@dataclass
class IOSpec:
    """One input or output of the compiled model."""

    name: str
    shape: list                         # ints; a str for a symbolic dimension
    dtype: str                          # numpy dtype name, e.g. 'float32'
    quantization: Optional[dict] = None


@dataclass
class CompiledModel:
    """A built Relax VM executable plus everything needed to deploy it."""

    target: Any                          # nnef_tvm.targets.Target
    executable: Any                      # tvm.relax.VMExecutable
    metadata: dict
    kernels: list = field(default_factory=list)   # fusion report (targets.fusion_report.Kernel)
    relax_module: Any = None             # the Relax IRModule before optimization

    @property
    def inputs(self) -> list[dict]:
        return self.metadata["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.metadata["outputs"]

    def export(self, path: str, progress: Progress = None) -> str:
        """Write ONE shared library (VM executable + kernels + metadata) to ``path``."""
        missing = self.target.available()
        if missing:
            raise NNEFError(f"cannot export for target '{self.target.name}': " + "; ".join(missing))
        path = os.fspath(path)
        _say(progress, f"linking {os.path.basename(path)} for {self.target.name}")
        with tempfile.TemporaryDirectory(prefix="nnef-tvm-") as work:
            c_file = artifact.write_metadata_source(self.metadata, work)
            self.target.export(self.executable, path, [c_file], work)
        return path

    def run(self, inputs: dict) -> dict:
        """Run on this machine: {input name: array} -> {output name: numpy array}."""
        from .runtime import LoadedModel
        if not self.target.runs_locally:
            raise NNEFError(f"target '{self.target.name}' does not run on this machine; "
                            "export the library and run it on the device (nnef-run --rpc)")
        import tvm
        if self.target.device == "cpu":
            lib = self.executable.jit()
            return LoadedModel(lib, tvm.cpu(), self.metadata).run(inputs)
        # device code must go through our export (nvcc-compiled, not JIT at load)
        from .runtime import load
        with tempfile.TemporaryDirectory(prefix="nnef-tvm-run-") as work:
            path = self.export(os.path.join(work, "model.so"))
            return load(path, self.target.device).run(inputs)


def _say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


def stderr_progress(prefix: str = "nnef-compile") -> Callable[[str], None]:
    """A progress callback printing ``prefix: stage (elapsed)`` lines on stderr."""
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"{prefix}: {text} [{time.monotonic() - start:.1f}s]", file=sys.stderr, flush=True)
    return say


# -------------------------------------------------------------- model path
def compile_model(model_or_path, target="x86", *, input_shapes=None, tuning_dir=None,
                  dump_ir=None, opt_level: int = 3, threads: Optional[int] = None,
                  arch: Optional[str] = None, progress: Progress = None,
                  quantization: str = "auto", extensions=(),
                  realign_flat_quant: bool = False, winograd: bool = True) -> CompiledModel:
    """Read (if a path), convert and compile an NNEF model for ``target``.

    ``input_shapes`` ({input name: shape}) fixes the shapes of the external
    inputs; ``tuning_dir`` is a tuning store root or one device's folder
    (:mod:`nnef_tvm.schedules.apply`; without it the default store is looked
    up); ``dump_ir`` is a folder receiving the Relax module before/after fusion
    and the fusion report. ``winograd=False`` keeps CPU 3x3 stride-1 float32
    convolutions on the direct kernels (see :mod:`nnef_tvm.schedules.winograd`).
    """
    from .targets import get_target
    tgt = get_target(target, threads=threads, arch=arch)
    source_path = None
    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        source_path = os.fspath(model_or_path)
        _say(progress, f"reading {source_path}")
        model = _load(source_path, input_shapes, extensions=extensions,
                      realign_flat_quant=realign_flat_quant)
    else:
        source_path = getattr(model, "source", None)
    _say(progress, "converting to Relax")
    from .frontend import quantization_mode
    quant_used = quantization_mode(model, quantization)
    mod = _convert(model, input_shapes, fake_quantize=quant_used == "fake", extensions=extensions,
                   int8=quant_used == "int8")
    graph = model.graph
    inputs, outputs = io_specs(mod, graph)
    from .targets.fusion_report import origins_from_graph
    compiled = compile_relax(mod, tgt, inputs=inputs, outputs=outputs, source=source_path,
                         tuning_dir=tuning_dir, dump_ir=dump_ir, opt_level=opt_level,
                         origins=origins_from_graph(graph), progress=progress,
                         model_name=getattr(graph, "name", None), winograd=winograd)
    compiled.metadata["quantization"] = {"requested": quantization, "used": quant_used}
    if extensions:
        compiled.metadata["extensions"] = list(extensions)
    return compiled


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _load(path, input_shapes, extensions=(), realign_flat_quant=False):
    from . import load
    from .reader import loader  # noqa: F401  (the reader package must be present)
    kw = {}
    if extensions:
        kw["extensions"] = tuple(extensions)
    if realign_flat_quant:
        kw["realign_flat_quant"] = True
    if input_shapes and _accepts(loader.load, "input_shapes"):
        return load(path, input_shapes=input_shapes, **kw)
    return load(path, **kw)


def _convert(model, input_shapes, fake_quantize=False, extensions=(), int8=False):
    from . import frontend
    kw = {"fake_quantize": fake_quantize, "extensions": tuple(extensions)}
    if int8:
        kw["int8"] = True
    if input_shapes and _accepts(frontend.from_nnef, "input_shapes"):
        return frontend.from_nnef(model, input_shapes=input_shapes, **kw)
    if input_shapes:
        raise NNEFError("this frontend does not support --shape overrides yet")
    return frontend.from_nnef(model, **kw)


_NNEF_DTYPES = {"scalar": "float32", "integer": "int32", "logical": "bool"}


def io_specs(mod, graph=None, entry: str = "main") -> tuple[list[IOSpec], list[IOSpec]]:
    """Input/output descriptions from ``mod[entry]`` (+ names/quantization from ``graph``)."""
    from tvm import relax
    func = mod[entry]
    params = list(func.params)
    attrs = func.attrs if func.attrs is not None else {}
    in_names = list(graph.inputs) if graph is not None else [p.name for p in params]
    if "nnef_input_names" in attrs:            # the frontend's own record of the order
        in_names = [str(n) for n in attrs["nnef_input_names"]]
    if len(in_names) != len(params):
        in_names = [p.name for p in params]
    inputs = [_spec(name, p.ty, graph) for name, p in zip(in_names, params)]
    ret = func.ret_ty
    rets = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    out_names = list(graph.outputs) if graph is not None else []
    if "nnef_output_names" in attrs:
        out_names = [str(n) for n in attrs["nnef_output_names"]]
    if len(out_names) != len(rets):
        out_names = [f"output{i}" for i in range(len(rets))] if len(rets) > 1 else ["output"]
    outputs = [_spec(name, si, graph) for name, si in zip(out_names, rets)]
    return inputs, outputs


def _spec(name, ty, graph) -> IOSpec:
    shape = []
    sh = getattr(ty, "shape", None)
    if sh is not None and hasattr(sh, "values"):
        for d in sh.values:
            shape.append(int(d) if hasattr(d, "value") else str(d))
    dtype = str(getattr(ty, "dtype", "")) or None
    quant = None
    if graph is not None and name in graph.tensors:
        t = graph.tensors[name]
        quant = _jsonable(t.quantization) if t.quantization else None
        if not dtype:
            dtype = _NNEF_DTYPES.get(t.dtype, "float32")
    return IOSpec(name, shape, dtype or "float32", quant)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# -------------------------------------------------------------- Relax path
def compile_relax(mod, target="x86", *, inputs: Optional[list[IOSpec]] = None,
                  outputs: Optional[list[IOSpec]] = None, source: Optional[str] = None,
                  tuning_dir=None, dump_ir=None, opt_level: int = 3,
                  origins: Optional[dict] = None, progress: Progress = None,
                  model_name: Optional[str] = None, winograd: bool = True) -> CompiledModel:
    """Build a Relax IRModule (with a ``main``) for ``target`` -> CompiledModel.

    ``winograd``: CPU targets compute eligible 3x3 stride-1 float32 convolutions
    with Winograd F(4x4, 3x3) (:mod:`nnef_tvm.schedules.winograd`).
    """
    from .targets import get_target
    from .targets.fusion_report import fusion_report, format_report
    from .targets.pipeline import build_executable, build_phases, run_phases

    tgt = get_target(target)
    if inputs is None or outputs is None:
        d_in, d_out = io_specs(mod)
        inputs = inputs if inputs is not None else d_in
        outputs = outputs if outputs is not None else d_out
    tuning = _tuning(tgt, tuning_dir, progress)
    database = tuning.database if tuning is not None else None
    dump = _Dumper(dump_ir)
    dump.write("00_input", mod)
    snapshots = {}

    def on_phase(name, m):
        snapshots[name] = m
        _say(progress, f"{name} done")
        if name == "legalize":
            dump.write("01_before_fusion", m)
        elif name == "fuse_tir":
            dump.write("02_after_fusion", m)
            if tuning is not None:
                tuning.count(m, tgt)
                _say(progress, tuning.line())
        elif name == "schedule":
            dump.write("03_scheduled", m)

    _say(progress, f"optimizing for {tgt.name} ({_target_text(tgt)})")
    lowered = run_phases(mod, tgt, build_phases(tgt, database=database, winograd=winograd),
                         opt_level=opt_level, on_phase=on_phase)
    kernels = []
    if "legalize" in snapshots and "fuse" in snapshots:
        kernels = fusion_report(snapshots["legalize"], snapshots["fuse"], origins)
        dump.text("fusion_report.txt", format_report(kernels))
        dump.text("fusion_report.json", _json([asdict(k) for k in kernels]))
    tgt.check_codegen()
    _say(progress, "generating code")
    try:
        with tgt.build_context():
            executable = build_executable(lowered, tgt)
    except NNEFError:
        raise
    except Exception as e:  # TVM codegen failure on a valid model is a bug: keep the traceback
        raise RuntimeError(f"TVM code generation failed for target {tgt.name}: {e}") from e
    meta = build_metadata(tgt, inputs, outputs, source, model_name, kernels)
    if tuning is not None:
        meta["tuning"] = tuning.summary()
    _say(progress, "compiled")
    return CompiledModel(tgt, executable, meta, kernels, mod)


def build_metadata(tgt, inputs, outputs, source, model_name, kernels) -> dict:
    return {
        "format": artifact.FORMAT,
        "model": model_name,
        "entry": "main",
        "inputs": [asdict(s) for s in inputs],
        "outputs": [asdict(s) for s in outputs],
        "target": tgt.describe(),
        "device": tgt.device,
        "source": {"path": os.path.basename(source) if source else None,
                   "sha256": artifact.source_digest(source) if source else None},
        "versions": artifact.versions(),
        "kernels": [k.name for k in kernels],
    }


def _target_text(tgt) -> str:
    import json
    return json.dumps(tgt.tvm_target, separators=(",", ":"))


def _json(obj) -> str:
    import json
    return json.dumps(obj, indent=2) + "\n"


def _tuning(tgt, tuning_dir, progress):
    """Tuned schedules for ``tgt`` from ``tuning_dir`` or the default store (or None).

    Lookup and store layout belong to :mod:`nnef_tvm.schedules.apply`.
    """
    try:
        from .schedules.apply import tuning_for_compile
    except ImportError:                     # schedules package without tuning support
        if tuning_dir:
            raise NNEFError("this build of nnef-tvm cannot apply tuning records") from None
        return None
    return tuning_for_compile(tgt, tuning_dir, progress=progress)


class _Dumper:
    """Writes IR snapshots into the --dump-ir folder (no-op without one)."""

    def __init__(self, directory):
        self.dir = os.fspath(directory) if directory else None
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)

    def write(self, name, mod):
        if self.dir:
            self.text(f"{name}.relax.py", mod.script(show_meta=False))

    def text(self, name, content):
        if self.dir:
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(content)
