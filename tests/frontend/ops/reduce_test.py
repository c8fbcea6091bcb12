"""Reduction converters vs numpy written from the NNEF definitions (§4.4, moments §4.9.6).

Output keeps the rank (keepdims). Tolerance: rtol 1e-5 / atol 1e-6; indices exact.
"""
import numpy as np

from frontend.support_frontend import graph_text, rand, run_nnef


def _flat_arg(x, axes, fn):
    """Index into the row-major flattening of the reduced sub-tensor (first occurrence)."""
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, kept + list(axes))
    flat = moved.reshape([x.shape[a] for a in kept] + [-1])
    idx = fn(flat, axis=-1)
    return idx.reshape([1 if a in axes else x.shape[a] for a in range(x.ndim)])


def test_reductions_one_graph():
    body = """
    s1 = sum_reduce(x, axes = [1]);
    s2 = sum_reduce(x, axes = [0, 2], normalize = true);
    m1 = mean_reduce(x, axes = [1, 3]);
    mx = max_reduce(x, axes = [3]);
    mn = min_reduce(x, axes = [0, 1, 2, 3]);
    am = argmax_reduce(x, axes = [1]);
    an = argmin_reduce(x, axes = [2]);
    am2 = argmax_reduce(x, axes = [2, 3]);
    an2 = argmin_reduce(x, axes = [1, 3]);
    ay = any_reduce(b, axes = [1]);
    al = all_reduce(b, axes = [0, 2]);
    mean, var = moments(x, axes = [2, 3]);
    ident = sum_reduce(x, axes = []);
    tie = argmax_reduce(t, axes = [1]);
"""
    outs = "s1 s2 m1 mx mn am an am2 an2 ay al mean var ident tie".split()
    text = graph_text({"x": [2, 3, 4, 5], "b": ([2, 3, 4], "logical"), "t": [2, 4]}, body, outs)
    x = rand((2, 3, 4, 5), 1)
    b = rand((2, 3, 4), 2) > 0.8
    t = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], "float32")  # ties: first occurrence
    got = dict(zip(outs, run_nnef(text, {"x": x, "b": b, "t": t})))
    xd = x.astype(np.float64)
    want = {
        "s1": xd.sum(1, keepdims=True),
        "s2": xd.mean((0, 2), keepdims=True),
        "m1": xd.mean((1, 3), keepdims=True),
        "mx": xd.max(3, keepdims=True),
        "mn": xd.min((0, 1, 2, 3), keepdims=True),
        "am": xd.argmax(1)[:, None],
        "an": xd.argmin(2)[:, :, None],
        "am2": _flat_arg(xd, [2, 3], np.argmax),
        "an2": _flat_arg(xd, [1, 3], np.argmin),
        "ay": b.any(1, keepdims=True),
        "al": b.all((0, 2), keepdims=True),
        "mean": xd.mean((2, 3), keepdims=True),
        "var": xd.var((2, 3), keepdims=True),   # population variance (divide by N)
        "ident": xd,
        "tie": np.array([[1], [0]]),
    }
    for n in outs:
        assert got[n].shape == want[n].shape, n
        if n in ("am", "an", "am2", "an2", "tie"):
            assert got[n].dtype == np.int32, n
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6, err_msg=n)
