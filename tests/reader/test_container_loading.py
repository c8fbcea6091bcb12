"""End to end through ``nnef_tvm.reader.loader.load``: the quantized example from every container
kind gives the same weights (dequantized per graph.quant) and quantization entries."""
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest

from nnef_tvm.errors import NNEFError

EXAMPLES = "/work/shared/nnef/examples"
_here = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "nnef", "examples"))
if os.path.isdir(_here):
    EXAMPLES = _here
QUANTIZED = os.path.join(EXAMPLES, "06_quantized")


def _loader():
    from nnef_tvm.reader import stdlib
    if not stdlib.STDLIB_PATH.exists():
        pytest.skip("the standard library file is not in this checkout yet")
    from nnef_tvm.reader.loader import load
    return load


pytestmark = pytest.mark.skipif(not os.path.isdir(QUANTIZED), reason="shared NNEF examples not available")


def _members():
    out = {}
    for dirpath, _, files in os.walk(QUANTIZED):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, QUANTIZED).replace(os.sep, "/")] = open(full, "rb").read()
    return out


def _archive(tmp_path, kind):
    members = _members()
    if kind == "folder":
        return QUANTIZED
    if kind == "zip":
        path = tmp_path / "m.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for n, d in members.items():
                z.writestr(n, d)
        return str(path)
    path = tmp_path / ("m.tar" if kind == "tar" else "m.tgz")
    with tarfile.open(path, "w" if kind == "tar" else "w:gz") as tar:
        for n, d in members.items():
            info = tarfile.TarInfo(("model.nnef/" if kind == "tgz-topdir" else "") + n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    return str(path)


@pytest.mark.parametrize("kind", ["folder", "tar", "tgz", "tgz-topdir", "zip"])
def test_container_loading_quantized_example(kind, tmp_path):
    load = _loader()
    model = load(_archive(tmp_path, kind))
    t = model.graph.tensors
    # filter.dat holds int8 codes; graph.quant scales them per output channel (axis 0)
    assert t["filter"].data.dtype == np.float32
    assert t["filter"].data.ravel().tolist() == [1, -2, 1.5, -2, 1.25, -1.5]
    assert t["bias"].data.tolist() == [[0.5, -0.5, 0.0]]
    np.testing.assert_array_equal(t["fc_w"].data, np.array([[0, .1, .2], [.3, .4, .5]], np.float32))
    assert t["act"].quantization["op-name"] == "min_max_linear_quantize"
    assert t["output"].quantization == {"op-name": "logarithmic_quantize", "max": np.float32(16.0), "bits": 5}


def test_container_loading_bad_tensor_header(tmp_path):
    load = _loader()
    with pytest.raises(NNEFError) as e:
        load(os.path.join(EXAMPLES, "i06_bad_dat_header"))
    err = e.value.errors[0]
    assert err.offset == 1 and err.file.endswith(os.path.join("w", "weights.dat"))
