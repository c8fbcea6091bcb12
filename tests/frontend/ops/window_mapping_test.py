"""The sliding-window converters map onto native Relax operators where one exists.

Numbers are checked elsewhere; here we check the *shape* of the produced Relax so that
TVM can fuse and schedule it: conv + bias + relu fuse into one kernel, pools stay Relax
pools (no TE fallback, no transposes for channel windows), borders become pads.
No compilation (conversion + FuseOps only), so these are fast.
"""
import re

import pytest
import tvm
from tvm import relax

from nnef_tvm.errors import NNEFError
from nnef_tvm.frontend import from_nnef

from frontend.support_frontend import graph_of, graph_text


def _main(inputs, body, outputs):
    return from_nnef(graph_of(graph_text(inputs, body, outputs)))


def _calls(mod):
    text = mod["main"].script()
    return re.findall(r"R\.([a-z_0-9.]+)\(", text)


def test_conv_bias_relu_fuse_into_one_kernel():
    mod = _main({"x": [1, 3, 8, 8], "w": [4, 3, 3, 3], "b": [1, 4]},
                "    y = relu(conv(x, w, b, stride = [2, 2]));", ["y"])
    calls = _calls(mod)
    assert "nn.conv2d" in calls and "call_tir" not in calls
    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    names = [gv.name_hint for gv in seq(mod).functions.keys()]
    assert "fused_conv2d_add_relu" in names, names


def test_deconv_and_conv_dims_map_natively():
    mod = _main({"x": [1, 2, 5], "w": [2, 2, 3], "v": [1, 2, 3, 3, 3], "k": [2, 1, 2, 2, 2]},
                "    y = deconv(x, w, stride = [2]);\n    z = conv(v, k, groups = 2, border = 'replicate');",
                ["y", "z"])
    calls = _calls(mod)
    assert "nn.conv1d_transpose" in calls and "nn.conv3d" in calls and "nn.pad" in calls


def test_pools_are_relax_pools_and_channel_windows_need_no_transpose():
    mod = _main({"x": [1, 4, 6, 6]},
                "    a = max_pool(x, size = [1, 1, 3, 3], border = 'ignore');\n"
                "    b = avg_pool(x, size = [1, 1, 2, 2], stride = [1, 1, 2, 2]);\n"
                "    c = local_response_normalization(x, size = [1, 3, 1, 1]);",
                ["a", "b", "c"])
    calls = _calls(mod)
    assert calls.count("nn.max_pool2d") == 1 and calls.count("nn.avg_pool2d") == 2
    assert "permute_dims" not in calls and "call_tir" not in calls


def test_reflect_even_is_a_gather_and_multilinear_is_resize():
    mod = _main({"x": [1, 2, 4, 4], "w": [2, 2, 3, 3]},
                "    y = conv(x, w, border = 'reflect-even');\n"
                "    z = multilinear_upsample(x, factor = [2, 2]);\n"
                "    u = multilinear_upsample(x, factor = [2, 2], border = 'constant');",
                ["y", "z", "u"])
    calls = _calls(mod)
    assert "take" in calls and "image.resize2d" in calls and "nn.conv2d_transpose" in calls


@pytest.mark.parametrize("body,match", [
    ("    y = conv(x, w, border = 'ignore');", "border 'ignore'"),
    ("    y = debox(x, size = [1, 1, 2, 2], border = 'replicate');", "border 'replicate'"),
])
def test_unsupported_borders_are_located_errors(body, match):
    with pytest.raises(NNEFError, match=match) as info:
        _main({"x": [1, 2, 4, 4], "w": [2, 2, 3, 3]}, body, ["y"])
    assert info.value is not None


def test_constant_border_max_pool_needs_no_padded_copy():
    mod = _main({"x": [1, 4, 6, 6]}, "    y = max_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2]);", ["y"])
    calls = _calls(mod)
    assert "nn.max_pool2d" in calls and "where" in calls and "nn.pad" not in calls
