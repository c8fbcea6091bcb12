"""Run a real NNEF model through nnef-tvm and compare with an independent reference.

Shared by the model tests (``from models.zoo_runner import ...``; ``tests/`` is on
``sys.path`` via the top conftest). The path through our pipeline is the most
complete one that exists:

* ``nnef_tvm.compile(model, target='x86').run(inputs)`` once ``nnef_tvm.compiler``
  is there (the end-to-end path users take);
* otherwise ``nnef_tvm.from_nnef`` + ``relax.build`` for llvm + the Relax VM.

Quantized models (NNEF ``graph.quant``): NNEF tensors hold real values and the
quantization is a property of the tensor, so the real (dequantized) input is
fed; an output that comes back as float is re-quantized with the output's own
parameters before the comparison in quantization steps.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from typing import Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO, "scripts")


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def reader_missing() -> Optional[str]:
    """Why ``nnef_tvm.load`` cannot run in this checkout yet (None once it can).

    Only for pieces still being written (loader module, the standard-fragment file);
    once they are in the tree, any load failure is a real test failure.
    """
    if not has_module("nnef_tvm.reader.loader"):
        return "the reader's loader (nnef_tvm.load) is not in this checkout yet"
    from nnef_tvm.reader import stdlib
    if not stdlib.STDLIB_PATH.exists():
        return "the reader's standard-fragment file is not in this checkout yet"
    return None


def zoo_dir() -> str:
    """``$NNEF_TVM_ZOO``, else ``./zoo`` (cwd), else the repository's ``zoo/``."""
    env = os.environ.get("NNEF_TVM_ZOO")
    if env:
        return env
    return "zoo" if os.path.isdir("zoo") else os.path.join(REPO, "zoo")


def zoo_index() -> dict:
    path = os.path.join(zoo_dir(), "zoo.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run_cli_check(model_path: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``nnef-compile MODEL --check`` through the console entry point's function."""
    code = "import sys; from nnef_tvm.cli.compile import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, model_path, "--check"],
                          capture_output=True, text=True, timeout=timeout)


def _run_with_compiler(model, inputs: dict, **options) -> dict:
    import nnef_tvm
    compiled = nnef_tvm.compile(model, target="x86", **options)
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in compiled.run(inputs).items()}


def _run_with_frontend(model, inputs: dict, **options) -> dict:
    import tvm
    from tvm import relax

    import nnef_tvm
    mod = nnef_tvm.from_nnef(model, **options)
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(inputs[n])) for n in model.graph.inputs]
    result = vm["main"](*args)
    values = [result] if hasattr(result, "numpy") else list(result)
    return {name: v.numpy() for name, v in zip(model.graph.outputs, values)}


def run_model(model, inputs: dict, *, fake_quantize: bool = False) -> dict:
    """Outputs by NNEF output name for ``inputs`` by NNEF input name.

    ``fake_quantize``: simulate graph.quant (quantized models are compared in
    quantization steps, which real arithmetic does not reproduce). Used through
    ``nnef_tvm.compile`` (its ``quantization='fake'``) once it takes the option,
    else through the frontend.
    """
    options = {"fake_quantize": True} if fake_quantize else {}
    if has_module("nnef_tvm.compiler"):
        from nnef_tvm.compiler import compile_model
        params = inspect.signature(compile_model).parameters
        if "quantization" in params:          # 'fake' | 'none' (its 'auto' would pick the same)
            return _run_with_compiler(model, inputs, quantization="fake" if fake_quantize else "none")
        if not options or "fake_quantize" in params:
            return _run_with_compiler(model, inputs, **options)
    return _run_with_frontend(model, inputs, **options)


def dequantize(array: np.ndarray, q: dict) -> np.ndarray:
    return ((array.astype(np.float64) - q["zero_point"]) * q["scale"]).astype(np.float32)


def in_steps(out: np.ndarray, ref: np.ndarray, q: dict) -> float:
    """Largest difference in quantization steps between ``out`` (int or real) and int ``ref``."""
    if np.issubdtype(out.dtype, np.integer):
        got = out.astype(np.int64)
    else:
        info = np.iinfo(np.dtype(q["dtype"]))
        got = np.clip(np.round(out.astype(np.float64) / q["scale"]) + q["zero_point"], info.min, info.max)
    return float(np.max(np.abs(got - ref.astype(np.int64))))


def compare(outputs: dict, reference: dict, quantization: Optional[dict] = None,
            rel: float = 1e-4, steps: float = 1.0) -> list[str]:
    """Problems (empty when fine): float max abs error <= rel * max|ref|; quantized <= ``steps``."""
    problems = []
    for name, ref in reference.items():
        if name not in outputs:
            problems.append(f"{name}: missing from outputs {sorted(outputs)}")
            continue
        out = np.asarray(outputs[name])
        if out.shape != ref.shape:
            problems.append(f"{name}: shape {out.shape} != reference {ref.shape}")
            continue
        q = (quantization or {}).get(name)
        if q is not None:
            err = in_steps(out, ref, q)
            if not err <= steps:
                problems.append(f"{name}: {err} quantization steps off (allowed {steps})")
        else:
            err = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
            bound = rel * float(np.max(np.abs(ref)))
            if not err <= bound:
                problems.append(f"{name}: max abs error {err:.3g} > {bound:.3g} (= {rel} * max|ref|)")
    return problems


# ---- the checks one zoo entry goes through (shared by the big zoo and the committed fixtures)

def usable_entry(root: str, name: str, index: dict) -> dict:
    """The zoo.json entry of ``name``, or a pytest skip saying why there is no model."""
    import pytest
    if not index:
        pytest.skip(f"no zoo at {root!r}: build it with `python scripts/make_zoo.py zoo` "
                    "(or set NNEF_TVM_ZOO)")
    entry = index.get(name)
    if entry is None:
        pytest.skip(f"{name} is not in {root}/zoo.json (rebuild with make_zoo.py --models {name})")
    if entry["status"] not in ("ok", "converted-mismatch"):
        pytest.skip(f"{name} has no NNEF model: {entry['status']}: {entry.get('reason', '')[-300:]}")
    return entry


def need_reader() -> None:
    import pytest
    why = reader_missing()
    if why:
        pytest.skip(why)


def load_entry(root: str, name: str, entry: dict, cache: dict):
    """The loaded model (cached); skips when our reader rejects what the Khronos tools reject."""
    import pytest
    need_reader()
    import nnef_tvm
    if name not in cache:
        try:
            cache[name] = nnef_tvm.load(os.path.join(root, entry["nnef"]))
        except nnef_tvm.NNEFError as e:
            if entry.get("khronos_check", {}).get("ok", True):
                raise
            cache[name] = e
    if isinstance(cache[name], Exception):
        err = cache[name]
        assert err.pos is not None and err.pos.file, f"rejection without a location: {err}"
        pytest.skip(f"{name}: rejected like the Khronos tools do "
                    f"({entry['khronos_check'].get('error')}): {err}")
    return cache[name]


def check_interface(model, entry: dict) -> None:
    """Graph inputs/outputs, their shapes and the variables' data agree with the index."""
    graph = model.graph
    assert list(graph.inputs) == entry["input_order"]
    assert list(graph.outputs) == entry["output_order"]
    for key in ("inputs", "outputs"):
        for tname, info in entry[key].items():
            assert tuple(graph.tensors[tname].shape) == tuple(info["shape"]), tname
    for op in graph.operations:
        if op.name == "variable":
            t = graph.tensors[op.output_names()[0]]
            assert t.data is not None and tuple(t.data.shape) == tuple(t.shape), t.name


def check_reference(root: str, name: str, entry: dict, model) -> None:
    """Our outputs vs the source runtime (or NNEF-Tools' interpreter for a changed conversion)."""
    import pytest
    ref = np.load(os.path.join(root, entry["reference"]))
    quant = entry.get("quantization") or {}
    inputs = {t: dequantize(ref[t], quant[t]) if t in quant else ref[t] for t in entry["inputs"]}
    expected = {t: ref[t] for t in entry["outputs"]}
    if entry["status"] == "converted-mismatch":
        alt = os.path.join(root, name, "reference_nnef_tools.npz")
        if not os.path.isfile(alt):
            pytest.skip(f"{name}: the conversion changed the model and no NNEF-Tools reference was saved")
        expected = dict(np.load(alt))
        quant = {}   # NNEF-Tools' interpreter computes in real numbers
    outputs = run_model(model, inputs, fake_quantize=bool(quant))
    tol = entry.get("tolerance", {})
    rel = tol.get("value", 1e-4) if tol.get("kind") == "relative-max" else 1e-4
    steps = tol.get("value", 1) if tol.get("kind") == "lsb" else 1
    problems = compare(outputs, expected, quant, rel=rel, steps=steps)
    assert not problems, f"{name}: " + "; ".join(problems)
