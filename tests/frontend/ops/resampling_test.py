"""Resampling converters vs the numpy spec reference: nearest/area downsample, nearest and
multilinear upsample (every method x border, 1-D/2-D/3-D, factors 1-4). float32 rtol/atol 1e-5.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import window_reference as ref  # noqa: E402
from window_harness import Case, run_cases  # noqa: E402

from frontend.support_frontend import rand  # noqa: E402


def _case(op, fn, shape, factor, seed, **attrs):
    x = rand(shape, seed)
    extra = "".join(f", {k} = '{v}'" for k, v in attrs.items())
    return Case({"x": x}, f"{{o}} = {op}({{x}}, factor = {list(factor)}{extra});", ["o"],
                [fn(x, factor, **attrs)], label=f"{op} {factor} {attrs}")


def test_resampling_cases():
    cases = [
        _case("nearest_downsample", ref.nearest_downsample, (1, 2, 6, 9), [2, 3], 1),
        _case("nearest_downsample", ref.nearest_downsample, (2, 3, 8), [4], 2),
        _case("area_downsample", ref.area_downsample, (1, 2, 6, 9), [2, 3], 3),
        _case("area_downsample", ref.area_downsample, (1, 2, 4, 6, 2), [2, 3, 1], 4),
        _case("nearest_upsample", ref.nearest_upsample, (1, 2, 3, 2), [2, 3], 5),
        _case("nearest_upsample", ref.nearest_upsample, (2, 2, 3), [3], 6),
    ]
    seed = 10
    for method in ("symmetric", "asymmetric", "aligned"):
        for border in ("replicate", "constant"):
            for shape, factor in (((1, 2, 3, 4), [2, 3]), ((2, 1, 5), [4]), ((1, 1, 2, 3, 2), [2, 1, 3])):
                cases.append(_case("multilinear_upsample", ref.multilinear_upsample, shape, factor, seed,
                                   method=method, border=border))
                seed += 1
    run_cases(cases)


def test_unknown_method_is_located_error():
    from nnef_tvm.errors import NNEFError
    from nnef_tvm.frontend import from_nnef
    from frontend.support_frontend import graph_of
    text = ("version 1.0;\ngraph G( x ) -> ( y )\n{\n    x = external(shape = [1, 1, 2, 2]);\n"
            "    y = multilinear_upsample(x, factor = [2, 2], border = 'reflect');\n}\n")
    with pytest.raises(NNEFError, match="border 'reflect'"):
        from_nnef(graph_of(text))
