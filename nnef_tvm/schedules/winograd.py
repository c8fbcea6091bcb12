"""Winograd F(m x m, 3 x 3) convolution: transform matrices, eligibility, legalization, TE kernel.

Why: a stride-1 3x3 convolution spends 9 multiply-adds per output per input
channel. Winograd's minimal filtering computes an ``m x m`` output tile from
an ``alpha x alpha`` input tile (``alpha = m + 2``) with ``alpha^2``
element-wise products per input channel: F(4x4, 3x3) needs 36 / 16 = 2.25
multiplies per output (4x fewer), F(2x2, 3x3) 16 / 4 = 4. Summed over input
channels the element-wise products become ``alpha^2`` independent matrix
products (``M[e] = U[e] x V[e]``, K = input channels), which run at the
machine's FMA peak like any GEMM. The NNEF semantics (``conv`` with zero
border, stride 1, dilation 1, one group) are kept exactly; only the float32
rounding differs (see :func:`transform_matrices` for the measured error).

The algorithm (Lavin & Gray's form of Toom-Cook): for 1-D correlation
``y_i = sum_k g_k d_{i+k}`` of an ``alpha``-long input with 3 taps,
``y = A^T [(G g) * (B^T d)]``; in 2-D
``Y = A^T [(G g G^T) * (B^T d B)] A``. The matrices are derived in
:func:`transform_matrices` from ``alpha - 1`` finite interpolation points
plus the point at infinity.

Which tile: :func:`choose_tile` (F(4, 3) from 28x28 maps, F(2, 3) for
14x14 .. 24x24, smaller maps stay direct: the transformed weights, 4x resp.
1.8x the direct kernel's, must be paid back by enough tiles; measured table
there). Float32 error vs a float64 reference, relative to max |reference|:
F(4, 3) a few 1e-6 (6.6e-6 at 64 channels), F(2, 3) about 5x smaller; the
direct kernels' is ~3e-7. ResNet-18's logits move by < 1e-5.

The kernel (:func:`winograd_conv2d_te`, one TE compute = one ``call_tir``)
keeps NCHW input and output; blocks (all named ``winograd_*``):

* ``winograd_pad``     zero-padded input covering every tile (plus one column group);
* ``winograd_in_rows`` ``B^T`` applied along tile rows, over whole padded rows
                       (unit stride, no per-tile duplication of columns), stored
                       de-interleaved by column phase ``[.., q, k]`` = column ``k*m + q``;
* ``winograd_input``   ``V[n, ty, e1, e2, c, tx]`` (``B^T`` along columns, each
                       operand a contiguous run over ``tx``);
* ``winograd_gemm``    ``M[n, ty, e1, e2, tx, co] = sum_c V[.., c, tx] U[e1, e2, c, co]``;
* ``winograd_out_rows`` ``A^T`` applied along ``e1``;
* ``winograd_output``  ``Y[n, co, h, w]`` (``A^T`` along ``e2``), cropped to H x W.

The transforms are written as explicit sums over the *nonzero* matrix
entries, selected by the transform index (``Select``): once a schedule
unrolls that index every coefficient is an immediate and the zeros are gone.
The weight transform ``U = G g G^T`` is done at compile time in float64
(the weight must be a bound constant) and stored as ``U[e1, e2, c, co]``,
output channels contiguous: the vectors the GEMM's micro-kernel loads (no
schedule re-packs it). The PrimFunc carries ``op_pattern`` 4 (out-elementwise
fusable, what TVM gives conv2d), so FuseOps still fuses bias / residual /
activation consumers into it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

BLOCK_PREFIX = "winograd_"
# output tile sizes the kernel supports; interpolation points per m
POINTS = {2: (0.0, 1.0, -1.0), 4: (0.0, 1.0, -1.0, 2.0, -2.0),
          6: (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)}
TAPS = 3


# ------------------------------------------------------------------ matrices
def _poly_from_roots(roots) -> np.ndarray:
    """Coefficients (lowest degree first) of prod (x - r)."""
    coef = np.array([1.0])
    for r in roots:
        coef = np.convolve(coef, np.array([-r, 1.0]))
    return coef


@lru_cache(maxsize=None)
def _matrices(m: int):
    pts = POINTS[m]
    r = TAPS
    alpha = m + r - 1
    n = len(pts)                          # finite points; the last row/column is infinity
    assert n == alpha - 1
    at = np.zeros((m, alpha))
    g = np.zeros((alpha, r))
    bt = np.zeros((alpha, alpha))
    for j, a in enumerate(pts):
        others = [b for b in pts if b != a]
        f = float(np.prod([a - b for b in others]))
        at[:, j] = [a ** i for i in range(m)]
        g[j, :] = [a ** k / f for k in range(r)]
        # Lagrange numerator prod_{q != j} (x - a_q): the dual basis of the Vandermonde
        # rows, so sum_j a_j^p * bt[j, l] / f_j == [p == l] for p, l < alpha - 1
        bt[j, :n] = _poly_from_roots(others)
    at[m - 1, alpha - 1] = 1.0
    g[alpha - 1, r - 1] = 1.0
    # the point at infinity carries the leading coefficient: the full M(x) = prod (x - a_q)
    full = _poly_from_roots(pts)          # degree n = alpha - 1
    bt[alpha - 1, :] = full
    # the finite rows' last column follows from the identity (a linear solve)
    _fix_last_column(at, g, bt)
    return at, g, bt


def _fix_last_column(at, g, bt):
    """Solve the finite rows' last column of ``bt`` from the bilinear identity.

    The identity ``sum_j at[i, j] g[j, k] bt[j, l] == [l == i + k]`` is linear
    in ``bt``'s last column (all other entries are fixed by the construction
    above): a small least-squares problem in float64 with an exact solution
    for Lagrange's points (checked: the residual is asserted below 1e-12).
    """
    m, alpha = at.shape
    r = g.shape[1]
    n = alpha - 1
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            l = alpha - 1
            target = 1.0 if l == i + k else 0.0
            known = at[i, n] * g[n, k] * bt[n, l]
            rows.append([at[i, j] * g[j, k] for j in range(n)])
            rhs.append(target - known)
    sol, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    bt[:n, alpha - 1] = np.round(sol, 12)
    err = np.abs(np.einsum("ij,jk,jl->ikl", at, g, bt) - _shift_identity(m, r, alpha)).max()
    assert err < 1e-12, f"Winograd F({m},{r}) matrices do not satisfy the identity ({err})"


def _shift_identity(m, r, alpha):
    out = np.zeros((m, r, alpha))
    for i in range(m):
        for k in range(r):
            out[i, k, i + k] = 1.0
    return out


def transform_matrices(m: int):
    """``(A^T, G, B^T)`` of F(m, 3) in float64 (copies).

    ``A^T`` is ``m x alpha``, ``G`` ``alpha x 3``, ``B^T`` ``alpha x alpha``.
    Points: F(2, 3) 0, 1, -1, inf; F(4, 3) 0, +-1, +-2, inf; F(6, 3) adds +-1/2.
    """
    if m not in POINTS:
        raise ValueError(f"Winograd output tile m={m}: supported {sorted(POINTS)}")
    return tuple(x.copy() for x in _matrices(m))


def transform_weight(weight: np.ndarray, m: int) -> np.ndarray:
    """``U[e1, e2, c, co] = (G g[co, c] G^T)[e1, e2]`` in float64, cast to float32."""
    _, g, _ = _matrices(m)
    w = np.asarray(weight, dtype=np.float64)            # [Co, Ci, 3, 3]
    u = np.einsum("ak,oikl,bl->abio", g, w, g)
    return np.ascontiguousarray(u.astype(np.float32))


# ------------------------------------------------------------------ TE kernel
def _terms(row: np.ndarray):
    """Nonzero (index, coefficient) pairs of one matrix row."""
    return [(j, float(c)) for j, c in enumerate(row) if c != 0.0]


def _weighted_sum(terms, load, dtype):
    """sum coefficient * load(index) with 1 / -1 as plain adds / subtracts."""
    from tvm import tirx
    acc = None
    for j, c in terms:
        v = load(j)
        if c == 1.0:
            t, neg = v, False
        elif c == -1.0:
            t, neg = v, True
        elif c < 0:
            t, neg = v * tirx.const(-c, dtype), True
        else:
            t, neg = v * tirx.const(c, dtype), False
        if acc is None:
            acc = -t if neg else t
        else:
            acc = acc - t if neg else acc + t
    return acc if acc is not None else tirx.const(0.0, dtype)


def _select_rows(index, matrix, load, dtype):
    """``sum_j matrix[index, j] * load(j)`` for a loop variable ``index`` (Select tree)."""
    from tvm import tirx
    expr = _weighted_sum(_terms(matrix[-1]), load, dtype)
    for i in range(matrix.shape[0] - 2, -1, -1):
        expr = tirx.Select(index == i, _weighted_sum(_terms(matrix[i]), load, dtype), expr)
    return expr


def tile_counts(out_h: int, out_w: int, m: int):
    return math.ceil(out_h / m), math.ceil(out_w / m)


def winograd_conv2d_te(data, u, m: int, pad_top: int, pad_left: int, out_h: int, out_w: int):
    """The Winograd kernel as TE: NCHW ``data``, ``u`` = :func:`transform_weight`'s layout."""
    from tvm import te, tirx
    at, _, bt = _matrices(m)
    alpha = m + TAPS - 1
    dtype = data.dtype
    n_, c_, h_, w_ = [int(d) for d in data.shape]
    co_ = int(u.shape[3])
    th, tw = tile_counts(out_h, out_w, m)
    # padded columns: whole groups of m (the row stage reads column k*m + q), one group
    # beyond the last tile so that tile tx's columns tx*m .. tx*m + m + 1 exist
    kw = tw + 1
    hp, wp = th * m + TAPS - 1, kw * m
    zero = tirx.const(0.0, dtype)

    def i64(*dims):          # relax shapes are int64: the buffers must match them in FuseTIR
        return tuple(tirx.const(int(d), "int64") for d in dims)

    def pad_value(n, c, y, x):
        yy, xx = y - pad_top, x - pad_left
        inside = tirx.all(yy >= 0, yy < h_, xx >= 0, xx < w_)
        return tirx.if_then_else(inside, data[n, c, yy, xx], zero)
    dpad = te.compute(i64(n_, c_, hp, wp), pad_value, name="winograd_pad")
    # B^T along tile rows, over whole padded rows, stored de-interleaved by column
    # phase: rows[.., q, k] holds column k*m + q, so the column transform below reads
    # each of its alpha operands as a contiguous run over the tiles (tx + r // m)
    rows = te.compute(
        i64(n_, th, alpha, c_, m, kw),
        lambda n, ty, e1, c, q, kx: _select_rows(
            e1, bt, lambda r: dpad[n, c, ty * m + r, kx * m + q], dtype),
        name="winograd_in_rows")
    v = te.compute(
        i64(n_, th, alpha, alpha, c_, tw),
        lambda n, ty, e1, e2, c, tx: _select_rows(
            e2, bt, lambda r: rows[n, ty, e1, c, r % m, tx + r // m], dtype),
        name="winograd_input")
    k = te.reduce_axis((tirx.const(0, "int64"), tirx.const(c_, "int64")), name="c")
    mm = te.compute(
        i64(n_, th, alpha, alpha, tw, co_),
        lambda n, ty, e1, e2, tx, co: te.sum(v[n, ty, e1, e2, k, tx] * u[e1, e2, k, co],
                                             axis=k),
        name="winograd_gemm")
    z = te.compute(
        i64(n_, th, m, alpha, tw, co_),
        lambda n, ty, i, e2, tx, co: _select_rows(
            i, at, lambda e1: mm[n, ty, e1, e2, tx, co], dtype),
        name="winograd_out_rows")
    y = te.compute(
        i64(n_, co_, out_h, out_w),
        lambda n, co, h, w: _select_rows(
            w % m, at, lambda e2: z[n, h // m, h % m, e2, w // m, co], dtype),
        name="winograd_output")
    return y


# ------------------------------------------------------------------ eligibility
def _ints(arr):
    return [int(x) for x in arr]


def _static_shape(expr):
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    out = []
    for d in shape.values:
        if not hasattr(d, "value"):
            return None
        out.append(int(d.value))
    return out


def _dtype(expr) -> str:
    return str(getattr(getattr(expr, "ty", None), "dtype", ""))


def _constant_of(bb, expr):
    """The relax.Constant ``expr`` is (or is bound to in ``bb``), else None."""
    from tvm import relax
    from tvm.ir.expr import Constant        # TVM 0.27: relax constants are ir Constants
    seen = 0
    while isinstance(expr, relax.Var) and seen < 4:
        try:
            bound = bb.lookup_binding(expr)
        except Exception:
            return None
        if bound is None:
            return None
        expr, seen = bound, seen + 1
    return expr if isinstance(expr, Constant) else None


# The transformed weights U are alpha^2 * Ci * Co * 4 bytes (F(4,3): 4x, F(2,3):
# 1.8x the direct kernel's), streamed from memory once per tile-row block; a map
# needs enough tiles to pay for that traffic and for the transforms. Measured
# (1 thread, AVX-512, conv + bias + residual + relu, direct vs Winograd):
#   64 @56   1.47-1.56 ms vs F(4,3) 0.95
#   128 @28  1.45 vs F(4,3) 0.71-0.75, F(2,3) 1.05
#   256 @14  1.59 vs F(4,3) 1.09 (16 tiles of which 12.25 used), F(2,3) 1.00
#   512 @7   1.78 vs F(2,3) 1.68 (16 tiles, 16.8 MB of U: memory bound), F(4,3) 2.82
#   8 ->32 @28  0.057 vs 0.044;  16 ->16 @56  0.147 vs 0.132
#   3 ->64 @56  0.159 vs 0.344 (K = 3: the transforms are not amortised)
MIN_TILES = 36
MIN_CHANNELS = 8


def choose_tile(out_h: int, out_w: int, cin: int, cout: int):
    """The output tile ``m`` for a convolution of this size, or None (stay direct).

    F(4, 3) when the map has at least :data:`MIN_TILES` 4x4 tiles (28x28 and
    larger), else F(2, 3) when it has that many 2x2 tiles (14x14 .. 24x24),
    else None (7x7 maps stay direct; see the measurements above). Fewer than
    :data:`MIN_CHANNELS` input or output channels stay direct too (an RGB
    input layer: the transforms cost more than the GEMM saves).
    """
    if min(cin, cout) < MIN_CHANNELS:
        return None
    for m in (4, 2):
        th, tw = tile_counts(out_h, out_w, m)
        if th * tw >= MIN_TILES:
            return m
    return None


def conv_plan(bb, call, m=None):
    """``(data, weight array, m, pads, out_h, out_w)`` when ``call`` is eligible, else None."""
    attrs = call.attrs
    data, weight = call.args[0], call.args[1]
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW":
        return None
    if str(attrs.out_layout) not in ("NCHW", ""):
        return None
    if str(attrs.out_dtype) not in ("", "None", "float32"):
        return None
    if _dtype(data) != "float32" or _dtype(weight) != "float32":
        return None
    if _ints(attrs.strides) != [1, 1] or _ints(attrs.dilation) != [1, 1] or int(attrs.groups) != 1:
        return None
    dshape, wshape = _static_shape(data), _static_shape(weight)
    if dshape is None or wshape is None or len(dshape) != 4 or len(wshape) != 4:
        return None
    if wshape[2:] != [3, 3] or wshape[1] != dshape[1]:
        return None
    pads = _ints(attrs.padding)
    if len(pads) == 2:
        pads = pads * 2
    if len(pads) != 4 or min(pads) < 0:
        return None
    const = _constant_of(bb, weight)
    if const is None:
        return None
    out_h = dshape[2] + pads[0] + pads[2] - 2
    out_w = dshape[3] + pads[1] + pads[3] - 2
    if out_h < 1 or out_w < 1:
        return None
    if m is None:
        m = choose_tile(out_h, out_w, dshape[1], wshape[0])
    if m is None:
        return None
    return data, const.value.numpy(), m, pads, out_h, out_w


# ------------------------------------------------------------------ legalization
OP_PATTERN_OUT_EWISE_FUSABLE = 4


def _stock(bb, call):
    import tvm
    return tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)


def legalize_conv2d(bb, call, m=None):
    """``relax.nn.conv2d`` -> the Winograd kernel when eligible, else TVM's own legalization."""
    plan = conv_plan(bb, call, m)
    if plan is None:
        return _stock(bb, call)
    from tvm import relax, te
    data, weight, m, pads, out_h, out_w = plan
    u_np = transform_weight(weight, m)
    dshape = _static_shape(data)
    from tvm import tirx
    d_ph = te.placeholder([tirx.const(d, "int64") for d in dshape], "float32", name="data")
    u_ph = te.placeholder([tirx.const(d, "int64") for d in u_np.shape], "float32",
                          name="winograd_weight")
    out = winograd_conv2d_te(d_ph, u_ph, m, pads[0], pads[1], out_h, out_w)
    func = te.create_prim_func([d_ph, u_ph, out])
    if func.attrs is not None and "global_symbol" in func.attrs:
        func = func.without_attr("global_symbol")
    func = func.with_attr(
        "op_pattern", OP_PATTERN_OUT_EWISE_FUSABLE).with_attr("nnef.winograd_m", m)
    gv = bb.add_func(func, "conv2d")
    out_ty = relax.TensorType([dshape[0], u_np.shape[3], out_h, out_w], "float32")
    return relax.call_tir(gv, [data, relax.const(u_np, "float32")], out_ty)


def legalize_map(m=None) -> dict:
    """{"relax.nn.conv2d": legalization} for ``LegalizeOps(customize_legalize_map=...)``.

    ``m`` forces the output tile (tests); default: :func:`choose_tile`.
    """
    return {"relax.nn.conv2d": lambda bb, call: legalize_conv2d(bb, call, m)}
