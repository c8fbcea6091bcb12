"""batch/l1/l2 normalization (§4.9.4) and fake quantization (§4.9.5) vs numpy.

References are written from the spec formulas, with NNEF round = floor(x + 0.5).
Tolerance: rtol 1e-5 / atol 1e-5 for normalization; quantizers are compared
with atol of 1e-5 relative to the step size, with inputs kept away from rounding
ties except where a tie is the point of the check.
"""
import numpy as np

from frontend.support_frontend import graph_text, rand, run_nnef


def nround(v):
    return np.floor(v + 0.5)


def test_batch_l1_l2_normalization():
    body = """
    bn = batch_normalization(x, mean, var, offset, scale, epsilon = 1e-3);
    l1 = l1_normalization(x, axes = [1]);
    l2 = l2_normalization(x, axes = [2, 3], bias = 0.5, epsilon = 1e-2);
    l2e = l2_normalization(z, axes = [1], epsilon = 0.25);
"""
    outs = "bn l1 l2 l2e".split()
    c = [1, 3]
    text = graph_text({"x": [2, 3, 4, 5], "mean": c, "var": c, "offset": c, "scale": c,
                       "z": [2, 3]}, body, outs)
    x = rand((2, 3, 4, 5), 1)
    mean, var = rand(c, 2), rand(c, 3, 0.1, 2.0)
    offset, scale = rand(c, 4), rand(c, 5)
    z = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0]], "float32")  # epsilon floor applies
    got = dict(zip(outs, run_nnef(text, {"x": x, "mean": mean, "var": var, "offset": offset,
                                         "scale": scale, "z": z})))
    xd = x.astype(np.float64)
    col = lambda v: v.astype(np.float64).reshape(1, 3, 1, 1)  # noqa: E731  LEFT-aligned [1, C]
    want = {
        "bn": col(offset) + col(scale) * (xd - col(mean)) / np.sqrt(col(var) + 1e-3),
        "l1": xd / np.maximum(np.abs(xd).sum(1, keepdims=True), 0.0),
        "l2": xd / np.maximum(np.sqrt((xd ** 2).sum((2, 3), keepdims=True)) + 0.5, 1e-2),
        "l2e": z / np.maximum(np.sqrt((z.astype(np.float64) ** 2).sum(1, keepdims=True)), 0.25),
    }
    for n in outs:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-5, err_msg=n)


def min_max_ref(x, lo, hi, bits, signed, symmetric):
    r = 2 ** bits - 1 - (1 if signed and symmetric else 0)
    c = np.where(np.where(x < hi, x, hi) > lo, np.where(x < hi, x, hi), lo)
    return nround((c - lo) / (hi - lo) * r) / r * (hi - lo) + lo


def zero_point_ref(x, z, s, bits, signed, symmetric):
    if not signed:
        lo, hi = 0, 2 ** bits - 1
    else:
        hi = 2 ** (bits - 1) - 1
        lo = -hi if symmetric else -hi - 1
    q = np.clip(nround(x / s) + z, lo, hi)
    return (q - z) * s


def log_ref(x, mx, bits):
    m = np.ceil(np.log2(mx))
    r = 2 ** bits - 1
    with np.errstate(divide="ignore"):
        lg = np.log2(np.abs(x))
    return np.sign(x) * 2.0 ** nround(np.clip(lg, m - r, m))


def test_quantizers():
    body = """
    q1 = min_max_linear_quantize(x, lo, hi, bits = 8, signed = false, symmetric = false);
    q2 = min_max_linear_quantize(x, lo, hi, bits = 4, signed = true, symmetric = true);
    q3 = linear_quantize(x, -1.0, 1.5, bits = 3);
    z1 = zero_point_linear_quantize(w, zp, sc, bits = 8, signed = true, symmetric = false);
    z2 = zero_point_linear_quantize(w, zp, sc, bits = 8, signed = true, symmetric = true);
    z3 = zero_point_linear_quantize(w, zpu, sc, bits = 4, signed = false, symmetric = false);
    lq = logarithmic_quantize(x, 3.0, bits = 3);
"""
    outs = "q1 q2 q3 z1 z2 z3 lq".split()
    text = graph_text({"x": [2, 3, 4], "lo": [1, 3], "hi": [1, 3], "w": [2, 3],
                       "zp": ([1, 3], "integer"), "zpu": ([1, 3], "integer"), "sc": [1, 3]},
                      body, outs)
    x = rand((2, 3, 4), 1, -2.5, 2.5)
    x[0, 0, 0] = 0.0
    lo = np.array([[-1.0, -2.0, 0.0]], "float32")
    hi = np.array([[1.0, 0.5, 2.0]], "float32")
    # values that hit the signed bounds: -128 must be reachable for asymmetric 8-bit
    w = np.array([[-200.0, -127.6, 3.3], [127.4, 500.0, -1.2]], "float32")
    zp = np.array([[0, 0, 2]], "int32")
    zpu = np.array([[0, 7, 3]], "int32")
    sc = np.array([[1.0, 1.0, 0.5]], "float32")
    got = dict(zip(outs, run_nnef(text, {"x": x, "lo": lo, "hi": hi, "w": w, "zp": zp,
                                         "zpu": zpu, "sc": sc})))
    xd = x.astype(np.float64)
    l3, h3 = lo.reshape(1, 3, 1).astype(np.float64), hi.reshape(1, 3, 1).astype(np.float64)
    want = {
        "q1": min_max_ref(xd, l3, h3, 8, False, False),
        "q2": min_max_ref(xd, l3, h3, 4, True, True),
        "q3": min_max_ref(xd, -1.0, 1.5, 3, False, False),
        "z1": zero_point_ref(w, zp, sc, 8, True, False),
        "z2": zero_point_ref(w, zp, sc, 8, True, True),
        "z3": zero_point_ref(w, zpu, sc, 4, False, False),
        "lq": log_ref(xd, 3.0, 3),
    }
    for n in outs:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-5, err_msg=n)
    # the bounds themselves (spec §4.9.5): [-128, 127], [-127, 127], [0, 15] (+ zero point)
    assert got["z1"][0, 0] == -128.0 and got["z1"][1, 1] == 127.0
    assert got["z2"][0, 0] == -127.0 and got["z2"][1, 1] == 127.0
    assert got["z3"][0, 0] == 0.0 and got["z3"][1, 1] == 8.0      # q = 15, z = 7
    assert got["lq"][0, 0, 0] == 0.0                                # sign(0) = 0


def test_log2_exact_on_powers_of_two_for_logarithmic_quantize():
    # m = ceil(log2(max)) must not jump when max is a power of two (log2(16) = 4, not 4.0000005)
    text = graph_text({"x": [8], "m": [8]},
                      "    y = log2(m);\n    z = logarithmic_quantize(x, m, bits = 3);", ["y", "z"])
    m = np.array([2, 4, 16, 256, 0.5, 0.25, 2.0 ** 20, 2.0 ** -10], "float32")
    x = np.array([1.9, 3.0, 100.0, 7.0, 0.3, 0.01, -5.0e6, 1e-3], "float32")
    y, z = run_nnef(text, {"x": x, "m": m})
    np.testing.assert_array_equal(y, [1, 2, 4, 8, -1, -2, 20, -10])
    np.testing.assert_array_equal(z, log_ref(x.astype(np.float64), m.astype(np.float64), 3))
