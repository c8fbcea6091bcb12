"""Fusion pattern ``expand_depthwise``: a 1x1 expansion and the 3x3 depthwise conv after it, one kernel.

MobileNet-style inverted residual blocks compute

    e = act1(conv1x1(x, W1) + b1)              # Cin -> Cm channels, Cm = 4-6 x Cin
    y = act2(depthwise3x3(e, W2, stride) + b2)  # Cm channels, padding 1

where ``e`` is the block's largest tensor (MobileNetV2: 96 x 112 x 112 floats,
4.8 MB). Run as two kernels, ``e`` is written out by the first and read back by
the second; at 112x112 and 56x56 it does not fit the cores' L2, so it makes a
round trip through L3, which on the development host costs about as much as
the arithmetic. Relax's FuseOps never fuses two convolutions, so this module
rewrites the pattern itself (a Relax pass, before legalization) into one
``call_tir`` of a hand-written kernel:

* parallel tasks are groups of :data:`GROUP` expanded channels (the depthwise
  conv needs nothing from other channels, so no work is repeated);
* a task computes its channels of ``e`` row by row, ``FI`` channels x one
  row in vector registers (the input row is broadcast-multiplied by one weight
  per channel), and writes each finished row, with bias and activation, into a
  zero-bordered padded plane of its own (stored by column phase when the
  depthwise conv has stride 2, so its loads stay contiguous, as in
  :mod:`.conv_spatial_cpu`);
* then it runs the depthwise conv over those planes, a row of outputs in
  registers at a time; the group's planes (8 channels: 100-420 KB) stay in L2.

Numerics: each output sums its products in the same order as the unfused
kernels (``k`` ascending for the expansion, the window row-major), so results
match them to the rounding of each kernel.

Measured (2 threads, AVX-512, fused kernel vs our two default kernels, paired
runs, MobileNetV2's shapes): 16->96 @112 stride 2 0.77x, 24->144 @56 stride 1
0.74x, stride 2 0.92x, 32->192 @28 stride 1 0.93x, stride 2 0.91x. Smaller
maps (14x14, 7x7) are left to the per-kernel rules: their expanded tensors fit
L2 already and a row is less than a vector.

Only for float32, batch 1, targets with 16-lane vectors (AVX-512): the
register tile is sized for 32 vector registers.
"""
from __future__ import annotations

import math
from typing import Optional

# Expanded channels per parallel task.
GROUP = 8
# Smallest output-map width the pattern takes (see the module docstring).
MIN_WIDTH = 28
RULE_NAME = "expand_depthwise"
# IRModule attribute: {result variable name: [names of the values the fused call computes]}
# (read by :mod:`nnef_tvm.targets.fusion_report`)
FUSED_TENSORS_ATTR = "nnef.fused_block_tensors"


def register_tile_channels(width: int) -> int:
    """Channels per register tile of the expansion: about 14-16 vectors of 16 floats."""
    if width >= 112:
        return 2
    if width >= 56:
        return 4
    return 8


def _act_bounds(lo: Optional[float], hi: Optional[float]):
    return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))


def expand_depthwise_kernel(cin: int, cm: int, height: int, width: int, stride: int,
                            act1=(0.0, 6.0), act2=(0.0, 6.0), group: int = GROUP):
    """The fused kernel as a scheduled PrimFunc.

    Parameters ``(X [1, cin, H, W], W1 [cm, cin], B1 [cm], W2 [cm, 3, 3], B2 [cm],
    Y [1, cm, OH, OW])``; ``act1`` / ``act2``: ``(lo, hi)`` clamp bounds
    (``-inf`` / ``inf`` for none: relu is ``(0, inf)``).
    """
    from tvm.script import tirx as T

    H, W, S, G = height, width, stride, group
    OH = (H - 1) // S + 1
    OW = (W - 1) // S + 1
    FI = min(register_tile_channels(W), G)
    if cm % G or G % FI or S not in (1, 2) or (S == 2 and (W % 2 or H % 2)):
        raise ValueError("unsupported expand_depthwise shape")
    NG = cm // G
    # row vectors: whole 16-lane vectors, then a 1..16-lane tail (a single
    # 56- or 112-lane TIR vector is split by LLVM without keeping it in registers)
    NV, TAIL = (W - 1) // 16, W - 16 * ((W - 1) // 16)
    OV, OT = (OW - 1) // 16, OW - 16 * ((OW - 1) // 16)
    lo1, hi1 = (T.float32(v) for v in _act_bounds(*act1))
    lo2, hi2 = (T.float32(v) for v in _act_bounds(*act2))
    f32 = "float32"

    PW = (W + 2 + S - 1) // S           # padded columns per phase (one phase when S = 1)

    # The padded plane is stored by column phase: padded column p is [p % S, p // S], so
    # the depthwise conv's loads at stride S are contiguous (with S = 1: [0, p]).
    @T.prim_func(s_tir=True)
    def kernel(X: T.Buffer((1, cin, H, W), f32), W1: T.Buffer((cm, cin), f32),
               B1: T.Buffer((cm,), f32), W2: T.Buffer((cm, 3, 3), f32),
               B2: T.Buffer((cm,), f32), Y: T.Buffer((1, cm, OH, OW), f32)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for g in T.parallel(NG):
            with T.sblock("task"):
                vg = T.axis.spatial(NG, g)
                P = T.sblock_alloc_buffer((G, H + 2, S, PW), f32)
                acc = T.sblock_alloc_buffer((FI, W), f32)
                dacc = T.sblock_alloc_buffer((OW,), f32)
                # zero border: first and last rows, first and last padded columns
                for c in range(G):
                    for ph in range(S):
                        for j in T.vectorized(PW):
                            P[c, 0, ph, j] = T.float32(0)
                            P[c, H + 1, ph, j] = T.float32(0)
                    for y in range(H + 2):
                        P[c, y, 0, 0] = T.float32(0)
                        P[c, y, (W + 1) % S, (W + 1) // S] = T.float32(0)
                for co in range(G // FI):
                    for y in range(H):
                        for ci in T.unroll(FI):
                            for xo in T.unroll(NV):
                                for xi in T.vectorized(16):
                                    acc[ci, xo * 16 + xi] = T.float32(0)
                            for xt in T.vectorized(TAIL):
                                acc[ci, NV * 16 + xt] = T.float32(0)
                        for k in range(cin):
                            for ci in T.unroll(FI):
                                for xo in T.unroll(NV):
                                    for xi in T.vectorized(16):
                                        acc[ci, xo * 16 + xi] = acc[ci, xo * 16 + xi] + \
                                            X[0, k, y, xo * 16 + xi] * W1[vg * G + co * FI + ci, k]
                                for xt in T.vectorized(TAIL):
                                    acc[ci, NV * 16 + xt] = acc[ci, NV * 16 + xt] + \
                                        X[0, k, y, NV * 16 + xt] * W1[vg * G + co * FI + ci, k]
                        for ci in T.unroll(FI):
                            if S == 2:      # resolved when the script is parsed
                                # column x is padded column x + 1: even x -> phase 1, odd -> phase 0
                                for j in T.vectorized(W // 2):
                                    P[co * FI + ci, y + 1, 1, j] = T.min(T.max(
                                        acc[ci, 2 * j] + B1[vg * G + co * FI + ci], lo1), hi1)
                                for j in T.vectorized(W // 2):
                                    P[co * FI + ci, y + 1, 0, j + 1] = T.min(T.max(
                                        acc[ci, 2 * j + 1] + B1[vg * G + co * FI + ci], lo1), hi1)
                            else:
                                for xo in T.unroll(NV):
                                    for xi in T.vectorized(16):
                                        P[co * FI + ci, y + 1, 0, xo * 16 + xi + 1] = T.min(T.max(
                                            acc[ci, xo * 16 + xi] + B1[vg * G + co * FI + ci],
                                            lo1), hi1)
                                for xt in T.vectorized(TAIL):
                                    P[co * FI + ci, y + 1, 0, NV * 16 + xt + 1] = T.min(T.max(
                                        acc[ci, NV * 16 + xt] + B1[vg * G + co * FI + ci], lo1), hi1)
                for c in range(G):
                    for oy in range(OH):
                        for oo in T.unroll(OV):
                            for oi in T.vectorized(16):
                                dacc[oo * 16 + oi] = T.float32(0)
                        for ot in T.vectorized(OT):
                            dacc[OV * 16 + ot] = T.float32(0)
                        for ry in T.unroll(3):
                            for rx in T.unroll(3):
                                for oo in T.unroll(OV):
                                    for oi in T.vectorized(16):
                                        dacc[oo * 16 + oi] = dacc[oo * 16 + oi] + \
                                            P[c, oy * S + ry, rx % S, oo * 16 + oi + rx // S] * \
                                            W2[vg * G + c, ry, rx]
                                for ot in T.vectorized(OT):
                                    dacc[OV * 16 + ot] = dacc[OV * 16 + ot] + \
                                        P[c, oy * S + ry, rx % S, OV * 16 + ot + rx // S] * \
                                        W2[vg * G + c, ry, rx]
                        for oo in T.unroll(OV):
                            for oi in T.vectorized(16):
                                Y[0, vg * G + c, oy, oo * 16 + oi] = T.min(T.max(
                                    dacc[oo * 16 + oi] + B2[vg * G + c], lo2), hi2)
                        for ot in T.vectorized(OT):
                            Y[0, vg * G + c, oy, OV * 16 + ot] = T.min(T.max(
                                dacc[OV * 16 + ot] + B2[vg * G + c], lo2), hi2)
    return kernel


# --- the Relax rewrite -------------------------------------------------------

def _pattern():
    """(root pattern, named sub-patterns) of conv1x1 + bias + act -> dwconv3x3 + bias + act."""
    from tvm.relax.dpl import is_const, is_op, wildcard
    p = {"x": wildcard(), "w1": is_const(), "b1": is_const(), "w2": is_const(), "b2": is_const()}
    p["conv1"] = is_op("relax.nn.conv2d")(p["x"], p["w1"])
    p["add1"] = is_op("relax.add")(p["conv1"], p["b1"])
    p["act1"] = is_op("relax.clip")(p["add1"], wildcard(), wildcard()) | is_op("relax.nn.relu")(p["add1"])
    p["conv2"] = is_op("relax.nn.conv2d")(p["act1"], p["w2"])
    p["add2"] = is_op("relax.add")(p["conv2"], p["b2"])
    p["act2"] = is_op("relax.clip")(p["add2"], wildcard(), wildcard()) | is_op("relax.nn.relu")(p["add2"])
    return p["act2"], p


def _static_shape(expr) -> Optional[tuple]:
    sinfo = getattr(expr, "ty", None) or getattr(expr, "struct_info", None)
    shape = getattr(sinfo, "shape", None)
    if shape is None or getattr(sinfo, "dtype", None) != "float32":
        return None
    try:
        return tuple(int(d) for d in shape)
    except TypeError:
        return None


def _act_of(call) -> Optional[tuple]:
    """(lo, hi) of a clip / relu call, None for anything else."""
    name = call.op.name
    if name == "relax.nn.relu":
        return 0.0, math.inf
    if name == "relax.clip":
        def bound(arg):         # a PrimExpr (FloatImm) or a PrimValue holding one
            arg = getattr(arg, "value", arg)
            return float(getattr(arg, "value", arg))
        try:
            return bound(call.args[1]), bound(call.args[2])
        except (AttributeError, TypeError, ValueError):
            return None
    return None


def _ints(values) -> list:
    return [int(v) for v in values]


def match_block(m: dict, p: dict) -> Optional[dict]:
    """The fused kernel's parameters for one match, or None when the rule does not apply."""
    conv1, conv2 = m[p["conv1"]], m[p["conv2"]]
    a1, a2 = conv1.attrs, conv2.attrs
    xs = _static_shape(m[p["x"]])
    es = _static_shape(conv1)
    ys = _static_shape(conv2)
    if xs is None or es is None or ys is None or len(xs) != 4 or xs[0] != 1:
        return None
    for a in (a1, a2):
        if a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or a.out_layout != "NCHW" \
                or _ints(a.dilation) != [1, 1] or (a.out_dtype and a.out_dtype != "float32"):
            return None
    _, cin, h, w = xs
    cm = es[1]
    strides = _ints(a2.strides)
    # the shape conditions first: most blocks of a model fail them, and those
    # should not pay for copying their weights out
    if cm % GROUP or w < MIN_WIDTH or (strides[0] == 2 and (h % 2 or w % 2)):
        return None
    w1 = m[p["w1"]].value.numpy()
    w2 = m[p["w2"]].value.numpy()
    b1 = m[p["b1"]].value.numpy()
    b2 = m[p["b2"]].value.numpy()
    if int(a1.groups) != 1 or _ints(a1.strides) != [1, 1] or _ints(a1.padding) != [0, 0, 0, 0] \
            or w1.shape != (cm, cin, 1, 1):
        return None
    if int(a2.groups) != cm or w2.shape != (cm, 1, 3, 3) or _ints(a2.padding) != [1, 1, 1, 1] \
            or strides[0] != strides[1] or strides[0] not in (1, 2):
        return None
    s = strides[0]
    if b1.size != cm or b2.size != cm or b1.shape not in ((cm,), (1, cm, 1, 1)) \
            or b2.shape not in ((cm,), (1, cm, 1, 1)):
        return None
    act1, act2 = _act_of(m[p["act1"]]), _act_of(m[p["act2"]])
    if act1 is None or act2 is None:
        return None
    import numpy as np
    return {"cin": cin, "cm": cm, "h": h, "w": w, "stride": s, "act1": act1, "act2": act2,
            "w1": np.ascontiguousarray(w1.reshape(cm, cin)), "b1": b1.reshape(cm),
            "w2": np.ascontiguousarray(w2.reshape(cm, 3, 3)), "b2": b2.reshape(cm),
            "out_shape": ys}


def _use_counts(func) -> dict:
    """How many times each Relax variable of ``func`` is read."""
    from tvm import relax
    counts: dict = {}

    @relax.expr_functor.visitor
    class _Count(relax.PyExprVisitor):
        def visit_var_(self, var):
            counts[var] = counts.get(var, 0) + 1

        def visit_dataflow_var_(self, var):
            counts[var] = counts.get(var, 0) + 1

    _Count().visit_expr(func)
    return counts


def fuse_expand_depthwise(lanes: int):
    """Module pass: rewrite every eligible expansion + depthwise pair into one kernel.

    A no-op unless ``lanes`` is 16 (float32 lanes of the target's vectors).
    Run it after ``FoldConstant`` (the biases must be constants) and before
    legalization.
    """
    import tvm
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    @tvm.transform.module_pass(opt_level=0, name="NNEFFuseExpandDepthwise")
    def _pass(mod, _ctx):
        if lanes != 16:
            return mod
        root, p = _pattern()
        builder = relax.BlockBuilder(mod)     # add_func gives the kernels typed GlobalVars
        kernels: dict = {}
        fused_tensors: dict = {}              # call's result name -> the tensors it computes
        updates = {}
        for gv, func in mod.functions.items():
            if not isinstance(func, relax.Function):
                continue
            counts = _use_counts(func)
            bound = {}
            body = func.body
            if isinstance(body, relax.SeqExpr):
                for block in body.blocks:
                    for b in block.bindings:
                        if isinstance(b, relax.VarBinding):
                            bound[b.value] = b.var

            def used_once(expr):
                var = bound.get(expr)
                return var is None or counts.get(var, 0) == 1

            def rewriter(orig, m):
                # every intermediate result must feed only the next step
                if not all(used_once(m[p[k]]) for k in ("conv1", "add1", "act1", "conv2", "add2")):
                    return orig
                spec = match_block(m, p)
                if spec is None:
                    return orig
                key = (spec["cin"], spec["cm"], spec["h"], spec["w"], spec["stride"],
                       spec["act1"], spec["act2"])
                if key not in kernels:
                    name = f"fused_expand_dwconv{len(kernels)}"
                    prim = expand_depthwise_kernel(spec["cin"], spec["cm"], spec["h"], spec["w"],
                                                   spec["stride"], spec["act1"], spec["act2"])
                    prim = prim.with_attr("global_symbol", name).with_attr(
                        "nnef.schedule_rule", RULE_NAME)
                    kernels[key] = builder.add_func(prim, name)
                kgv = kernels[key]
                root_var = bound.get(orig)
                if root_var is not None:
                    fused_tensors[root_var.name] = [
                        bound[m[p[k]]].name for k in ("conv1", "add1", "act1", "conv2", "add2")
                        if m[p[k]] in bound] + [root_var.name]
                args = [m[p["x"]]] + [relax.const(spec[k]) for k in ("w1", "b1", "w2", "b2")]
                return relax.call_tir(kgv, args,
                                      relax.TensorType(spec["out_shape"], "float32"))

            new = rewrite_call(root, rewriter, func)
            if not new.same_as(func):
                updates[gv] = new
        if not kernels:                       # nothing rewritten (a function may still
            return mod                        # come back as a new, equal object)
        out = builder.get()
        for gv, new in updates.items():
            out[gv] = new
        # for the fusion report: which Relax values (NNEF tensors) each call computes
        known = dict(out.attrs[FUSED_TENSORS_ATTR]) if out.attrs is not None \
            and FUSED_TENSORS_ATTR in out.attrs else {}
        known.update(fused_tensors)
        return out.with_attr(FUSED_TENSORS_ATTR, known)
    return _pass
