"""Shape functions of the ``tract`` extension set's operations (tract_core_* and the
reader's internal helpers): ``fn(op, shape_of) -> [output shapes]`` as the shape stage
expects for body-less fragments (see reader/shapes.py)."""
from __future__ import annotations

from ..errors import NNEFError


def _same_as_input(op, shape_of):
    return [shape_of(op.inputs[next(iter(op.inputs))])]


def _reduced(op, shape_of):
    shape = shape_of(op.inputs["input"])
    axes = {a + len(shape) if a < 0 else a for a in op.attribs["axes"]}
    for a in axes:
        if not 0 <= a < len(shape):
            raise NNEFError(f"'{op.name}': axis {a} out of range for rank {len(shape)}", op.pos)
    return [tuple(1 if i in axes else d for i, d in enumerate(shape))]


def _gather(op, shape_of):
    shape = shape_of(op.inputs["input"])
    idx = shape_of(op.inputs["indices"])
    axis = op.attribs["axis"]
    if axis < 0:
        axis += len(shape)
    if not 0 <= axis < len(shape):
        raise NNEFError(f"'tract_core_gather': axis {op.attribs['axis']} out of range for rank "
                        f"{len(shape)}", op.pos)
    return [tuple(shape[:axis]) + tuple(idx) + tuple(shape[axis + 1:])]


def _channel_bias(op, shape_of):
    """A flat ``[C]`` bias (tract) becomes NNEF's ``[1, C]``; any other shape is kept."""
    shape = tuple(shape_of(op.inputs["input"]))
    return [(1,) + shape if len(shape) == 1 else shape]


def _literal_input(op, name):
    v = op.inputs[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise NNEFError(f"'{op.name}': '{name}' must be a literal number (nnef-tvm needs static "
                        f"shapes), got {v!r}", op.pos)
    return v


def _range(op, shape_of):
    """[start, start + step, ...) below ``end`` (above it for a negative step)."""
    import math
    start, end, step = (_literal_input(op, n) for n in ("start", "end", "step"))
    if step == 0:
        raise NNEFError(f"'{op.name}': step must not be 0", op.pos)
    n = max(0, math.ceil((end - start) / step))
    if n == 0:
        raise NNEFError(f"'{op.name}': empty range [{start}, {end}) step {step}", op.pos)
    return [(n,)]


def _one_hot(op, shape_of):
    """input shape with ``dim`` inserted at ``axis`` (axis counts in the output's rank)."""
    shape = tuple(shape_of(op.inputs["input"]))
    axis, dim = op.attribs["axis"], op.attribs["dim"]
    if axis < 0:
        axis += len(shape) + 1
    if not 0 <= axis <= len(shape) or dim < 1:
        raise NNEFError(f"'{op.name}': axis {op.attribs['axis']} / dim {dim} invalid for input "
                        f"rank {len(shape)}", op.pos)
    return [shape[:axis] + (dim,) + shape[axis:]]


def _topk(op, shape_of):
    shape = list(shape_of(op.inputs["input"]))
    k = _literal_input(op, "k")
    axis = op.attribs["axis"] + (len(shape) if op.attribs["axis"] < 0 else 0)
    if not 0 <= axis < len(shape) or not 1 <= k <= shape[axis]:
        raise NNEFError(f"'{op.name}': k = {k} / axis {op.attribs['axis']} invalid for shape "
                        f"{tuple(shape)}", op.pos)
    shape[axis] = int(k)
    return [tuple(shape), tuple(shape)]


def einsum_parts(expr: str, n_inputs: int, pos=None):
    """Split an explicit einsum ``expr`` ('ij,kj->ik') into input and output label strings."""
    if "->" not in expr or "." in expr:
        raise NNEFError(f"tract_core_einsum: expected an explicit expression 'ab,bc->ac' without "
                        f"ellipsis, got {expr!r}", pos)
    lhs, out = expr.replace(" ", "").split("->")
    ins = lhs.split(",")
    if len(ins) != n_inputs:
        raise NNEFError(f"tract_core_einsum: {expr!r} names {len(ins)} inputs, {n_inputs} given", pos)
    return ins, out


def _einsum(op, shape_of):
    shapes = [tuple(s) for s in shape_of(op.inputs["inputs"])]
    ins, out = einsum_parts(op.attribs["expr"], len(shapes), op.pos)
    extent = {}
    for labels, shape in zip(ins, shapes):
        if len(labels) != len(shape):
            raise NNEFError(f"tract_core_einsum: '{labels}' does not match input shape {shape}", op.pos)
        for c, d in zip(labels, shape):
            if extent.setdefault(c, d) != d and 1 not in (d, extent[c]):
                raise NNEFError(f"tract_core_einsum: label '{c}' has extents {extent[c]} and {d}",
                                op.pos)
            extent[c] = max(extent[c], d)
    if any(c not in extent for c in out):
        raise NNEFError(f"tract_core_einsum: output label not in the inputs: {op.attribs['expr']!r}",
                        op.pos)
    return [tuple(extent[c] for c in out)]


def _deconv_filter(op, shape_of):
    """tract's [C_out, C_in/G, k...] deconv filter as NNEF's [C_in, C_out/G, k...]."""
    shape = tuple(shape_of(op.inputs["input"]))
    g = op.attribs["groups"]
    if g < 1 or len(shape) < 2 or shape[0] % g:
        raise NNEFError(f"deconv (tract): groups = {g} does not divide the filter's output "
                        f"channels {shape[0] if shape else '?'} (groups = 0 is not supported)", op.pos)
    return [(g * shape[1], shape[0] // g) + shape[2:]]


def _sdpa(op, shape_of):
    """q [.., L, D], k [.., S, D], v [.., S, Dv] -> [.., L, Dv] (leading axes broadcast)."""
    q, k, v = (tuple(shape_of(op.inputs[n])) for n in ("q", "k", "v"))
    if not (len(q) == len(k) == len(v) >= 2) or q[-1] != k[-1] or k[-2] != v[-2]:
        raise NNEFError(f"'{op.name}': q {q}, k {k}, v {v} do not fit [.., L, D], [.., S, D], "
                        f"[.., S, Dv]", op.pos)
    lead = tuple(max(a, b, c) for a, b, c in zip(q[:-2], k[:-2], v[:-2]))
    return [lead + (q[-2], v[-1])]


def _resize(op, shape_of):
    """Output extents from ``sizes``, else floor(extent * scale) per axis (torch's rule)."""
    import math
    shape = tuple(shape_of(op.inputs["input"]))
    sizes, scales = list(op.attribs.get("sizes") or []), list(op.attribs.get("scales") or [])
    if sizes:
        out = tuple(int(v) for v in sizes)
    elif scales:
        out = tuple(int(math.floor(d * float(s))) for d, s in zip(shape, scales))
    else:
        raise NNEFError(f"'{op.name}': needs 'scales' or 'sizes' (constant values)", op.pos)
    if len(out) != len(shape) or min(out) < 1:
        raise NNEFError(f"'{op.name}': output shape {out} does not fit input shape {shape}", op.pos)
    return [out]


def _broadcast(op, shape_of):
    """numpy-style (right-aligned) broadcast of ``input`` against ``shape``, as tract does."""
    a = tuple(shape_of(op.inputs["input"]))
    b = tuple(int(d) for d in op.attribs["shape"])
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise NNEFError(f"'tract_core_broadcast': input shape {a} cannot broadcast to {b}", op.pos)
        out.append(max(x, y))
    return [tuple(out)]


UNARY = ("erf", "round_even", "hard_swish", "tan", "acos", "asin", "atan", "cosh", "sinh", "acosh", "asinh",
         "atanh")


SHAPES = {
    **{f"tract_core_{n}": _same_as_input for n in UNARY},
    "tract_core_broadcast": _broadcast,
    "tract_core_range": _range,
    "tract_core_resize": _resize,
    "tract_core_log_softmax": _same_as_input,
    "tract_transformers_sdpa": _sdpa,
    "tract_core_shape_of": lambda op, shape_of: [(len(shape_of(op.inputs["input"])),)],
    "tract_core_trilu": _same_as_input,
    "tract_core_one_hot": _one_hot,
    "tract_core_topk": _topk,
    "tract_core_einsum": _einsum,
    "tract_nnef_tvm_channel_bias": _channel_bias,
    "tract_nnef_tvm_deconv_filter": _deconv_filter,
    "tract_core_cast": _same_as_input,
    "tract_core_gather": _gather,
    "tract_core_product_reduce": _reduced,
    "tract_core_argmax_reduce_last": _reduced,
    "tract_core_argmin_reduce_last": _reduced,
}
