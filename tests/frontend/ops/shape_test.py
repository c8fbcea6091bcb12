"""Shape-manipulation converters vs numpy written from the NNEF definitions (§4.5).

All results are exact (pure data movement), so comparisons are exact.
"""
import numpy as np
import pytest

from frontend.support_frontend import graph_text, rand, run_nnef


def test_reshape_squeeze_unsqueeze_transpose():
    body = """
    r1 = reshape(x, shape = [0, -1]);
    r2 = reshape(x, shape = [0, 2, -1], axis_start = 1, axis_count = 2);
    r3 = reshape(x, shape = [-1], axis_start = 2);
    r4 = reshape(x, shape = [2, 2], axis_start = 2, axis_count = 1);
    q = squeeze(s, axes = [0, 2]);
    u = unsqueeze(x, axes = [0, 3]);
    t1 = transpose(x, axes = [1, 0]);
    t2 = transpose(x, axes = [3, 1, 0, 2]);
"""
    outs = "r1 r2 r3 r4 q u t1 t2".split()
    text = graph_text({"x": [2, 3, 4, 5], "s": [1, 3, 1, 2]}, body, outs)
    x, s = rand((2, 3, 4, 5), 1), rand((1, 3, 1, 2), 2)
    got = dict(zip(outs, run_nnef(text, {"x": x, "s": s})))
    want = {
        "r1": x.reshape(2, 60),
        # axes [1, 3) = (3, 4) replaced by [0, 2, -1]: 0 copies extent 3, -1 -> 2
        "r2": x.reshape(2, 3, 2, 2, 5),
        "r3": x.reshape(2, 3, 20),
        "r4": x.reshape(2, 3, 2, 2, 5),
        "q": s.reshape(3, 2),
        "u": x.reshape(1, 2, 3, 1, 4, 5),
        "t1": x.transpose(1, 0, 2, 3),       # short axes: trailing dims stay
        "t2": x.transpose(3, 1, 0, 2),
    }
    for n in outs:
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)


def test_split_concat_stack_unstack_tile_gather_cast():
    body = """
    [a, b, c] = split(x, axis = 1, ratios = [1, 2, 3]);
    [d, e] = split(x, axis = 2, ratios = [1, 1]);
    cat = concat([c, a, b], axis = 1);
    st = stack([d, e], axis = 1);
    st0 = stack([d, e, d], axis = 3);
    [u0, u1, u2] = unstack(y, axis = 1);
    ti = tile(y, repeats = [2, 1, 3]);
    g0 = gather(x, i, axis = 0);
    g2 = gather(x, j, axis = 2);
    ci = cast<integer>(f);
    cs = cast<scalar>(i);
    cl = cast<logical>(f);
    cb = cast<scalar>(bl);
"""
    outs = "a b c d e cat st st0 u0 u1 u2 ti g0 g2 ci cs cl cb".split()
    text = graph_text({"x": [2, 6, 4], "y": [2, 3, 2], "i": ([3], "integer"),
                       "j": ([2, 2], "integer"), "f": [5], "bl": ([3], "logical")}, body, outs)
    x, y = rand((2, 6, 4), 1), rand((2, 3, 2), 2)
    i = np.array([1, 0, 1], "int32")
    j = np.array([[3, 0], [2, 2]], "int32")
    f = np.array([-1.5, -0.5, 0.0, 0.7, 2.9], "float32")
    bl = np.array([True, False, True])
    got = dict(zip(outs, run_nnef(text, {"x": x, "y": y, "i": i, "j": j, "f": f, "bl": bl})))
    a, b, c = x[:, :1], x[:, 1:3], x[:, 3:]       # ratios 1:2:3 of extent 6
    d, e = x[:, :, :2], x[:, :, 2:]
    want = {
        "a": a, "b": b, "c": c, "d": d, "e": e,
        "cat": np.concatenate([c, a, b], axis=1),
        "st": np.stack([d, e], axis=1),
        "st0": np.stack([d, e, d], axis=3),
        "u0": y[:, 0], "u1": y[:, 1], "u2": y[:, 2],
        "ti": np.tile(y, (2, 1, 3)),
        "g0": np.take(x, i, axis=0),
        "g2": np.take(x, j, axis=2),
        "ci": np.trunc(f).astype(np.int32),     # truncation toward zero (documented choice)
        "cs": i.astype(np.float32),
        "cl": f != 0,
        "cb": bl.astype(np.float32),
    }
    for n in outs:
        assert got[n].dtype == want[n].dtype, n
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)


def _nnef_slice(x, axes, begin, end, stride):
    """Reference from the spec text: normalize per axis, then a Python range per axis."""
    index = [slice(None)] * x.ndim
    for ax, b, e, s in zip(axes, begin, end, stride):
        n = x.shape[ax]
        if e == 0 and s == 1:
            e = n                                   # legacy 'to the end'
        b = min(max(b + n if b < 0 else b, -1), n)
        e = min(max(e + n if e < 0 else e, -1), n)
        index[ax] = list(range(b, e, s))           # begin, begin + s, ... before end
    out = x
    for ax, idx in enumerate(index):
        if isinstance(idx, list):
            out = np.take(out, idx, axis=ax)
    return out


SLICES = [
    ([1], [1], [3], [1]),
    ([0, 2], [0, -3], [2, -1], [1, 1]),
    ([2], [0], [0], [1]),                 # legacy end = 0 -> to the end
    ([1, 3], [0, 1], [4, 6], [2, 3]),
    ([3], [5], [-7], [-1]),               # negative stride through index 0 (end -> -1)
    ([2, 3], [3, 4], [0, 1], [-2, -2]),
    ([1], [-1], [-5], [-2]),
]


def test_slice_strides_negatives_and_legacy_end():
    body = "\n".join(f"    s{k} = slice(x, axes = {a}, begin = {b}, end = {e}, stride = {s});"
                     for k, (a, b, e, s) in enumerate(SLICES))
    body += "\n    snostride = slice(x, axes = [1, 2], begin = [1, 0], end = [-1, 2]);"
    outs = [f"s{k}" for k in range(len(SLICES))] + ["snostride"]
    text = graph_text({"x": [2, 4, 5, 6]}, body, outs)
    x = rand((2, 4, 5, 6), 3)
    got = run_nnef(text, {"x": x})
    for k, (a, b, e, s) in enumerate(SLICES):
        np.testing.assert_array_equal(got[k], _nnef_slice(x, a, b, e, s), err_msg=str(SLICES[k]))
    np.testing.assert_array_equal(got[-1], x[:, 1:3, 0:2])


def _nnef_pad(x, padding, border, value=0.0):
    """Reference: crop negative amounts, then numpy.pad with the matching mode."""
    crop = tuple(slice(max(-p, 0), n - max(-q, 0)) for n, (p, q) in zip(x.shape, padding))
    x = x[crop]
    widths = [(max(p, 0), max(q, 0)) for p, q in padding]
    if border == "constant":
        return np.pad(x, widths, mode="constant", constant_values=value)
    mode = {"replicate": "edge", "reflect": "reflect", "reflect-even": "symmetric"}[border]
    return np.pad(x, widths, mode=mode)


PADS = [
    ([(0, 0), (1, 2), (2, 1)], "constant", 0.0),
    ([(1, 0), (0, 0), (1, 1)], "constant", -3.5),
    ([(0, 0), (-1, 2), (1, -2)], "constant", 1.0),
    ([(0, 0), (2, 1), (1, 3)], "replicate", 0.0),
    ([(0, 0), (2, 1), (3, 2)], "reflect", 0.0),
    ([(0, 0), (2, 3), (3, 1)], "reflect-even", 0.0),   # numpy 'symmetric'
    ([(1, 1), (0, 0), (0, 0)], "reflect-even", 0.0),
]


def test_pad_border_modes():
    body = "\n".join(
        f"    p{k} = pad(x, padding = {[tuple(p) for p in pd]}, border = '{bd}', value = {v});"
        for k, (pd, bd, v) in enumerate(PADS))
    text = graph_text({"x": [2, 3, 4]}, body, [f"p{k}" for k in range(len(PADS))])
    x = rand((2, 3, 4), 4)
    got = run_nnef(text, {"x": x})
    for k, (pd, bd, v) in enumerate(PADS):
        np.testing.assert_array_equal(got[k], _nnef_pad(x, pd, bd, v), err_msg=str(PADS[k]))


def _random_slice(rng, shape):
    axes = sorted(rng.choice(len(shape), size=rng.integers(1, len(shape) + 1), replace=False))
    begin, end, stride = [], [], []
    for a in axes:
        n = shape[a]
        s = int(rng.choice([1, 2, 3, -1, -2, -3]))
        while True:
            b, e = int(rng.integers(-n - 2, n + 2)), int(rng.integers(-n - 2, n + 2))
            if e == 0:
                continue                      # legacy meaning covered elsewhere
            nb = min(max(b + n if b < 0 else b, -1), n)
            ne = min(max(e + n if e < 0 else e, -1), n)
            ok = (0 <= nb < ne) if s > 0 else (ne < nb < n)
            if ok:
                break
        begin.append(b)
        end.append(e)
        stride.append(s)
    return [int(a) for a in axes], begin, end, stride


def test_random_slices_and_pads_in_one_graph():
    rng = np.random.default_rng(1234)
    shape = (3, 5, 6)
    slices = [_random_slice(rng, shape) for _ in range(12)]
    pads = []
    for _ in range(8):
        border = str(rng.choice(["constant", "replicate", "reflect", "reflect-even"]))
        lim = 4 if border != "reflect" else 2   # numpy 'reflect' wants p < n per step
        pd = [(int(rng.integers(-1 if border == "constant" else 0, lim)),
               int(rng.integers(-1 if border == "constant" else 0, lim))) for _ in shape]
        pads.append((pd, border, float(np.round(rng.uniform(-2, 2), 2))))
    body = [f"    s{k} = slice(x, axes = {a}, begin = {b}, end = {e}, stride = {s});"
            for k, (a, b, e, s) in enumerate(slices)]
    body += [f"    p{k} = pad(x, padding = {[tuple(p) for p in pd]}, border = '{bd}', value = {v});"
             for k, (pd, bd, v) in enumerate(pads)]
    outs = [f"s{k}" for k in range(len(slices))] + [f"p{k}" for k in range(len(pads))]
    text = graph_text({"x": list(shape)}, "\n".join(body), outs)
    x = rand(shape, 5)
    got = run_nnef(text, {"x": x})
    for k, sl in enumerate(slices):
        np.testing.assert_array_equal(got[k], _nnef_slice(x, *sl), err_msg=str(sl))
    for k, (pd, bd, v) in enumerate(pads):
        np.testing.assert_array_equal(got[len(slices) + k], _nnef_pad(x, pd, bd, v),
                                      err_msg=str(pads[k]))
