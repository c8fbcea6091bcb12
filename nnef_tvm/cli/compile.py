"""``nnef-compile``: check an NNEF model, or compile it into one shared library.

    nnef-compile MODEL --check
    nnef-compile MODEL --target NAME [-o model.so] [--shape NAME=1,3,224,224]
                 [--tuning-dir DIR] [--dump-ir DIR] [--verify]
    nnef-compile --list-targets

``--check`` validates the model with the reader only (no TVM import) and prints a
summary. ``--verify`` reloads the written library and, when the target runs on
this machine, compares it on random inputs with an independent NNEF runtime
(NNEF-Tools' interpreter or tract, when installed), else with an unfused
generic-CPU build of the same Relax module (and says so).
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Optional, Sequence

from ..errors import NNEFError
from .common import (ArgumentParser, UsageError, describe_shape, parse_shape, positive_int,
                     run_main)

PROG = "nnef-compile"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Compile a Khronos NNEF model with Apache TVM.")
    p.add_argument("model", nargs="?", help="model: folder, .tgz/.tar/.zip, or graph.nnef")
    p.add_argument("--check", action="store_true",
                   help="validate the model (no TVM) and print a summary")
    p.add_argument("--target", "-t", default="x86",
                   help="target name (see --list-targets) or a TVM target JSON")
    p.add_argument("-o", "--output", help="library to write (default: <model>.so)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="fix the shape of an external input (repeatable)")
    p.add_argument("--tuning-dir", help="MetaSchedule database folder to apply")
    p.add_argument("--dump-ir", metavar="DIR",
                   help="write the Relax module before/after fusion and a fusion report")
    p.add_argument("--verify", action="store_true",
                   help="run the library on random inputs and compare it with an independent "
                        "NNEF runtime (NNEF-Tools interpreter or tract, if installed), "
                        "else with an unfused TVM build")
    p.add_argument("--list-targets", action="store_true", help="list the named targets")
    p.add_argument("--threads", type=positive_int, help="CPU threads (CPU targets)")
    p.add_argument("--arch", help="GPU architecture, e.g. sm_80 (cuda)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(0, 4), metavar="{0..3}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--quantization", choices=("auto", "fake", "int8", "none"), default="auto",
                   help="graph.quant: auto (int8 when every conv/linear/matmul qualifies, else "
                        "fake, when present), fake (simulate in float), int8 (fake, with "
                        "conv/linear/matmul on integer codes), none (real arithmetic); recorded "
                        "in the library's metadata")
    p.add_argument("--realign-flat-quant", action="store_true",
                   help="lenient graph.quant: re-align NNEF-Tools' flat [C] per-channel arrays "
                        "to the one axis of extent C (warns per entry)")
    p.add_argument("--no-winograd", action="store_true",
                   help="CPU targets: keep 3x3 stride-1 float32 convolutions on the direct "
                        "kernels instead of Winograd F(4x4,3x3) / F(2x2,3x3) (which round "
                        "slightly differently: a few 1e-6 relative; compiling takes longer)")
    p.add_argument("--extensions", default="", metavar="SET[,SET...]",
                   help="opt-in non-Khronos extension sets, e.g. 'tract' for tract / "
                        "torch-to-nnef documents (tract_core_* operations)")
    return p


def _extension_sets(args) -> tuple:
    names = tuple(n.strip() for n in (getattr(args, "extensions", "") or "").split(",") if n.strip())
    from ..reader.extensions import SETS
    for n in names:
        if n not in SETS:
            raise UsageError(f"--extensions: unknown extension set '{n}' (known: "
                             f"{', '.join(sorted(SETS))})")
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(PROG, _run, build_parser(), argv)


def _run(args) -> int:
    if args.list_targets:
        return _list_targets()
    if not args.model:
        raise UsageError("the following arguments are required: MODEL")
    if args.check:
        return _check(args.model, _extension_sets(args))
    return _compile(args)


# ------------------------------------------------------------------ targets
def _list_targets() -> int:
    from ..targets import get_target, known_targets
    for name, desc in known_targets().items():
        missing = get_target(name).available()
        state = "ready" if not missing else "missing: " + "; ".join(missing)
        print(f"{name:16s} {desc}\n{'':16s} [{state}]")
    print(f"{'{JSON}':16s} a raw TVM target, e.g. '{{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}}'")
    return 0


# -------------------------------------------------------------------- check
def _check(path: str, extensions: tuple = ()) -> int:
    from .. import load
    model = load(path, extensions=extensions) if extensions else load(path)
    print(summary(model))
    return 0


def summary(model) -> str:
    """Inputs, outputs with shapes, op histogram and parameter bytes of a loaded model."""
    g = model.graph
    lines = [f"graph {g.name}: OK"]

    def tensor_line(name):
        t = g.tensors.get(name)
        shape = describe_shape(t.shape if t else None)
        dtype = t.dtype if t else "?"
        quant = f"  quantized: {t.quantization.get('op-name', t.quantization)}" \
            if t is not None and t.quantization else ""
        return f"  {name}: {dtype}{shape}{quant}"
    lines.append(f"inputs ({len(g.inputs)}):")
    lines += [tensor_line(n) for n in g.inputs]
    lines.append(f"outputs ({len(g.outputs)}):")
    lines += [tensor_line(n) for n in g.outputs]
    hist = Counter(op.name for op in g.operations)
    lines.append(f"operations ({sum(hist.values())}):")
    for name, count in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {name:24s} {count}")
    nbytes = model.parameter_bytes()
    nvars = sum(1 for t in g.tensors.values() if t.data is not None)
    lines.append(f"parameters: {nvars} tensors, {nbytes} bytes ({_human(nbytes)})")
    return "\n".join(lines)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


# ------------------------------------------------------------------ compile
def _default_output(model: str) -> str:
    base = os.path.basename(os.path.normpath(model))
    for ext in (".tgz", ".tar.gz", ".tar", ".zip", ".nnef"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return (base or "model") + ".so"


def _compile(args) -> int:
    from ..compiler import compile_model, stderr_progress
    from ..targets import get_target
    shapes = dict(parse_shape(s) for s in args.shape)
    target = get_target(args.target, threads=args.threads, arch=args.arch)
    missing = target.available()
    if missing:
        raise NNEFError(f"target '{target.name}' cannot be built here: " + "; ".join(missing))
    progress = None if args.quiet else stderr_progress(PROG)
    out = args.output or _default_output(args.model)
    compiled = compile_model(args.model, target, input_shapes=shapes or None,
                             tuning_dir=args.tuning_dir, dump_ir=args.dump_ir,
                             opt_level=args.opt_level, progress=progress,
                             quantization=args.quantization,
                             realign_flat_quant=args.realign_flat_quant,
                             extensions=_extension_sets(args),
                             winograd=not args.no_winograd)
    compiled.export(out, progress=progress)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, target {target.name}, "
          f"{len(compiled.kernels)} kernels)")
    notice = (compiled.metadata.get("tuning") or {}).get("notice")
    if notice:       # stale records: said on stdout too (also with -q)
        print(f"tuning: {notice}")
    if args.verify:
        print(verify(compiled, out, model_path=args.model))
    return 0


def verify(compiled, path: str, *, model_path: Optional[str] = None, seed: int = 0,
           rtol: float = 1e-4, atol: float = 1e-5) -> str:
    """Check the library at ``path``; raise NNEFError on a mismatch, else a report line.

    The library runs on random inputs and is compared with an independent NNEF
    runtime when one is installed (NNEF-Tools' PyTorch interpreter, tract: code
    that shares nothing with TVM) and the model is a folder; otherwise with an
    unfused generic-CPU TVM build of the same module, and the line says so.
    """
    from ..artifact import read_metadata
    meta = read_metadata(path)
    if meta != compiled.metadata:
        raise NNEFError("embedded metadata does not match the compiled model", file=path)
    if not compiled.target.runs_locally:
        return (f"verify: metadata OK; numeric check skipped (target '{compiled.target.name}' "
                "does not run on this machine)")
    import numpy as np
    from ..runtime import load, random_input
    rng = np.random.default_rng(seed)
    inputs = {s["name"]: random_input(rng, s) for s in compiled.inputs}
    got = load(path, compiled.target.device).run(inputs)
    peer, want, why = independent_outputs(compiled, model_path, inputs)
    if peer is None:
        want, what = reference_outputs(compiled, inputs), "an unfused generic-CPU TVM build"
    else:
        what = f"{peer}, an independent NNEF runtime"
    worst = 0.0
    for name, ref in want.items():
        out = got[name]
        if out.shape != ref.shape:
            raise NNEFError(f"verify: output '{name}' has shape {list(out.shape)}, "
                            f"{what} gives {list(ref.shape)}", file=path)
        if np.issubdtype(ref.dtype, np.floating) or np.issubdtype(out.dtype, np.floating):
            diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
            if diff.size and not np.allclose(out, ref, rtol=rtol, atol=atol, equal_nan=True):
                raise NNEFError(f"verify: output '{name}' differs from {what} "
                                f"(max abs diff {float(np.nanmax(diff)):.3g})", file=path)
            if diff.size:
                worst = max(worst, float(np.nanmax(diff)))
        elif not np.array_equal(out, ref):
            raise NNEFError(f"verify: output '{name}' differs from {what}", file=path)
    line = f"verify: OK ({len(want)} outputs match {what}; max abs diff {worst:.3g})"
    return line if peer is not None else f"{line}\n  no independent reference: {why}"


def independent_outputs(compiled, model_path: Optional[str], inputs: dict):
    """``(runtime name, outputs, None)`` from an independent NNEF runtime, or ``(None, None, why)``.

    Tries the comparison runtimes of ``nnef-bench`` that read NNEF directly (all
    optional installs); graph.quant simulation and non-folder models rule them out.
    """
    import tempfile
    import warnings

    import numpy as np
    used = (compiled.metadata.get("quantization") or {}).get("used")
    if used not in (None, "none"):
        return None, None, f"quantization '{used}' is simulated, which other runtimes do not do"
    if not model_path or not os.path.isdir(model_path):
        return None, None, "independent runtimes read a model folder"
    from ..bench.peers import get_peer
    order = [s["name"] for s in compiled.outputs]
    notes = []
    for name in ("nnef-interpreter", "tract"):
        peer = get_peer(name)
        missing = peer.missing()
        if missing:
            notes.append(f"{name}: {missing}")
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="nnef-verify-") as work, \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")       # third-party deprecation noise
                job = dict(peer.prepare(model_path, work), output_order=order)
                outs = peer.load(job, None)([inputs[s["name"]] for s in compiled.inputs])
            return name, {n: np.asarray(o) for n, o in zip(order, outs)}, None
        except Exception as e:  # an optional third-party runtime that cannot run this model
            notes.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
    return None, None, "; ".join(notes)


def reference_outputs(compiled, inputs) -> dict:
    """Outputs of the same Relax module built without fusion for a generic CPU."""
    import tvm
    from tvm import relax
    from ..runtime import LoadedModel
    ex = relax.build(compiled.relax_module, tvm.target.Target({"kind": "llvm"}),
                     relax_pipeline="default")
    return LoadedModel(ex.jit(), tvm.cpu(), compiled.metadata).run(inputs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
