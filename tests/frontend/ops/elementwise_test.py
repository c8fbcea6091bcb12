"""Element-wise converters vs numpy written from the NNEF formulas (§4.2).

Tolerances: float32, rtol 1e-5 / atol 1e-6 for transcendental ops (LLVM vs numpy
libm), exact for rounding, sign, comparisons and selection.
"""
import numpy as np
import pytest

from frontend.support_frontend import graph_text, rand, run_nnef

# (op, domain of x, numpy reference)
UNARY = [
    ("exp", "x", np.exp), ("log", "p", np.log),
    ("sin", "x", np.sin), ("cos", "x", np.cos), ("tan", "u", np.tan),
    ("sinh", "x", np.sinh), ("cosh", "x", np.cosh), ("tanh", "x", np.tanh),
    ("asin", "u", np.arcsin), ("acos", "u", np.arccos), ("atan", "x", np.arctan),
    ("asinh", "x", np.arcsinh), ("acosh", "g", np.arccosh), ("atanh", "u", np.arctanh),
    ("abs", "x", np.abs), ("sign", "x", np.sign), ("neg", "x", np.negative),
    ("floor", "x", np.floor), ("ceil", "x", np.ceil), ("copy", "x", lambda v: v),
    ("rcp", "p", lambda v: 1.0 / v), ("sqr", "x", lambda v: v * v),
    ("sqrt", "p", np.sqrt), ("rsqr", "p", lambda v: v ** -2.0),
    ("rsqrt", "p", lambda v: v ** -0.5), ("log2", "p", np.log2),
    ("round", "x", lambda v: np.floor(v + 0.5)),
]


def _inputs():
    x = rand((3, 8), 1)
    # rounding ties and sign(0): NNEF round is floor(x + 0.5)
    x[0, :8] = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.0, -0.0]
    return {
        "x": x,
        "p": rand((3, 8), 2, 0.25, 3.0),
        "u": rand((3, 8), 3, -0.9, 0.9),
        "g": rand((3, 8), 4, 1.1, 3.0),
    }


def test_unary_ops_all_in_one_graph():
    body = "\n".join(f"    y_{name} = {name}({dom});" for name, dom, _ in UNARY)
    outs = [f"y_{name}" for name, _, _ in UNARY]
    text = graph_text({n: [3, 8] for n in "xpug"}, body, outs)
    ins = _inputs()
    results = run_nnef(text, ins)
    for (name, dom, ref), got in zip(UNARY, results):
        want = ref(ins[dom].astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_round_ties_go_up_not_to_even():
    text = graph_text({"x": [6]}, "    y = round(x);", ["y"])
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], "float32")
    (y,) = run_nnef(text, {"x": x})
    np.testing.assert_array_equal(y, [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])


BINARY = [
    ("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide),
    ("lt", np.less), ("gt", np.greater), ("le", np.less_equal), ("ge", np.greater_equal),
    ("eq", np.equal), ("ne", np.not_equal),
    ("min", lambda a, b: np.where(a < b, a, b)), ("max", lambda a, b: np.where(a > b, a, b)),
]


def _left_aligned(b, rank):
    return b.reshape(b.shape + (1,) * (rank - b.ndim))


@pytest.mark.parametrize("xshape,yshape", [
    ((2, 3, 4, 5), (1, 3)),       # per-channel [1, C] against NCHW: LEFT-aligned
    ((2, 3), (2, 3)),
    ((1, 3), (2, 3, 4)),          # the lower-rank operand is the first one
])
def test_binary_ops_left_aligned_broadcast(xshape, yshape):
    body = "\n".join(f"    z_{n} = {n}(x, y);" for n, _ in BINARY) + "\n    z_pow = pow(a, y);"
    outs = [f"z_{n}" for n, _ in BINARY] + ["z_pow"]
    text = graph_text({"x": xshape, "y": yshape, "a": xshape}, body, outs)
    x, y = rand(xshape, 5), rand(yshape, 6)
    y.flat[0] = x.flat[0]  # a tie for min/max/eq
    a = rand(xshape, 7, 0.5, 2.0)
    results = run_nnef(text, {"x": x, "y": y, "a": a})
    rank = max(len(xshape), len(yshape))
    xb, yb, ab = _left_aligned(x, rank), _left_aligned(y, rank), _left_aligned(a, rank)
    for (name, ref), got in zip(BINARY, results):
        want = ref(xb, yb)
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(results[-1], np.power(ab, yb), rtol=1e-5)


def test_literal_operands_logical_ops_select_clamp():
    text = graph_text(
        {"x": [2, 3, 4], "y": [2, 3, 4], "lo": [1, 3], "hi": [1, 3]},
        "\n".join([
            "    a = add(x, 1.5);",
            "    b = sub(2.0, x);",
            "    c = lt(x, y);",
            "    d = gt(x, 0.0);",
            "    e = and(c, d);",
            "    f = or(c, d);",
            "    g = not(c);",
            "    h = select(c, x, y);",
            "    i = select(d, x, -1.0);",
            "    j = clamp(x, lo, hi);",
            "    k = clamp(x, 0.5, -0.5);",   # a > b gives a
            "    m = select(true, x, y);",
        ]), list("abcdefghijkm"))
    x, y = rand((2, 3, 4), 8), rand((2, 3, 4), 9)
    lo = np.array([[-1.0, 0.0, -0.3]], "float32")
    hi = np.array([[0.5, 1.0, 0.2]], "float32")
    a, b, c, d, e, f, g, h, i, j, k, m = run_nnef(text, {"x": x, "y": y, "lo": lo, "hi": hi})
    np.testing.assert_allclose(a, x + 1.5)
    np.testing.assert_allclose(b, 2.0 - x)
    np.testing.assert_array_equal(c, x < y)
    np.testing.assert_array_equal(d, x > 0)
    np.testing.assert_array_equal(e, (x < y) & (x > 0))
    np.testing.assert_array_equal(f, (x < y) | (x > 0))
    np.testing.assert_array_equal(g, ~(x < y))
    np.testing.assert_array_equal(h, np.where(x < y, x, y))
    np.testing.assert_array_equal(i, np.where(x > 0, x, -1.0))
    lo3, hi3 = lo.reshape(1, 3, 1), hi.reshape(1, 3, 1)
    np.testing.assert_array_equal(j, np.where(np.minimum(x, hi3) > lo3, np.minimum(x, hi3), lo3))
    np.testing.assert_array_equal(k, np.full_like(x, 0.5))
    np.testing.assert_array_equal(m, x)


def test_min_max_select_semantics_with_nan_and_identity_outputs():
    # min = select(x < y, x, y): a comparison with NaN is false, so the result is y
    text = graph_text({"x": [4], "y": [4]},
                      "    a = min(x, y);\n    b = max(x, y);\n    c = copy(x);\n"
                      "    k = constant(shape = [2], value = [4.0]);",
                      ["a", "b", "c", "k"])
    nan = np.float32("nan")
    x = np.array([nan, 1.0, 2.0, -0.0], "float32")
    y = np.array([1.0, nan, 2.0, 0.0], "float32")
    a, b, c, k = run_nnef(text, {"x": x, "y": y})
    np.testing.assert_array_equal(a, [1.0, nan, 2.0, 0.0])
    np.testing.assert_array_equal(b, [1.0, nan, 2.0, 0.0])
    assert not np.signbit(a[3]) and not np.signbit(b[3])   # ties pick y (+0, not -0)
    np.testing.assert_array_equal(c, x)
    np.testing.assert_array_equal(k, [4.0, 4.0])


def _random_left_aligned_pair(rng):
    """Two shapes broadcastable under NNEF's LEFT-aligned rule (not necessarily NumPy's)."""
    full = [int(rng.integers(2, 4)) for _ in range(int(rng.integers(2, 5)))]
    a = [d if rng.random() < 0.6 else 1 for d in full]
    b = [d if rng.random() < 0.6 else 1 for d in full]
    b = b[:int(rng.integers(1, len(full) + 1))]     # drop trailing dims: left-aligned prefix
    return (a, b) if rng.random() < 0.5 else (b, a)


def test_random_left_aligned_broadcasting():
    rng = np.random.default_rng(77)
    pairs = [_random_left_aligned_pair(rng) for _ in range(10)]
    inputs, body, outs = {}, [], []
    for k, (sa, sb) in enumerate(pairs):
        inputs[f"a{k}"], inputs[f"b{k}"] = sa, sb
        body.append(f"    s{k} = sub(a{k}, b{k});")
        body.append(f"    w{k} = select(gt(a{k}, 0.0), b{k}, a{k});")
        outs += [f"s{k}", f"w{k}"]
    text = graph_text(inputs, "\n".join(body), outs)
    values = {n: rand(s, i) for i, (n, s) in enumerate(inputs.items())}
    got = run_nnef(text, values)
    for k, (sa, sb) in enumerate(pairs):
        rank = max(len(sa), len(sb))
        a = _left_aligned(values[f"a{k}"], rank)
        b = _left_aligned(values[f"b{k}"], rank)
        np.testing.assert_array_equal(got[2 * k], a - b, err_msg=str((sa, sb)))
        np.testing.assert_array_equal(got[2 * k + 1], np.where(a > 0, b, a), err_msg=str((sa, sb)))


def test_clamp_with_literal_bounds_is_one_clip_with_nnef_semantics():
    """relu6-style clamp(x, 0.0, 6.0) maps to relax.clip; NaN, infinities, ties and a > b."""
    from frontend.support_frontend import graph_of
    from nnef_tvm.frontend import from_nnef

    text = graph_text({"x": [2, 8]}, "\n".join([
        "    r6 = clamp(x, 0.0, 6.0);",
        "    iv = clamp(x, -1.0, 2.0);",
        "    rev = clamp(x, 1.0, -1.0);",     # a > b gives a
    ]), ["r6", "iv", "rev"])
    x = np.array([[np.nan, -7.0, -0.0, 0.0, 5.999, 6.0, 6.5, 1e30],
                  [-1.0, 2.0, -1.5, 2.5, 0.25, np.inf, -np.inf, 3.0]], "float32")
    r6, iv, rev = run_nnef(text, {"x": x})

    def spec(v, a, b):      # max(min(v, b), a) with NNEF's select forms
        m = np.where(v < b, v, b)
        return np.where(m > a, m, a).astype("float32")
    np.testing.assert_array_equal(r6, spec(x, 0.0, 6.0))
    np.testing.assert_array_equal(iv, spec(x, -1.0, 2.0))
    np.testing.assert_array_equal(rev, spec(x, 1.0, -1.0))
    assert r6[0, 0] == 6.0                     # NaN: both comparisons false -> b
    ir = from_nnef(graph_of(text)).script()
    assert ir.count("R.clip(") == 3 and "R.where(" not in ir


def test_clamp_with_one_element_constant_bound_is_a_clip():
    """NNEF-Tools writes relu6 as clamp(x, 0.0, c) with c = constant<scalar>(shape = [], [6.0])."""
    from frontend.support_frontend import graph_of
    from nnef_tvm.frontend import from_nnef

    text = graph_text({"x": [1, 4, 2, 2]}, "\n".join([
        "    c = constant<scalar>(shape = [], value = [6.0]);",
        "    per = constant<scalar>(shape = [1, 4], value = [1.0, 2.0, 3.0, 4.0]);",
        "    y = clamp(x, 0.0, c);",
        "    z = clamp(x, 0.0, per);",           # per-channel bound: stays a select chain
    ]), ["y", "z"])
    x = rand((1, 4, 2, 2), 5, -9.0, 9.0)
    x[0, 0, 0, 0] = np.nan
    y, z = run_nnef(text, {"x": x})
    per = np.arange(1, 5, dtype="float32").reshape(1, 4, 1, 1)

    def spec(v, a, b):
        m = np.where(v < b, v, b)
        return np.where(m > a, m, a).astype("float32")
    np.testing.assert_array_equal(y, spec(x, 0.0, 6.0))
    np.testing.assert_array_equal(z, spec(x, 0.0, per))
    ir = from_nnef(graph_of(text)).script()
    assert ir.count("R.clip(") == 1 and ir.count("R.where(") == 2
