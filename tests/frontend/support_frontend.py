"""Shared helpers for frontend tests: NNEF text -> our Graph -> Relax -> llvm -> numbers.

Usage (any frontend test; ``tests/`` is on ``sys.path`` via conftest)::

    from frontend.support_frontend import run_nnef, graph_of

    outs = run_nnef(TEXT, {"x": x}, variables={"w": w})   # list of numpy arrays

Graphs come from the Khronos parser (a test oracle) via ``support.khronos``
until our own reader is complete. Keep compile counts down: put several ops in
one graph and check all its outputs. ``relax.build`` on llvm.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nnef_tvm.frontend import from_nnef
from support.khronos import khronos_graph

TARGET = "llvm"


def graph_of(text: str, variables: dict | None = None, **kw):
    """Parse ``text`` (Khronos oracle), infer shapes, attach variable data by tensor name."""
    g = khronos_graph(text, **kw)
    for name, data in (variables or {}).items():
        g.tensors[name].data = np.asarray(data)
    return g


def build(mod):
    """Compile a Relax module for llvm and return its VirtualMachine."""
    ex = relax.build(mod, target=TARGET)
    return relax.VirtualMachine(ex, tvm.cpu())


def to_numpy(result):
    """VM result -> list of numpy arrays (always a list)."""
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [r.numpy() for r in result]


def run_module(mod, args):
    vm = build(mod)
    return to_numpy(vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]))


def run_graph(graph, inputs: dict, **from_nnef_kw):
    """Convert ``graph``, build it, run it on ``inputs`` (by name, graph order)."""
    mod = from_nnef(graph, **from_nnef_kw)
    params = {}
    if isinstance(mod, tuple):
        mod, params = mod
    args = [inputs[n] for n in graph.inputs] + list(params.values())
    return run_module(mod, args)


def run_nnef(text: str, inputs: dict, variables: dict | None = None, **from_nnef_kw):
    """Everything at once: text -> outputs (list of numpy arrays, graph output order)."""
    return run_graph(graph_of(text, variables), inputs, **from_nnef_kw)


def rand(shape, seed=0, low=-2.0, high=2.0, dtype="float32"):
    """Deterministic uniform random array."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype(dtype)


def graph_text(inputs: dict, body: str, outputs, version="1.0", extensions=""):
    """Build a flat NNEF document: ``inputs`` maps name -> shape (or (shape, type)).

    ``outputs`` is a list of output names; ``body`` the statements after the externals.
    """
    decl = []
    for name, spec in inputs.items():
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str):
            shape, typ = spec
            decl.append(f"    {name} = external<{typ}>(shape = {list(shape)});")
        else:
            decl.append(f"    {name} = external(shape = {list(spec)});")
    ext = f"extension {extensions};\n" if extensions else ""
    return (f"version {version};\n{ext}graph G( {', '.join(inputs)} ) -> ( {', '.join(outputs)} )\n"
            "{\n" + "\n".join(decl) + "\n" + body + "\n}\n")


def ensure_stdlib() -> bool:
    """Make the reader's standard-fragment prelude available; True when it is.

    Until ``nnef_tvm/reader/stdlib.nnef`` is committed, write an equivalent prelude
    from the shared ops.json (signatures + compound bodies) to a per-process temp
    file and point the reader at it (test-only fallback, as the reader tests do).
    """
    import json
    import os
    import pathlib
    import tempfile

    from nnef_tvm.reader import stdlib

    if stdlib.STDLIB_PATH.exists():
        return True
    ops_json = pathlib.Path("/work/shared/nnef/ops.json")
    if not ops_json.exists():
        return False
    ops = json.loads(ops_json.read_text())["operations"]
    lines = ["version 1.0;",
             "extension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;"]
    for o in ops:
        body = o.get("body")
        lines.append(o["signature"] + (f"\n{{\n{body}\n}}" if o["kind"] == "compound" and body else ";"))
    path = pathlib.Path(tempfile.gettempdir()) / f"nnef_tvm_frontend_stdlib_{os.getpid()}.nnef"
    path.write_text("\n".join(lines) + "\n")
    stdlib.STDLIB_PATH = path
    stdlib.standard_fragments.cache_clear()
    return True
