"""Seeded random attribute sweeps for conv/deconv/box/pools (one compiled graph per sweep).

Random full-rank windows (including batch/channel dims), random borders, explicit or
automatic padding (possibly negative), strides, dilations and groups, each compared to the
numpy spec reference. The seed is fixed, so a failure is reproducible; the case label
shows the attributes. float32 tolerance 1e-4.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402
from window_test import fmt_attrs  # noqa: E402

BORDERS = ["constant", "ignore", "replicate", "reflect", "reflect-even"]


def _random_window(rng, shape, allow_batch=True):
    """Random valid full-rank window attributes for ``shape``."""
    while True:
        size, stride, dilation, padding = [], [], [], []
        for k, n in enumerate(shape):
            windowed = (k >= 2 or (allow_batch and rng.random() < 0.3))
            f = int(rng.integers(1, 4)) if windowed else 1
            s = int(rng.integers(1, 3)) if windowed else 1
            d = int(rng.integers(1, 3)) if windowed and f > 1 else 1
            p = (int(rng.integers(-1, 3)), int(rng.integers(-1, 3))) if windowed else (0, 0)
            size.append(f)
            stride.append(s)
            dilation.append(d)
            padding.append(p)
        if rng.random() < 0.3:
            padding = []
        _, _, _, out = ref._window_params(shape, size, padding, stride, dilation)
        pads = padding or [ref.auto_padding(n, f, s, d) for n, f, s, d in zip(shape, size, stride, dilation)]
        # reflect needs room to mirror; keep crops smaller than the extent
        if all(o >= 1 for o in out) and all(p < n and q < n and -p < n and -q < n
                                            for (p, q), n in zip(pads, shape)):
            return dict(size=size, padding=padding, stride=stride, dilation=dilation)


def test_random_window_ops():
    rng = np.random.default_rng(2024)
    cases = []
    ops = [("box", lambda x, **kw: ref.box(x, **kw), {"normalize": False}),
           ("box", lambda x, **kw: ref.box(x, normalize=True, **kw), {"normalize": True}),
           ("max_pool", ref.max_pool, {}), ("avg_pool", ref.avg_pool, {}), ("argmax_pool", ref.argmax_pool, {})]
    for k in range(20):
        op, fn, extra = ops[k % len(ops)]
        rank = int(rng.integers(3, 6))
        shape = tuple(int(v) for v in rng.integers(2, 6, size=rank))
        attrs = _random_window(rng, shape)
        border = BORDERS[int(rng.integers(0, len(BORDERS)))]
        if op == "max_pool" and border == "ignore" and attrs["padding"]:
            border = "constant"     # avoid windows made only of padding (max of nothing)
        x = rng.uniform(-2, 2, size=shape).astype(np.float32)
        want = fn(x, border=border, **attrs)
        text_attrs = fmt_attrs(size=attrs["size"], border=border, padding=attrs["padding"] or None,
                               stride=attrs["stride"], dilation=attrs["dilation"], **extra)
        cases.append(Case({"x": x}, f"{{o}} = {op}({{x}}{text_attrs});", ["o"], [want], rtol=1e-4, atol=1e-4,
                          label=f"{op} {shape} {border} {attrs}"))
    run_cases(cases)


def test_random_conv_deconv():
    rng = np.random.default_rng(7)
    cases = []
    for k in range(16):
        nsp = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2, 0]))
        cin = 2 * int(rng.integers(1, 3))
        g = cin if groups == 0 else groups
        deconv = k % 2 == 1
        # deconv groups = 0 means G = output channels = filter[1] * G, so filter[1] = 1
        cout = g * (1 if deconv and groups == 0 else int(rng.integers(1, 3)))
        spatial = tuple(int(v) for v in rng.integers(3, 7, size=nsp))
        ks = tuple(int(v) for v in rng.integers(1, 4, size=nsp))
        stride = [int(v) for v in rng.integers(1, 3, size=nsp)]
        dilation = [int(v) for v in rng.integers(1, 3, size=nsp)]
        border = ["constant", "replicate", "reflect", "reflect-even"][int(rng.integers(0, 4))]
        x = rng.uniform(-2, 2, size=(1, cin) + spatial).astype(np.float32)
        b = rng.uniform(-1, 1, size=(1, cout)).astype(np.float32)
        if rng.random() < 0.5:
            padding = [(int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nsp)]
        else:
            padding = []
        if not deconv:
            w = rng.uniform(-1, 1, size=(cout, cin // g) + ks).astype(np.float32)
            _, _, _, out = ref._window_params(spatial, list(ks), padding, stride, dilation)
            if any(o < 1 for o in out):
                padding = []
            want = ref.conv(x, w, b, border, padding, stride, dilation, groups)
            op = "conv"
            extra = {}
        else:
            w = rng.uniform(-1, 1, size=(cin, cout // g) + ks).astype(np.float32)
            # a consistent output_shape: the formula extent plus a legal output padding
            if padding:
                big = [ref.up_extent(n, f, p, q, s, d) for n, f, (p, q), s, d
                       in zip(spatial, ks, padding, stride, dilation)]
                big = [X + int(rng.integers(0, s)) for X, s in zip(big, stride)]
                if any(X < 1 for X in big):
                    padding, big = [], [n * s for n, s in zip(spatial, stride)]
            else:
                big = [n * s for n, s in zip(spatial, stride)]
            out_shape = [1, cout] + big
            want = ref.deconv(x, w, b, border, padding, stride, dilation, out_shape, groups)
            op = "deconv"
            extra = {"output_shape": out_shape}
        text = fmt_attrs(border=border, padding=padding or None, stride=stride, dilation=dilation, **extra)
        cases.append(Case({"x": x, "w": w, "b": b}, f"{{o}} = {op}({{x}}, {{w}}, {{b}}{text}, groups = {groups});",
                          ["o"], [want], rtol=1e-4, atol=1e-4,
                          label=f"{op} x{x.shape} w{w.shape} {border} pad={padding} s={stride} d={dilation}"))
    run_cases(cases)


def test_random_debox():
    """debox over spatial windows (depthwise conv_transpose) and over batch/channel (kernel)."""
    rng = np.random.default_rng(11)
    cases = []
    for k in range(10):
        rank = int(rng.integers(3, 6))
        shape = tuple(int(v) for v in rng.integers(2, 5, size=rank))
        size, stride, dilation, padding = [], [], [], []
        for d in range(rank):
            windowed = d >= 2 or (k % 3 == 0 and rng.random() < 0.5)
            f = int(rng.integers(1, 4)) if windowed else 1
            size.append(f)
            stride.append(int(rng.integers(1, 3)) if windowed else 1)
            dilation.append(int(rng.integers(1, 3)) if windowed and f > 1 else 1)
            padding.append((int(rng.integers(0, f)), int(rng.integers(0, f))) if windowed else (0, 0))
        big = [ref.up_extent(n, f, p, q, s, d) for n, f, (p, q), s, d in zip(shape, size, padding, stride, dilation)]
        if any(X < 1 for X in big):
            continue
        out_shape = [X + int(rng.integers(0, s)) for X, s in zip(big, stride)]
        border = ["constant", "ignore"][k % 2]
        normalize = bool(rng.random() < 0.6)
        x = rng.uniform(-2, 2, size=shape).astype(np.float32)
        want = ref.debox(x, size, border, padding, stride, dilation, out_shape, normalize)
        attrs = fmt_attrs(size=size, border=border, padding=padding, stride=stride, dilation=dilation,
                          output_shape=out_shape, normalize=normalize)
        cases.append(Case({"x": x}, f"{{o}} = debox({{x}}{attrs});", ["o"], [want], rtol=1e-4, atol=1e-4,
                          label=f"debox {shape} {attrs}"))
    assert len(cases) >= 6
    run_cases(cases)
