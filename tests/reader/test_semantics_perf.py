"""Performance of the semantic layer on a 10,000-operation flat document (parse time excluded).

The requirement is "well under 0.5 s" for build_graph on a typical desktop CPU. The
machines running the tests are shared and their speed varies a lot, so the test
measures CPU time (``time.process_time``) and compares it with a fixed amount of
plain Python work measured the same way (a 10-million-iteration loop in a
function, about 0.3-0.5 s on current CPUs): build_graph must stay below 1.5x that
reference (a margin for CPU contention on shared machines, which still catches
any 2x regression). Measured on the (slow, shared) development machine:
build_graph 0.30-0.44 s CPU, reference 0.50-0.60 s (ratio 0.55-0.85).
"""
from __future__ import annotations

import time

from nnef_tvm.errors import SourcePos
from nnef_tvm.reader import ast, semantics
import pytest
from support.timing import reference_seconds



def flat_document(n_ops: int) -> ast.Document:
    """A flat conv/relu/add/max_pool chain built directly as a syntax tree (no parser needed)."""
    def P(line, col=1):
        return SourcePos("big.nnef", line, col)

    def lit(v, kind, line):
        return ast.Literal(v, kind, P(line, 9))

    def ints(vals, line):
        return ast.ArrayExpr([lit(v, "integer", line) for v in vals], P(line, 9))

    def call(op, line, *args, **named):
        a = [ast.Argument(x, None, P(line, 5)) for x in args]
        a += [ast.Argument(v, k, P(line, 6)) for k, v in named.items()]
        return ast.Invocation(op, a, None, P(line, 4))

    body = [ast.Assignment(ast.Name("x", P(3)), call("external", 3, shape=ints([1, 8, 16, 16], 3)), P(3)),
            ast.Assignment(ast.Name("w", P(4)), call("variable", 4, shape=ints([8, 8, 3, 3], 4),
                                                     label=lit("w", "string", 4)), P(4))]
    prev = "x"
    for i in range(n_ops - 3):
        line = 5 + i
        src = ast.Name(prev, P(line, 10))
        k = i % 4
        if k == 0:
            pad = ast.ArrayExpr([ast.TupleExpr([lit(1, "integer", line), lit(1, "integer", line)], P(line))] * 2,
                                P(line))
            rhs = call("conv", line, src, ast.Name("w", P(line, 12)), lit(0.0, "scalar", line),
                       padding=pad, stride=ints([1, 1], line))
        elif k == 1:
            rhs = call("relu", line, src)
        elif k == 2:
            rhs = call("add", line, src, lit(1.0, "scalar", line))
        else:
            rhs = call("max_pool", line, src, size=ints([1, 1, 3, 3], line), stride=ints([1, 1, 1, 1], line),
                       border=lit("ignore", "string", line))
        prev = f"t{i}"
        body.append(ast.Assignment(ast.Name(prev, P(line)), rhs, P(line)))
    line = 5 + n_ops
    body.append(ast.Assignment(ast.Name("y", P(line)), call("copy", line, ast.Name(prev, P(line, 10))), P(line)))
    graph = ast.GraphDef("G", [ast.Name("x", P(2))], [ast.Name("y", P(2))], body, P(2))
    return ast.Document((1, 0), [], [], graph, "big.nnef", P(1))


@pytest.mark.slow   # a timing guard: kept out of the default run (no timing asserts there)
def test_build_graph_10k_operations_is_fast():
    doc = flat_document(10_000)
    semantics.standard_signatures()          # stdlib parsed and checked once per process
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        g, _ = semantics.build_graph(doc)
        best = min(best, time.process_time() - t)
    ref = min(reference_seconds() for _ in range(2))
    assert len(g.operations) == 10_000
    assert g.operations[-1].outputs == {"y": "y"}
    print(f"build_graph(10k ops): {best:.3f} s; reference loop: {ref:.3f} s; ratio {best / ref:.2f}")
    assert best < 1.5 * ref, (best, ref)
