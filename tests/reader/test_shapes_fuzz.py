"""Robustness: random operands and attributes for every standard op never crash inference.

Operations are generated from the signatures in ``ops.json`` with random operand
shapes (or literals) and random, often nonsensical, attribute values: wrong-length
padding/stride arrays, negative or huge axes, zero strides, odd strings, values of
the wrong type. Shape inference must either succeed with positive extents or raise
an NNEFError naming the operation; an IndexError/KeyError/TypeError/ZeroDivisionError
is a bug (user text must never produce a traceback).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader.graph import Graph, Identifier, Operation, Tensor
from nnef_tvm.reader.shapes import infer_shapes

OPS_JSON = Path("/work/shared/nnef/ops.json")
if not OPS_JSON.exists():
    OPS_JSON = Path(__file__).resolve().parents[2] / "shared" / "nnef" / "ops.json"
SIGNATURES = {op["name"]: op for op in json.loads(OPS_JSON.read_text())["operations"]}
STRINGS = ["constant", "ignore", "replicate", "reflect", "reflect-even", "symmetric",
           "asymmetric", "aligned", "", "bogus"]
JUNK = ["junk", None, 1.5, [1, "a"], [(1, 2, 3)], [[1]], True, {"a": 1}]
TRIALS = 120


class Builder:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ops: list[Operation] = []
        self.tensors: list[str] = []
        self.like: tuple[int, ...] | None = None  # a "main" shape that other operands often follow

    def shape(self):
        rng = self.rng
        if self.like is not None and rng.random() < 0.5:
            s = list(self.like)
            if s and rng.random() < 0.5:
                s[rng.randrange(len(s))] = rng.randint(1, 6)
            return s
        return [rng.randint(1, 6) for _ in range(rng.choice([0, 1, 2, 2, 3, 4, 4, 5]))]

    def tensor(self, dtype):
        if self.rng.random() < 0.1:
            return {"scalar": 1.5, "integer": 2, "logical": True}.get(dtype, 0.5)
        name = f"t{len(self.tensors)}"
        shape = self.shape()
        if self.like is None:
            self.like = tuple(shape)
        self.tensors.append(name)
        self.ops.append(Operation("external", outputs={"output": Identifier(name)},
                                  attribs={"shape": shape}))
        return Identifier(name)

    def integer(self):
        return self.rng.choice([-3, -1, 0, 0, 1, 1, 1, 2, 2, 3, 4, 7, 100])

    def attribute(self, type_):
        rng = self.rng
        if rng.random() < 0.03:
            return rng.choice(JUNK)
        n = rng.choice([0, 1, 2, 3, 4, 4, 5, 6]) if self.like is None or rng.random() < 0.5 \
            else len(self.like) - rng.choice([0, 0, 2])
        n = max(n, 0)
        if type_ == "integer":
            return self.integer()
        if type_ == "scalar":
            return rng.uniform(-2, 2)
        if type_ == "logical":
            return rng.random() < 0.5
        if type_ == "string":
            return rng.choice(STRINGS)
        if type_ == "integer[]":
            return [self.integer() for _ in range(n)]
        if type_.replace(" ", "") == "(integer,integer)[]":
            return [(rng.randint(-2, 3), rng.randint(-2, 3)) for _ in range(n)]
        if type_ == "?[]":
            return [rng.uniform(-1, 1) for _ in range(rng.choice([1, 1, 2, 6, 24]))]
        raise AssertionError(f"unhandled attribute type {type_}")


def random_graph(name: str, rng: random.Random) -> Graph:
    sig = SIGNATURES[name]
    b = Builder(rng)
    inputs, attribs = {}, {}
    for p in sig["params"]:
        t = p["type"]
        if t.startswith("tensor"):
            dtype = t[t.index("<") + 1:t.index(">")] or "scalar"
            if t.endswith("[]"):
                inputs[p["name"]] = [b.tensor(dtype) for _ in range(rng.choice([0, 1, 2, 3]))]
            else:
                inputs[p["name"]] = b.tensor(dtype)
        elif p["has_default"] and rng.random() < 0.3:
            attribs[p["name"]] = p["default"] if not isinstance(p["default"], list) else list(p["default"])
        else:
            attribs[p["name"]] = b.attribute(t)
    outputs = {}
    for i, r in enumerate(sig["results"]):
        if r["type"].endswith("[]"):
            outputs[r["name"]] = [Identifier(f"r{i}_{k}") for k in range(rng.choice([0, 1, 2, 3, 4]))]
            b.tensors += [str(x) for x in outputs[r["name"]]]
        else:
            outputs[r["name"]] = Identifier(f"r{i}")
            b.tensors.append(f"r{i}")
    b.ops.append(Operation(name, inputs=inputs, outputs=outputs, attribs=attribs))
    return Graph(name="G", inputs=[], outputs=[], operations=b.ops,
                 tensors={n: Tensor(n) for n in b.tensors})


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_random_operands_and_attributes_never_crash(name):
    rng = random.Random(f"shapes-fuzz-{name}")
    outcomes = {"ok": 0, "error": 0}
    for _ in range(TRIALS):
        g = random_graph(name, rng)
        try:
            infer_shapes(g)
        except NNEFError as e:
            assert e.message.startswith(f"{name}:") or e.message.startswith("external:"), e.message
            outcomes["error"] += 1
            continue
        for t in g.tensors.values():
            assert isinstance(t.shape, tuple) and all(isinstance(e, int) and e > 0 for e in t.shape), (name, t)
        outcomes["ok"] += 1
    # the generator must reach the error paths of every op that has any (not the unary ones)
    params = SIGNATURES[name]["params"]
    can_fail = sum(p["kind"] == "tensor" for p in params) > 1 or any(
        p["kind"] == "attribute" and p["type"] not in ("scalar", "logical") for p in params)
    assert outcomes["error"] > 0 or not can_fail, outcomes
