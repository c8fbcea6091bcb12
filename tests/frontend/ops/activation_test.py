"""Activation converters vs numpy written from the NNEF formulas (§4.9.1).

Tolerance: float32, rtol 1e-5 / atol 1e-6.
"""
import numpy as np

from frontend.support_frontend import graph_text, rand, run_nnef


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axes):
    e = np.exp(x - x.max(axis=tuple(axes), keepdims=True))
    return e / e.sum(axis=tuple(axes), keepdims=True)


def test_activations_one_graph():
    body = """
    y_sigmoid = sigmoid(x);
    y_relu = relu(x);
    y_prelu = prelu(x, alpha);
    y_leaky = leaky_relu(x, alpha = 0.2);
    y_elu = elu(x);
    y_elu2 = elu(x, alpha = 0.5);
    y_selu = selu(x);
    y_selu2 = selu(x, alpha = 2.0, lambda = 1.5);
    y_gelu = gelu(x);
    y_silu = silu(x);
    y_softplus = softplus(x);
    y_sm = softmax(x);
    y_sm_last = softmax(x, axes = [3]);
    y_sm_multi = softmax(x, axes = [2, 3]);
    y_sm_all = softmax(x, axes = [1, 2, 3]);
"""
    names = ["sigmoid", "relu", "prelu", "leaky", "elu", "elu2", "selu", "selu2", "gelu",
             "silu", "softplus", "sm", "sm_last", "sm_multi", "sm_all"]
    text = graph_text({"x": [2, 3, 4, 5], "alpha": [1, 3]}, body, [f"y_{n}" for n in names])
    x = rand((2, 3, 4, 5), 1, -4, 4)
    alpha = np.array([[0.1, 0.25, -0.5]], "float32")
    got = dict(zip(names, run_nnef(text, {"x": x, "alpha": alpha})))
    xd = x.astype(np.float64)
    a4 = alpha.reshape(1, 3, 1, 1)  # LEFT-aligned [1, C]
    elu = lambda v, a: np.where(v < 0, a * (np.exp(v) - 1), v)  # noqa: E731
    want = {
        "sigmoid": sigmoid(xd),
        "relu": np.maximum(xd, 0),
        "prelu": np.where(xd < 0, a4 * xd, xd),
        "leaky": np.where(xd < 0, 0.2 * xd, xd),
        "elu": elu(xd, 1.0),
        "elu2": elu(xd, 0.5),
        "selu": 1.05070102 * elu(xd, 1.67326319),
        "selu2": 1.5 * elu(xd, 2.0),
        "gelu": xd * sigmoid(1.702 * xd),   # the spec's definition, not erf
        "silu": xd * sigmoid(xd),
        "softplus": np.log(np.exp(xd) + 1),
        "sm": softmax(xd, [1]),             # default axes = [1], the channel axis
        "sm_last": softmax(xd, [3]),
        "sm_multi": softmax(xd, [2, 3]),    # jointly over both axes
        "sm_all": softmax(xd, [1, 2, 3]),
    }
    for n in names:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6, err_msg=n)
    # the erf GELU differs noticeably: make sure we are not it
    from math import erf
    erf_gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))(xd)
    assert np.abs(got["gelu"] - erf_gelu).max() > 1e-3
