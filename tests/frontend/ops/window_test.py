"""box / debox / argmax_pool / sample / desample converters vs the numpy spec reference.

Window parameters are full rank; cases cover windows over batch/channel dims, every
border (constant, ignore, replicate, reflect, reflect-even), negative padding, dilation,
automatic padding and the >3-windowed-dims kernel fallback. Tolerance float32 rtol/atol 1e-5
(indices exact).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402


def fmt_attrs(**attrs):
    parts = []
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, str):
            parts.append(f"{k} = '{v}'")
        elif isinstance(v, bool):
            parts.append(f"{k} = {'true' if v else 'false'}")
        else:
            parts.append(f"{k} = {list(v)}")
    return "".join(", " + p for p in parts)


def window_case(op, fn, shape, seed, label="", data=None, **attrs):
    x = rand(shape, seed) if data is None else data
    kw = {k: v for k, v in attrs.items() if v is not None}
    want = fn(x, **kw)
    return Case({"x": x}, f"{{o}} = {op}({{x}}{fmt_attrs(**attrs)});", ["o"], [want], label=label)


BOX_CASES = [
    dict(shape=(1, 2, 6, 5), size=[1, 1, 3, 3], label="spatial, auto pad"),
    dict(shape=(1, 2, 6, 5), size=[1, 1, 3, 2], border="ignore", padding=[(0, 0), (0, 0), (1, 1), (1, 0)],
         stride=[1, 1, 2, 1], normalize=True, label="ignore, normalized"),
    dict(shape=(2, 3, 5, 4), size=[1, 1, 3, 3], border="constant", normalize=True, stride=[1, 1, 2, 2],
         label="constant normalized = count_include_pad"),
    dict(shape=(1, 5, 3, 3), size=[1, 3, 1, 1], normalize=True, label="channel window (LRN-style)"),
    dict(shape=(4, 3, 5), size=[2, 1, 3], stride=[2, 1, 1], padding=[(0, 0), (0, 0), (1, 1)], border="ignore",
         normalize=True, label="batch + spatial window"),
    dict(shape=(1, 2, 5, 6), size=[1, 1, 3, 3], border="replicate", padding=[(0, 0), (0, 0), (2, 1), (1, 2)],
         normalize=True, label="replicate"),
    dict(shape=(1, 2, 4, 5), size=[1, 1, 2, 3], border="reflect", padding=[(0, 0), (0, 0), (1, 1), (2, 2)],
         label="reflect"),
    dict(shape=(1, 1, 3, 4), size=[1, 1, 3, 3], border="reflect-even", padding=[(0, 0), (0, 0), (4, 3), (1, 1)],
         label="reflect-even multi-period"),
    dict(shape=(1, 2, 7, 7), size=[1, 1, 2, 3], padding=[(0, 0), (0, 0), (-1, 1), (2, -1)], dilation=[1, 1, 2, 2],
         label="negative padding + dilation"),
    dict(shape=(2, 2, 3, 4, 3), size=[2, 2, 2, 2, 1], padding=[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)],
         border="ignore", normalize=True, label="4 windowed dims -> TE kernel"),
    dict(shape=(2, 3, 4, 3), size=[2, 2, 2, 2], normalize=True, label="all dims, auto pad -> TE kernel"),
    dict(shape=(1, 4, 6), size=[1, 1, 1], stride=[1, 2, 3], label="subsampling only"),
    dict(shape=(2, 3), size=[2, 2], border="ignore", normalize=True, label="rank 2"),
    dict(shape=(1, 3, 4, 6), size=[1, 2, 1, 2], stride=[1, 1, 1, 2], border="ignore", normalize=True,
         label="channel + width, interleaved with a trivial dim"),
]


def test_box_cases():
    cases = []
    for k, c in enumerate(BOX_CASES):
        c = dict(c)
        shape, label = c.pop("shape"), c.pop("label")
        cases.append(window_case("box", ref.box, shape, 100 + k, label=label, **c))
    run_cases(cases)


def test_debox_cases():
    cases = [
        window_case("debox", ref.debox, (1, 2, 3, 4), 1, size=[1, 1, 2, 2], stride=[1, 1, 2, 2], label="size=stride"),
        window_case("debox", ref.debox, (1, 2, 3, 3), 2, size=[1, 1, 3, 3], stride=[1, 1, 2, 2],
                    padding=[(0, 0), (0, 0), (1, 1), (1, 0)], normalize=True, label="overlap normalized"),
        window_case("debox", ref.debox, (1, 2, 3, 3), 3, size=[1, 1, 3, 3], stride=[1, 1, 2, 2],
                    padding=[(0, 0), (0, 0), (1, 1), (1, 1)], border="ignore", normalize=True,
                    output_shape=[1, 2, 6, 5], label="ignore normalized, output_shape"),
        window_case("debox", ref.debox, (2, 4, 3), 4, size=[1, 2, 2], stride=[1, 2, 1], dilation=[1, 1, 2],
                    label="channel window, dilation, auto pad"),
    ]
    run_cases(cases)


def test_argmax_sample_desample_cases():
    cases = []
    ties = np.array([[[[1.0, 3.0, 3.0, 0.0], [2.0, 3.0, -1.0, 5.0], [5.0, 5.0, 5.0, 5.0]]]], dtype=np.float32)
    specs = [
        dict(data=ties, size=[1, 1, 2, 2], stride=[1, 1, 1, 2], padding=[(0, 0), (0, 0), (0, 1), (0, 0)],
             label="ties -> first"),
        dict(shape=(1, 2, 6, 5), size=[1, 1, 3, 3], stride=[1, 1, 2, 2], border="ignore", label="ignore auto pad"),
        dict(shape=(1, 2, 5, 5), size=[1, 1, 3, 2], stride=[1, 1, 2, 2], border="constant",
             padding=[(0, 0), (0, 0), (1, 1), (1, 0)], label="constant: zeros compete"),
        dict(shape=(1, 4, 3, 3), size=[1, 3, 1, 2], padding=[(0, 0), (1, 1), (0, 0), (0, 1)], border="replicate",
             label="channel window, replicate"),
        dict(shape=(2, 3, 7), size=[2, 1, 3], stride=[2, 1, 2], dilation=[1, 1, 2], border="reflect",
             label="batch window, dilation, reflect"),
    ]
    for k, s in enumerate(specs):
        s = dict(s)
        data = s.pop("data", None)
        shape = s.pop("shape", None)
        label = s.pop("label")
        x = data if data is not None else rand(shape, 300 + k)
        kw = dict(s)
        idx = ref.argmax_pool(x, **kw)
        attrs = fmt_attrs(**kw)
        # argmax_pool alone, max_pool_with_index (value + index), sample at the argmax
        cases.append(Case({"x": x}, f"{{i}} = argmax_pool({{x}}{attrs});", ["i"], [idx], label=label))
        cases.append(Case({"x": x}, f"{{v}}, {{i}} = max_pool_with_index({{x}}{attrs});", ["v", "i"],
                          [ref.max_pool(x, **kw), idx], label="with_index " + label))
        if kw.get("border") != "ignore":
            rng = np.random.default_rng(k)
            rnd = rng.integers(0, int(np.prod(kw["size"])), size=idx.shape).astype(np.int32)
            cases.append(Case({"x": x, "n": rnd}, f"{{o}} = sample({{x}}, {{n}}{attrs});", ["o"],
                              [ref.sample(x, rnd, **kw)], label="sample " + label))
    # desample: scatter back through the argmax (max-unpooling) and with arbitrary indices
    for k, (shape, kw) in enumerate([
        ((1, 2, 6, 4), dict(size=[1, 1, 2, 2], stride=[1, 1, 2, 2], padding=[(0, 0)] * 4)),
        ((1, 2, 5, 5), dict(size=[1, 1, 3, 3], stride=[1, 1, 2, 2])),
        ((2, 3, 4), dict(size=[1, 2, 3], stride=[1, 1, 2], padding=[(0, 0), (1, 0), (1, 1)], dilation=[1, 1, 2])),
    ]):
        x = rand(shape, 400 + k)
        idx = ref.argmax_pool(x, **kw)
        y = rand(idx.shape, 500 + k)
        out_shape = list(shape)
        want = ref.desample(y, idx, output_shape=out_shape, **kw)
        cases.append(Case({"y": y, "n": idx.astype(np.int32)},
                          f"{{o}} = desample({{y}}, {{n}}{fmt_attrs(output_shape=out_shape, **kw)});",
                          ["o"], [want], label=f"desample {k}"))
    run_cases(cases, our_shapes=True)   # Khronos wants index.shape == input.shape (O3)
