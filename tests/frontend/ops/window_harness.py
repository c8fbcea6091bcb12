"""Batch many small NNEF cases into ONE graph, compile once, compare every output.

Each ``relax.build`` costs about a second on the test machine, so the sliding-window
tests put all cases of a family into a single graph. A case names its tensors with
``{placeholders}``; the harness suffixes them with the case number so they stay unique.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from frontend.support_frontend import graph_of, run_graph


@dataclass
class Case:
    """``body`` uses ``{name}`` for every input and output; ``want`` is in ``outputs`` order."""

    inputs: dict
    body: str
    outputs: list
    want: list
    rtol: float = 1e-5
    atol: float = 1e-5
    label: str = ""
    ints: set = field(default_factory=set)


def _nnef_shape(a):
    return list(a.shape) if a.ndim else [1]


def run_cases(cases: list[Case], our_shapes: bool = False, target: str | None = None):
    """Convert, build and run all cases as one graph; assert every output.

    ``our_shapes``: infer shapes with nnef_tvm's own shape inference instead of the
    Khronos one (needed where Khronos is wrong, e.g. ``sample``'s index shape, O3); the
    result shapes are still checked against the numpy reference.
    ``target``: compile with ``nnef_tvm.compile`` for that target (the real pipeline:
    fusion + schedules) instead of a plain ``relax.build``.
    """
    externals, stmts, out_names, feeds = [], [], [], {}
    for k, c in enumerate(cases):
        names = {n: f"{n}{k}" for n in list(c.inputs) + list(c.outputs)}
        for n, a in c.inputs.items():
            typ = "integer" if np.issubdtype(np.asarray(a).dtype, np.integer) else "scalar"
            externals.append(f"    {names[n]} = external<{typ}>(shape = {_nnef_shape(np.asarray(a))});")
            feeds[names[n]] = np.asarray(a, dtype="int32" if typ == "integer" else "float32")
        stmts.append("    " + c.body.format(**names))
        out_names += [names[o] for o in c.outputs]
    text = ("version 1.0;\n"
            f"graph G( {', '.join(feeds)} ) -> ( {', '.join(out_names)} )\n{{\n"
            + "\n".join(externals) + "\n" + "\n".join(stmts) + "\n}\n")
    if our_shapes:
        from nnef_tvm.reader.shapes import infer_shapes
        graph = graph_of(text, infer_shapes=False)
        infer_shapes(graph)
    else:
        graph = graph_of(text)
    if target is None:
        got = run_graph(graph, feeds)
    else:
        import nnef_tvm
        from nnef_tvm.reader.graph import Model
        results = nnef_tvm.compile(Model(graph=graph), target=target).run(feeds)
        got = [np.asarray(results[name]) for name in out_names]
    i = 0
    failures = []
    for k, c in enumerate(cases):
        for o, want in zip(c.outputs, c.want):
            g = got[i]
            i += 1
            try:
                assert tuple(g.shape) == tuple(np.shape(want)), f"shape {g.shape} != {np.shape(want)}"
                np.testing.assert_allclose(g, want, rtol=c.rtol, atol=c.atol)
            except AssertionError as e:
                failures.append(f"case {k} {c.label!r} output {o}: {c.body}\n{e}")
    assert not failures, "\n\n".join(failures)
