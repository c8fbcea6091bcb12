"""Which NNEF operations ended up in which fused kernel.

The mechanism is a *name map*: the frontend names every Relax variable it emits
after the NNEF tensor it computes (``bb.emit(expr, name_hint=tensor)``; helper
values of a multi-step converter may add a suffix, ``<tensor>_<suffix>``).
Relax spans do not survive ``LegalizeOps`` in TVM 0.27, variable names do.
FuseOps keeps the names of the bindings it moves into a fused function except
the group's output (renamed ``gv``); that one is recovered by matching the
callee and argument names against the module before fusion.

A tensor name is traced back to the NNEF operation that produced it through
``origins`` ({tensor name: (op name, SourcePos or None)}), built from the Graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Kernel:
    name: str                                   # fused function / PrimFunc name
    tensors: list[str] = field(default_factory=list)
    ops: list[dict] = field(default_factory=list)   # {'op', 'tensor', 'pos'}
    primfuncs: list[str] = field(default_factory=list)   # legalized TIR functions, in order


def _bindings(func):
    from tvm import relax
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return []
    return [b for blk in body.blocks for b in blk.bindings]


def _callee_and_args(value):
    """(callee name, [arg var names]) for call_tir / direct calls, else (None, [])."""
    from tvm import relax
    if not isinstance(value, relax.Call):
        return None, []
    args = list(value.args)
    callee = None
    if isinstance(value.op, relax.GlobalVar):
        callee = value.op.name_hint
    elif getattr(value.op, "name", "") in ("relax.call_tir", "relax.call_tir_inplace"):
        callee = args[0].name_hint if isinstance(args[0], relax.GlobalVar) else None
        args = list(args[1].fields) if len(args) > 1 and isinstance(args[1], relax.Tuple) else []
    names = [a.name for a in args if isinstance(a, relax.Var)]
    return callee, names


def fusion_report(before, after, origins: Optional[dict] = None,
                  entry: str = "main") -> list[Kernel]:
    """Kernels of ``after`` (module after FuseOps) with the tensors/ops each contains.

    ``before`` is the module right before FuseOps (legalized).
    """
    from tvm import relax
    origins = origins or {}
    pre = _bindings(before[entry]) if entry in [g.name_hint for g in before.get_global_vars()] else []
    pre_names = [b.var.name for b in pre]
    # only names that exist before fusion can be compared (fused functions add
    # parameters such as 'param_0' for lifted constants)
    known = set(pre_names) | ({p.name for p in before[entry].params} if pre else set())
    by_call = {}
    for b in pre:
        callee, args = _callee_and_args(b.value)
        if callee is not None:
            by_call.setdefault((callee, tuple(a for a in args if a in known)), b.var.name)

    kernels: list[Kernel] = []
    post_main = after[entry]
    for b in _bindings(post_main):
        callee, _ = _callee_and_args(b.value)
        if callee is None:
            continue
        func = after[callee]
        if isinstance(func, relax.Function):          # a fused group
            k = Kernel(callee)
            rename = {}                               # inner var name -> tensor name
            for inner in _bindings(func):
                c, args = _callee_and_args(inner.value)
                args = tuple(a for a in (rename.get(a, a) for a in args) if a in known)
                name = by_call.get((c, args), inner.var.name)
                rename[inner.var.name] = name
                k.tensors.append(name)
                if c is not None:
                    k.primfuncs.append(c)
        else:                                         # a lone PrimFunc call in main
            k = Kernel(callee, _block_tensors(before, b.var.name), primfuncs=[callee])
        seen = set()
        for t in k.tensors:
            tensor = _lookup(t, origins)
            if tensor is not None and tensor not in seen:   # helper values join their tensor
                seen.add(tensor)
                op, pos = origins[tensor]
                k.ops.append({"op": op, "tensor": tensor, "pos": str(pos) if pos else None})
        kernels.append(k)
    return kernels


def _block_tensors(mod, name: str) -> list:
    """The values a lone call bound to ``name`` computes: several when a pattern
    rewrite fused them before FuseOps (:mod:`nnef_tvm.schedules.expand_depthwise`)."""
    from ..schedules.expand_depthwise import FUSED_TENSORS_ATTR
    attrs = mod.attrs
    if attrs is not None and FUSED_TENSORS_ATTR in attrs and name in attrs[FUSED_TENSORS_ATTR]:
        return [str(n) for n in attrs[FUSED_TENSORS_ATTR][name]]
    return [name]


def _lookup(name: str, origins: dict):
    """The NNEF tensor a Relax variable name stands for (or None)."""
    if name in origins:
        return name
    # helper values: '<tensor>_<suffix>' -> the longest known tensor prefix
    best = None
    for t in origins:
        if name.startswith(t + "_") and (best is None or len(t) > len(best)):
            best = t
    return best


def format_report(kernels: list[Kernel]) -> str:
    lines = [f"{len(kernels)} kernels"]
    for k in kernels:
        lines.append(f"{k.name}:")
        if not k.ops:
            lines.append(f"  (no NNEF names; TIR: {', '.join(k.primfuncs)}; "
                         f"values: {', '.join(k.tensors)})")
        for op in k.ops:
            where = f"  at {op['pos']}" if op["pos"] else ""
            lines.append(f"  {op['op']} -> {op['tensor']}{where}")
    return "\n".join(lines) + "\n"


def origins_from_graph(graph) -> dict:
    """{tensor name: (op name, pos)} for every output of every operation of a Graph."""
    out = {}
    for op in getattr(graph, "operations", []):
        pos = op.origin[0] if getattr(op, "origin", ()) else op.pos
        for name in op.output_names():
            out[name] = (op.name, pos)
    return out
