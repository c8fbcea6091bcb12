"""matmul / linear (§4.7, §4.9.2) and add_n / copy_n (§4.9.6) vs numpy.

Tolerance: rtol 1e-5 / atol 1e-5 (float32 accumulation order differs).
"""
import numpy as np

from frontend.support_frontend import graph_text, rand, run_nnef


def test_matmul_transposes_batch_broadcast_linear_add_n_copy_n():
    body = """
    m = matmul(a, b);
    mt = matmul(bt, at, transposeA = true, transposeB = true);
    mb = matmul(a3, b3);
    mbb = matmul(a1, b3);
    l = linear(x, w, bias);
    l0 = linear(x, w);
    s = add_n([x, x2, x3]);
    [c0, c1, c2] = copy_n(x, times = 3);
"""
    outs = "m mt mb mbb l l0 s c0 c1 c2".split()
    text = graph_text({
        "a": [3, 4], "b": [4, 5], "at": [5, 4], "bt": [4, 3],
        "a3": [2, 3, 4], "b3": [2, 4, 5], "a1": [1, 3, 4],
        "x": [2, 4], "w": [6, 4], "bias": [1, 6], "x2": [2, 4], "x3": [2, 4],
    }, body, outs)
    ins = {"a": rand((3, 4), 1), "b": rand((4, 5), 2), "at": rand((5, 4), 3), "bt": rand((4, 3), 4),
           "a3": rand((2, 3, 4), 5), "b3": rand((2, 4, 5), 6), "a1": rand((1, 3, 4), 7),
           "x": rand((2, 4), 8), "w": rand((6, 4), 9), "bias": rand((1, 6), 10),
           "x2": rand((2, 4), 11), "x3": rand((2, 4), 12)}
    got = dict(zip(outs, run_nnef(text, ins)))
    d = {k: v.astype(np.float64) for k, v in ins.items()}
    want = {
        "m": d["a"] @ d["b"],
        "mt": d["bt"].T @ d["at"].T,
        "mb": d["a3"] @ d["b3"],
        "mbb": d["a1"] @ d["b3"],          # batch extent 1 broadcasts
        "l": d["x"] @ d["w"].T + d["bias"],  # filter is [C_out, C_in]
        "l0": d["x"] @ d["w"].T,
        "s": d["x"] + d["x2"] + d["x3"],
        "c0": d["x"], "c1": d["x"], "c2": d["x"],
    }
    for n in outs:
        assert got[n].shape == want[n].shape, n
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-5, err_msg=n)
