"""conv / deconv / separable_conv / separable_deconv converters vs the numpy spec reference.

All cases of a test are compiled as one graph (see window_harness). Tolerance: float32
rtol 1e-5 / atol 1e-4 (sums of up to ~50 products of values in [-2, 2]).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402


def _fmt(**attrs):
    parts = []
    for k, v in attrs.items():
        if v is None:
            continue
        parts.append(f"{k} = '{v}'" if isinstance(v, str) else f"{k} = {list(v) if isinstance(v, tuple) else v}")
    return "".join(", " + p for p in parts)


def _conv_case(xs, ws, seed, bias=None, label="", op="conv", **attrs):
    x = rand(xs, seed)
    w = rand(ws, seed + 1)
    inputs = {"x": x, "w": w}
    kw = {k: v for k, v in attrs.items() if v is not None}
    if isinstance(bias, tuple):
        b = rand(bias, seed + 2)
        inputs["b"] = b
        btext = ", {b}"
    elif bias is not None:
        b = bias
        btext = f", {bias}"
    else:
        b = 0.0
        btext = ""
    fn = ref.conv if op == "conv" else ref.deconv
    want = fn(x, w, b, **kw)
    body = f"{{o}} = {op}({{x}}, {{w}}{btext}{_fmt(**attrs)});"
    return Case(inputs, body, ["o"], [want], rtol=1e-5, atol=1e-4, label=label)


def test_conv_cases():
    cases = [
        _conv_case((2, 3, 7, 6), (4, 3, 3, 3), 1, bias=(1, 4), padding=[(1, 1), (0, 2)], stride=[2, 1],
                   label="bias, explicit padding, stride"),
        _conv_case((1, 4, 9, 8), (6, 2, 3, 2), 2, groups=2, dilation=[2, 1], stride=[2, 2], label="groups+auto pad"),
        _conv_case((1, 3, 6, 6), (6, 1, 3, 3), 3, groups=0, padding=[(1, 1), (1, 1)], label="depthwise x2"),
        _conv_case((2, 2, 8), (3, 2, 4), 4, border="replicate", padding=[(2, 1)], label="1-D replicate"),
        _conv_case((1, 2, 5, 6), (2, 2, 3, 3), 5, border="reflect", padding=[(1, 2), (2, 1)], label="reflect"),
        _conv_case((1, 2, 3, 4), (2, 2, 3, 2), 6, border="reflect-even", padding=[(3, 3), (2, 5)],
                   label="reflect-even, multi-period"),
        _conv_case((1, 2, 7, 7), (3, 2, 3, 3), 7, padding=[(-1, 1), (2, -2)], label="negative padding"),
        _conv_case((1, 2, 5, 4, 6), (2, 2, 2, 3, 3), 8, bias=0.5, stride=[2, 1, 2], label="3-D auto pad, literal bias"),
        _conv_case((1, 2, 7, 7), (3, 2, 3, 3), 9, border="replicate", padding=[(-1, 2), (1, 0)], dilation=[1, 2],
                   label="replicate with cropping and dilation"),
        _conv_case((1, 3, 5, 5), (3, 3, 1, 1), 10, bias=(1, 3), label="1x1 conv, [1,C] bias"),
        _conv_case((1, 2, 6), (2, 2, 3), 11, border="reflect-even", stride=[2], label="1-D reflect-even auto pad"),
    ]
    run_cases(cases)


def test_deconv_cases():
    cases = [
        _conv_case((1, 3, 4, 5), (3, 2, 3, 3), 1, op="deconv", stride=[2, 2], bias=(1, 2), label="auto pad x*s"),
        _conv_case((1, 2, 4, 3), (2, 3, 3, 2), 2, op="deconv", stride=[2, 3], padding=[(1, 1), (0, 1)],
                   output_shape=[1, 3, 8, 8], label="output_shape -> output_padding"),
        _conv_case((2, 4, 3, 3), (4, 2, 3, 3), 3, op="deconv", groups=2, dilation=[2, 1], padding=[(1, 0), (1, 1)],
                   label="groups + dilation"),
        _conv_case((1, 3, 3, 4), (3, 1, 2, 2), 4, op="deconv", groups=0, stride=[2, 2],
                   output_shape=[1, 3, 6, 8], label="groups=0 with output_shape"),
        _conv_case((1, 2, 5), (2, 2, 3), 5, op="deconv", border="replicate", stride=[2], padding=[(1, 1)],
                   label="1-D replicate"),
        _conv_case((1, 2, 4), (2, 1, 4), 6, op="deconv", border="reflect", stride=[2], padding=[(2, 1)],
                   label="1-D reflect"),
        _conv_case((1, 1, 3, 3), (1, 2, 3, 3), 7, op="deconv", border="reflect-even", stride=[1, 2],
                   padding=[(2, 2), (0, 3)], label="2-D reflect-even"),
        _conv_case((1, 2, 2, 3, 2), (2, 2, 2, 3, 2), 8, op="deconv", stride=[2, 1, 2], label="3-D auto pad"),
        _conv_case((1, 2, 3, 3), (2, 2, 1, 1), 9, op="deconv", stride=[2, 2], label="O11: f < s, X = x*s"),
        _conv_case((1, 2, 4), (2, 2, 3), 10, op="deconv", stride=[2], padding=[(-1, 0)], label="negative padding"),
        _conv_case((1, 2, 4, 4), (2, 2, 3, 3), 11, op="deconv", stride=[2, 2], padding=[(0, 0), (1, 1)],
                   output_shape=[1, 2, 10, 8], bias=0.25, label="output_padding = s-1"),
    ]
    run_cases(cases)


def test_separable_cases():
    rng_cases = []
    x = rand((1, 3, 6, 6), 20)
    plane = rand((3, 1, 3, 3), 21)
    point = rand((4, 3, 1, 1), 22)
    b = rand((1, 4), 23)
    want = ref.conv(ref.conv(x, plane, border="reflect", padding=[(1, 1), (1, 1)], stride=[2, 1], groups=0),
                    point, b)
    rng_cases.append(Case({"x": x, "pl": plane, "pt": point, "b": b},
                          "{o} = separable_conv({x}, {pl}, {pt}, {b}, border = 'reflect', "
                          "padding = [(1, 1), (1, 1)], stride = [2, 1]);", ["o"], [want], atol=1e-4))
    x = rand((1, 4, 3, 3), 24)
    point = rand((4, 2, 1, 1), 25)
    plane = rand((2, 1, 2, 2), 26)
    want = ref.deconv(ref.deconv(x, point), plane, 0.5, stride=[2, 2], groups=0)
    rng_cases.append(Case({"x": x, "pl": plane, "pt": point},
                          "{o} = separable_deconv({x}, {pl}, {pt}, 0.5, stride = [2, 2]);", ["o"], [want],
                          atol=1e-4))
    run_cases(rng_cases)


def test_unsupported_border_is_located_error():
    from nnef_tvm.errors import NNEFError
    from frontend.support_frontend import graph_of
    from nnef_tvm.frontend import from_nnef
    text = ("version 1.0;\ngraph G( x, w ) -> ( y )\n{\n    x = external(shape = [1, 1, 4, 4]);\n"
            "    w = external(shape = [1, 1, 2, 2]);\n    y = conv(x, w, border = 'ignore');\n}\n")
    with pytest.raises(NNEFError, match="border 'ignore'"):
        from_nnef(graph_of(text))
