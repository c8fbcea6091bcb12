"""quantization='int8': conv / linear / matmul on integer codes.

References (independent of the frontend):

* an integer numpy model written from the spec (SPEC-NOTES §7.13, §7.3): codes
  ``q = clamp(round(x / s) + z, lo, hi)``, the correlation summed in int64 over
  ``(q_x - z_x) * (q_w - z_w)`` with zero padding of the *real* input, the real
  result ``s_x * s_w * acc + b`` computed EXACTLY with Fractions and requantized with
  NNEF ``round(v) = floor(v + 0.5)``;
* the fake-quant build of the same graph (float32 arithmetic);
* the TFLite interpreter's outputs in the zoo fixtures' reference.npz.

Tolerances: int8 codes equal the exact reference everywhere (0 LSB); int8 vs
fake-quant: equal except where the exact value lies within 1e-3 LSB of a rounding
tie, where float32 accumulation may fall on the other side (then 1 LSB); with
power-of-two scales every float32 operation is exact, so all three agree bit for
bit, ties included; zoo fixtures: within 1 LSB of TFLite (whose requantization uses
a 31-bit fixed-point multiplier and rounds half away from zero).
"""
from __future__ import annotations

import os
import warnings
from fractions import Fraction

import numpy as np
import pytest

import nnef_tvm
from nnef_tvm.frontend import from_nnef, quantization_mode
from nnef_tvm.frontend.int8 import int8_report
from nnef_tvm.frontend.ops.quantization import zero_point_bounds

from frontend.support_frontend import graph_of, run_graph, run_module

ZOO = os.path.join(os.path.dirname(__file__), "..", "data", "zoo")

TEXT = """version 1.0;
graph G( x, a, m1, m2 ) -> ( c1, c2, c3, c4, r1, k2, c5, mp, l1, mm, mt )
{
    x = external(shape = [2, 4, 9, 8]);
    a = external(shape = [5, 12]);
    m1 = external(shape = [2, 3, 8]);
    m2 = external(shape = [2, 8, 5]);
    w1 = variable(shape = [6, 4, 3, 3], label = 'w1');
    b1 = variable(shape = [1, 6], label = 'b1');
    w2 = variable(shape = [8, 1, 3, 3], label = 'w2');
    b2 = variable(shape = [1, 8], label = 'b2');
    wl = variable(shape = [7, 12], label = 'wl');
    bl = variable(shape = [1, 7], label = 'bl');
    wt = variable(shape = [6, 12], label = 'wt');
    w4 = variable(shape = [5, 6, 1, 1], label = 'w4');
    w5 = variable(shape = [8, 1, 1, 1], label = 'w5');
    c1 = conv(x, w1, b1, stride = [2, 2], padding = [(1, 2), (0, 1)]);
    c2 = conv(x, w2, b2, groups = 4, padding = [], dilation = [2, 1]);
    c3 = conv(x, w1, 0.0, padding = [(1, 1), (1, 1)]);
    c4 = conv(c1, w4, 0.0);
    r1 = relu(c1);
    k2 = clamp(c2, KA, KB);
    c5 = conv(k2, w5, 0.0, groups = 0);
    mp = max_pool(k2, size = [1, 1, 3, 3], stride = [1, 1, 2, 2],
                  padding = [(0, 0), (0, 0), (1, 1), (1, 0)], border = 'constant');
    l1 = linear(a, wl, bl);
    mm = matmul(m1, m2);
    mt = matmul(a, wt, transposeB = true);
}
"""
# conv windows (NNEF padding, stride, dilation, groups) of c1, c2, c3 for the reference;
# c4 consumes c1's codes directly (conv -> conv); r1 / k2 / mp share c1's / c2's grid,
# so they are computed on codes, and c5 consumes k2's codes (conv -> clamp -> conv);
# mp's zero padding takes part in the max (border 'constant')
CONVS = {"c1": ("w1", "b1", [(1, 2), (0, 1)], (2, 2), (1, 1), 1),
         "c2": ("w2", "b2", None, (1, 1), (2, 1), 4),
         "c3": ("w1", None, [(1, 1), (1, 1)], (1, 1), (1, 1), 1)}


def _zp(scale, zero, bits=8, signed=True, symmetric=False):
    return {"op-name": "zero_point_linear_quantize", "scale": np.asarray(scale, "float32"),
            "zero_point": np.asarray(zero, "int32"), "bits": bits, "signed": signed,
            "symmetric": symmetric}


class Params:
    """One quantization configuration: grids for every tensor + the test data."""

    def __init__(self, act, weight, out, pow2, seed):
        self.rng = np.random.default_rng(seed)
        self.act, self.weight, self.out, self.pow2 = act, weight, out, pow2
        self.quant, self.data, self.inputs = {}, {}, {}
        self.clamp = (-1.0, 1.0)

    def scale(self, n=None, base=0.05):
        if self.pow2:
            e = self.rng.integers(-7, -3, size=n)
            return np.asarray(np.exp2(e), "float32")
        return np.asarray(base * self.rng.uniform(0.5, 2.0, size=n), "float32")

    def input_on_grid(self, name, shape):
        """An external input whose floats are exact grid points (no input rounding)."""
        signed, symmetric, zero = self.act
        s = self.scale()
        q = _zp(s, zero, 8, signed, symmetric)
        lo, hi = zero_point_bounds(8, signed, symmetric)
        codes = self.rng.integers(lo, hi + 1, size=shape)
        self.quant[name] = q
        self.inputs[name] = ((codes - zero) * np.float64(s)).astype("float32")

    def weight_tensor(self, name, shape, per_channel):
        signed, symmetric, zero = self.weight
        s = self.scale(shape[0] if per_channel else None, base=0.02)
        zeros = np.full(shape[0], zero) if per_channel else zero
        self.quant[name] = _zp(s, zeros, 8, signed, symmetric)
        self.data[name] = self.rng.normal(0, 2.5, size=shape).astype("float32") \
            * (s.reshape(-1, *[1] * (len(shape) - 1)) if per_channel else s) * 10

    def bias_tensor(self, name, data_name, weight_name, channels):
        """A 32-bit bias quantized at fl32(s_x * s_w), as TFLite writes it."""
        sx = self.quant[data_name]["scale"]
        sw = np.broadcast_to(self.quant[weight_name]["scale"], (channels,))
        sb = (sx * sw).astype("float32").reshape(1, channels)
        self.quant[name] = _zp(sb, np.zeros((1, channels)), 32, True, False)
        self.data[name] = (self.rng.integers(-3000, 3000, size=(1, channels)) * sb).astype("float32")

    def output(self, name, real):
        """Output grid spanning about +-3 standard deviations of ``real`` in 120 steps."""
        signed, symmetric, zero = self.out
        s = np.std(real) / 20
        s = np.exp2(np.round(np.log2(s))) if self.pow2 else s * self.rng.uniform(0.9, 1.1)
        self.quant[name] = _zp(np.float32(s), zero, 8, signed, symmetric)


def _configure(p: Params, per_channel: bool) -> Params:
    p.input_on_grid("x", (2, 4, 9, 8))
    p.input_on_grid("a", (5, 12))
    p.input_on_grid("m1", (2, 3, 8))
    p.input_on_grid("m2", (2, 8, 5))
    p.weight_tensor("w1", (6, 4, 3, 3), per_channel)
    p.weight_tensor("w2", (8, 1, 3, 3), per_channel)
    p.weight_tensor("wl", (7, 12), per_channel)
    p.weight_tensor("wt", (6, 12), per_channel)
    p.bias_tensor("b1", "x", "w1", 6)
    p.bias_tensor("b2", "x", "w2", 8)
    p.bias_tensor("bl", "a", "wl", 7)
    p.weight_tensor("w4", (5, 6, 1, 1), per_channel)
    real = _reference(p)              # no output grids yet: the real values
    for name in ("c1", "c2", "l1", "mt", "mm"):
        p.output(name, real[name][0])
    p.weight_tensor("w5", (8, 1, 1, 1), per_channel)
    p.quant["r1"], p.quant["k2"], p.quant["mp"] = p.quant["c1"], p.quant["c2"], p.quant["c2"]
    s2 = float(p.quant["c2"]["scale"])       # clamp bounds 17.3 / 23.6 steps either side
    p.clamp = (float(np.float32(-17.3 * s2)), float(np.float32(23.6 * s2)))
    real = _reference(p)
    p.output("c4", real["c4"][0])
    p.output("c5", real["c5"][0])
    return p                          # c3 has no quantization: real-valued epilogue


# asymmetric uint8 everywhere (per-tensor weights; activation codes q - z need 9 bits, so
# raw codes with zero-point corrections); symmetric int8 with per-channel weights
UINT8 = dict(act=(False, False, 100), weight=(False, False, 131), out=(False, False, 120))
INT8 = dict(act=(True, True, 0), weight=(True, True, 0), out=(True, False, 0))


def _graph(p: Params):
    ka, kb = p.clamp
    g = graph_of(TEXT.replace("KA", repr(ka)).replace("KB", repr(kb)), p.data)
    for name, q in p.quant.items():
        g.tensors[name].quantization = q
    return g


# ------------------------------------------------------------ the numpy reference
def _codes(x, q, axis0=False):
    s = np.asarray(q["scale"], np.float64)
    z = np.asarray(q["zero_point"], np.int64)
    if axis0 and s.size > 1:
        s = s.reshape(-1, *[1] * (x.ndim - 1))
        z = z.reshape(-1, *[1] * (x.ndim - 1))
    lo, hi = zero_point_bounds(int(q["bits"]), q["signed"], q["symmetric"])
    return np.clip(np.floor(x.astype(np.float64) / s + 0.5) + z, lo, hi).astype(np.int64) - z


def _auto_pad(size, f, s, d):
    out = -(-size // s)
    t = max((out - 1) * s + (f - 1) * d + 1 - size, 0)
    return t // 2, t - t // 2


def _conv_int64(cx, cw, pads, stride, dilation, groups):
    """NNEF correlation of zero-point-free codes in int64 (padding = real 0 = code 0)."""
    n, c = cx.shape[:2]
    o, cg, kh, kw = cw.shape
    if pads is None:
        pads = [_auto_pad(cx.shape[2 + i], cw.shape[2 + i], stride[i], dilation[i]) for i in range(2)]
    xp = np.pad(cx, [(0, 0), (0, 0)] + list(pads))
    oh = (xp.shape[2] - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    acc = np.zeros((n, groups, o // groups, oh, ow), np.int64)
    wg = cw.reshape(groups, o // groups, cg, kh, kw)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            patch = xp[:, :, r0:r0 + stride[0] * (oh - 1) + 1:stride[0],
                       c0:c0 + stride[1] * (ow - 1) + 1:stride[1]]
            patch = patch.reshape(n, groups, cg, oh, ow)
            acc += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, i, j])
    return acc.reshape(n, o, oh, ow)


def _exact_requantize(acc, acc_scale, bias, out_q):
    """Exact rational ``s_x s_w acc + b`` -> output codes (q - z), NNEF round; or the
    exact real value (as float64) without an output grid. ``acc_scale``/``bias``
    broadcast against ``acc``."""
    acc_scale = np.broadcast_to(acc_scale, acc.shape)
    bias = np.broadcast_to(bias, acc.shape)
    real = np.empty(acc.shape, object)
    for idx in np.ndindex(acc.shape):
        real[idx] = Fraction(int(acc[idx])) * Fraction(float(acc_scale[idx])) \
            + Fraction(float(bias[idx]))
    if out_q is None:
        return real.astype(np.float64), real
    so = Fraction(float(out_q["scale"]))
    z = int(out_q["zero_point"])
    lo, hi = zero_point_bounds(8, out_q["signed"], out_q["symmetric"])
    t = np.empty(acc.shape, object)
    codes = np.empty(acc.shape, np.int64)
    for idx in np.ndindex(acc.shape):
        t[idx] = real[idx] / so
        codes[idx] = min(max((t[idx] + Fraction(1, 2)).__floor__() + z, lo), hi) - z
    return codes, t


def _reference(p: Params):
    """{output: (codes, exact t = value / s_out) or (real floats, exact real) without a
    grid}; all Fractions."""
    q, ref = p.quant, {}
    for name, (wn, bn, pads, stride, dil, groups) in CONVS.items():
        cx = _codes(p.inputs["x"], q["x"])
        cw = _codes(p.data[wn], q[wn], axis0=True)
        acc = _conv_int64(cx, cw, pads, stride, dil, groups)
        sw = np.broadcast_to(np.asarray(q[wn]["scale"], np.float64), (cw.shape[0],))
        acc_scale = (np.float64(q["x"]["scale"]) * sw).reshape(1, -1, 1, 1)
        bias = 0.0 if bn is None else p.data[bn].astype(np.float64).reshape(1, -1, 1, 1)
        ref[name] = _exact_requantize(acc, acc_scale, bias, q.get(name))
    if "c1" in q:
        cx = ref["c1"][0]
        cw = _codes(p.data["w4"], q["w4"], axis0=True)
        acc = _conv_int64(cx, cw, [(0, 0), (0, 0)], (1, 1), (1, 1), 1)
        sw = np.broadcast_to(np.asarray(q["w4"]["scale"], np.float64), (cw.shape[0],))
        acc_scale = (np.float64(q["c1"]["scale"]) * sw).reshape(1, -1, 1, 1)
        ref["c4"] = _exact_requantize(acc, acc_scale, 0.0, q.get("c4"))
    if "c2" in q:       # relu / clamp of codes, from the real formula fq(clamp(c * s, a, b))
        for name, src, lo_b, hi_b in (("r1", "c1", 0.0, np.inf), ("k2", "c2") + p.clamp):
            s = np.float64(q[src]["scale"])
            real = np.clip(ref[src][0] * s, lo_b, hi_b)
            ref[name] = (_codes(real, q[name]), None)
        kp = np.pad(ref["k2"][0], [(0, 0), (0, 0), (1, 1), (1, 0)])    # real 0 = code 0
        mp = np.full(kp.shape[:2] + (5, 4), np.iinfo(np.int64).min)
        for i in range(3):
            for j in range(3):
                mp = np.maximum(mp, kp[:, :, i:i + 9:2, j:j + 7:2])
        ref["mp"] = (mp, None)
        cw = _codes(p.data["w5"], q["w5"], axis0=True)
        acc = _conv_int64(ref["k2"][0], cw, [(0, 0), (0, 0)], (1, 1), (1, 1), 8)
        sw = np.broadcast_to(np.asarray(q["w5"]["scale"], np.float64), (cw.shape[0],))
        acc_scale = (np.float64(q["c2"]["scale"]) * sw).reshape(1, -1, 1, 1)
        ref["c5"] = _exact_requantize(acc, acc_scale, 0.0, q.get("c5"))
    ca = _codes(p.inputs["a"], q["a"])
    for name, wn, bn in (("l1", "wl", "bl"), ("mt", "wt", None)):
        cw = _codes(p.data[wn], q[wn], axis0=True)
        sw = np.broadcast_to(np.asarray(q[wn]["scale"], np.float64), (cw.shape[0],))
        bias = 0.0 if bn is None else p.data[bn].astype(np.float64)
        ref[name] = _exact_requantize(ca @ cw.T, np.float64(q["a"]["scale"]) * sw, bias, q.get(name))
    acc = _codes(p.inputs["m1"], q["m1"]) @ _codes(p.inputs["m2"], q["m2"])
    ref["mm"] = _exact_requantize(acc, np.float64(q["m1"]["scale"]) * np.float64(q["m2"]["scale"]),
                                  0.0, q.get("mm"))
    return ref


def _out_codes(y, q):
    """Codes (q - z) of a dequantized output (exact: it is c * s in float32)."""
    c = y.astype(np.float64) / np.float64(q["scale"])
    assert np.all(np.abs(c - np.round(c)) < 1e-3), "output is not on its grid"
    return np.round(c).astype(np.int64)


def _run_both(p: Params):
    g = _graph(p)
    outs = {}
    for mode in ("int8", "fake"):
        res = run_graph(g, p.inputs, **({"int8": True} if mode == "int8" else {"fake_quantize": True}))
        outs[mode] = dict(zip(g.outputs, res))
    return g, outs


@pytest.fixture(scope="module")
def uint8_run():
    p = _configure(Params(**UINT8, pow2=False, seed=1), per_channel=False)
    return p, _run_both(p)


@pytest.fixture(scope="module")
def int8_pow2_run():
    p = _configure(Params(**INT8, pow2=True, seed=2), per_channel=True)
    return p, _run_both(p)


@pytest.mark.parametrize("run", ["uint8_run", "int8_pow2_run"])
def test_int8_codes_equal_the_exact_integer_reference(run, request):
    """0 LSB: every requantized output equals the exact rational spec value, NNEF round."""
    p, (g, outs) = request.getfixturevalue(run)
    ref = _reference(p)
    for name in g.outputs:
        codes, exact = ref[name]
        if name not in p.quant:    # c3: real epilogue, one float32 rounding of the exact value
            np.testing.assert_allclose(outs["int8"][name], codes, rtol=2e-7, atol=0)
            continue
        got = _out_codes(outs["int8"][name], p.quant[name])
        np.testing.assert_array_equal(got, codes, err_msg=name)
        # the dequantized float is float32(c) * s: what fake-quant's (q - z) * scale gives
        np.testing.assert_array_equal(
            outs["int8"][name], (codes.astype(np.float32) * p.quant[name]["scale"]).astype("float32"))


def test_uint8_int8_vs_fake_differ_only_at_float32_ties(uint8_run):
    """Asymmetric uint8, per-tensor, random float scales: int8 and fake-quant codes agree
    except where the exact value is within 1e-3 LSB of a .5 tie (float32 accumulation
    error); such a difference is 1 LSB."""
    p, (g, outs) = uint8_run
    ref = _reference(p)
    total = differing = 0
    for name in g.outputs:
        codes, exact = ref[name]
        if name not in p.quant:
            np.testing.assert_allclose(outs["int8"][name], outs["fake"][name], rtol=1e-5, atol=1e-5)
            continue
        a = _out_codes(outs["int8"][name], p.quant[name])
        b = _out_codes(outs["fake"][name], p.quant[name])
        diff = np.argwhere(a != b)
        if exact is None:           # r1 / k2: code-wise of an already compared result
            assert np.abs(a - b).max(initial=0) <= 1, name
            continue
        total += a.size
        differing += len(diff)
        assert np.abs(a - b).max(initial=0) <= 1, name
        for idx in map(tuple, diff):
            frac = exact[idx] - exact[idx].__floor__()
            assert abs(float(frac) - 0.5) < 1e-3, (name, idx, float(exact[idx]))
    assert total > 1000 and differing <= total // 100, (differing, total)


def test_int8_pow2_scales_agree_bit_for_bit_with_fake_including_ties(int8_pow2_run):
    """Symmetric int8, per-channel weights, power-of-two scales: float32 is exact, so
    int8 == fake-quant == reference everywhere, and exact .5 ties occur and round up."""
    p, (g, outs) = int8_pow2_run
    ref = _reference(p)
    ties = 0
    for name in g.outputs:
        np.testing.assert_array_equal(outs["int8"][name], outs["fake"][name], err_msg=name)
        codes, exact = ref[name]
        if name in p.quant and exact is not None:
            ties += sum(1 for t in exact.flat if t - t.__floor__() == Fraction(1, 2))
    assert ties > 0, "no rounding ties exercised"


def test_int8_module_runs_integer_kernels(int8_pow2_run):
    """conv2d / matmul in the int8 module take 1-byte codes and accumulate in int32,
    and no float conv2d/matmul is left; weights are stored as int8 constants."""
    p, _ = int8_pow2_run
    from tvm import relax
    mod = from_nnef(_graph(p), int8=True)
    calls = []

    def visit(e):
        if isinstance(e, relax.Call) and getattr(e.op, "name", "") in ("relax.nn.conv2d",
                                                                       "relax.matmul"):
            calls.append((e.op.name, [str(a.ty.dtype) for a in e.args], str(e.ty.dtype)))
    relax.analysis.post_order_visit(mod["main"], visit)
    assert len(calls) == 8, calls
    for name, operand_types, out_type in calls:
        assert out_type == "int32", calls
        assert all(t in ("int8", "uint8") for t in operand_types), calls


def test_int8_needs_float32_scalars():
    """With NNEF scalar = float16 the dequantized float32 values would not type-check:
    every operation keeps its float converter (fake quantization)."""
    from tvm import relax
    p = _configure(Params(**INT8, pow2=True, seed=5), per_channel=True)
    mod = from_nnef(_graph(p), int8=True, dtype="float16")
    outs = []
    relax.analysis.post_order_visit(mod["main"], lambda e: outs.append(str(e.ty.dtype)) if (
        isinstance(e, relax.Call) and getattr(e.op, "name", "") in ("relax.nn.conv2d",
                                                                     "relax.matmul")) else None)
    assert outs and set(outs) == {"float16"}, outs


def test_auto_picks_int8_only_when_every_op_qualifies():
    p = _configure(Params(**INT8, pow2=True, seed=3), per_channel=True)
    g = _graph(p)
    assert quantization_mode(g) == "int8"
    assert all(why == "" for _, why in int8_report(g))
    # per-channel parameters along the input-channel axis of a filter do not qualify
    g.tensors["w1"].quantization = _zp(np.full((1, 4), 0.01), np.zeros((1, 4)), 8, True, True)
    reasons = [why for op, why in int8_report(g) if why]
    assert len(reasons) == 2 and all("axis 1" in r for r in reasons), reasons
    assert quantization_mode(g) == "fake"
    # a min/max-quantized data operand is not a zero-point grid
    g = _graph(p)
    g.tensors["a"].quantization = {"op-name": "min_max_linear_quantize", "min": np.float32(-1),
                                   "max": np.float32(1), "bits": 8, "signed": True,
                                   "symmetric": True}
    assert quantization_mode(g) == "fake"
    assert quantization_mode(g, "int8") == "int8"         # forced: the others still qualify


def test_forced_int8_on_a_partly_qualifying_graph(int8_pow2_run):
    """An operation that does not qualify (a 16-bit operand) falls back to the float
    converter (fake quantization, exact here with power-of-two scales); the others
    keep their integer results."""
    p, (g0, outs) = int8_pow2_run
    g = _graph(p)
    g.tensors["m2"].quantization = _zp(np.float32(2.0 ** -6), 3, 16, True, False)
    assert [op.name for op, why in int8_report(g) if why] == ["matmul"]
    got = dict(zip(g.outputs, run_graph(g, p.inputs, int8=True)))
    for name in g.outputs:
        if name != "mm":
            np.testing.assert_array_equal(got[name], outs["int8"][name], err_msg=name)
    q = p.quant
    acc = _codes(p.inputs["m1"], q["m1"]) @ _codes(p.inputs["m2"], g.tensors["m2"].quantization)
    codes, _ = _exact_requantize(acc, np.float64(q["m1"]["scale"]) * 2.0 ** -6, 0.0, q["mm"])
    np.testing.assert_array_equal(_out_codes(got["mm"], q["mm"]), codes)


# ------------------------------------------------------------------ zoo fixtures
def _zoo(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nnef_tvm.load(os.path.join(ZOO, name, "nnef"), realign_flat_quant=True)


@pytest.mark.parametrize("name", [pytest.param("tflite_int8", marks=pytest.mark.slow),
                                  "tflite_int8_conformant"])
def test_tflite_fixture_int8_within_one_lsb_of_tflite(name):
    """Whole model in int8 mode: <= 1 LSB from the TFLite interpreter on every output, and
    bit for bit the fake-quant build's outputs (no result of this input is near a tie)."""
    model = _zoo(name)
    g = model.graph
    ref = np.load(os.path.join(ZOO, name, "reference.npz"))
    inputs = []
    for n in g.inputs:
        q = g.tensors[n].quantization
        inputs.append(((ref[n].astype(np.float32) - int(q["zero_point"])) * q["scale"])
                      .astype("float32"))
    outs = run_module(from_nnef(model, int8=True), inputs)
    fake = run_module(from_nnef(model, fake_quantize=True), inputs)
    for n, y, f in zip(g.outputs, outs, fake):
        q = g.tensors[n].quantization
        codes = np.clip(np.floor(y / q["scale"] + 0.5) + int(q["zero_point"]), -128, 127)
        assert np.abs(codes - ref[n].astype(np.float32)).max() <= 1.0, n
        np.testing.assert_array_equal(y, f, err_msg=n)


def test_int8_weights_are_stored_as_one_byte_codes(int8_pow2_run):
    """After dead-code elimination the int8 module holds no float weight constants, and
    its integer weight constants take one byte per filter element (4x less than float32)."""
    import tvm
    from tvm import relax
    p, _ = int8_pow2_run
    sizes = {}
    for mode, kw in (("int8", {"int8": True}), ("fake", {"fake_quantize": True})):
        mod = relax.transform.DeadCodeElimination()(from_nnef(_graph(p), **kw))
        consts = []
        relax.analysis.post_order_visit(
            mod["main"], lambda e: consts.append(e) if isinstance(e, tvm.ir.expr.Constant) else None)
        big = {}
        for c in consts:
            if not hasattr(c.value, "numpy"):
                continue
            a = c.value.numpy()
            if a.size >= 24:                       # weights, not scalars / channel vectors
                big.setdefault(str(a.dtype), {})[a.tobytes() + str(a.shape).encode()] = a.nbytes
        sizes[mode] = {dt: sum(v.values()) for dt, v in big.items()}
    elements = sum(p.data[w].size for w in ("w1", "w2", "wl", "wt", "w4"))    # w5: 8 values
    assert sizes["fake"].get("float32", 0) >= 4 * elements, sizes
    assert "float32" not in sizes["int8"], sizes
    assert sizes["int8"].get("int8", 0) + sizes["int8"].get("uint8", 0) == elements, sizes


def test_cli_accepts_quantization_int8():
    from nnef_tvm.cli.compile import build_parser
    assert build_parser().parse_args(["m", "--quantization", "int8"]).quantization == "int8"


def test_int8_kernels_get_the_cpu_convolution_schedules(int8_pow2_run):
    """Through the project's x86 pipeline, every fused kernel holding an int8 conv2d /
    matmul (``C += cast(A) * cast(B)``) is taken by a convolution rule of the default
    CPU schedules, and the scheduled build still equals the exact reference."""
    import tvm
    from tvm import relax
    from nnef_tvm.targets import get_target
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    p, _ = int8_pow2_run
    g = _graph(p)
    tgt = get_target("x86", threads=1)
    lowered = run_phases(from_nnef(g, int8=True), tgt, build_phases(tgt))
    rules = {gv.name_hint: (f.attrs.get("nnef.schedule_rule") if f.attrs else None)
             for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    mac = {n: r for n, r in rules.items() if "conv2d" in n or "matmul" in n}
    assert len(mac) >= 5, rules
    assert all(r in ("conv_channel_vector", "conv_spatial_vector") for r in mac.values()), mac
    vm = relax.VirtualMachine(relax.build(lowered, tgt.tvm(), relax_pipeline=None), tvm.cpu())
    res = vm["main"](*[tvm.runtime.tensor(p.inputs[n]) for n in g.inputs])
    ref = _reference(p)
    for name, y in zip(g.outputs, res):
        if name in p.quant:
            np.testing.assert_array_equal(_out_codes(y.numpy(), p.quant[name]), ref[name][0],
                                          err_msg=name)
