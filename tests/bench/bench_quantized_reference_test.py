"""Quantized models: reference files hold integer codes, NNEF tensors real values.

The benchmark once fed a zoo int8 model its reference *codes* as real inputs and
subtracted real outputs from codes (bench_zoo printed 'max err 1e+02' for a
model within one step). Here a tiny quantized graph (y = 2 x, both tensors
zero-point quantized) gets a reference written in numpy from NNEF's formulas
(real = (q - z) * s; q = clamp(floor(x / s + 0.5) + z)), with one output code
off by one step: the benchmark must report exactly one step, 0.25 in real units.
"""
import importlib.util
import os

import numpy as np
import pytest

from nnef_tvm.bench import benchmark
from nnef_tvm.bench.quantized import error_in_steps, real_feed, real_reference, step_size

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GRAPH = """version 1.0;
graph scaled( x ) -> ( y )
{
    x = external<scalar>(shape = [1, 8]);
    y = mul(x, 2.0);
}
"""
QUANT = """"x": zero_point_linear_quantize(zero_point = -128, scale = 0.5, bits = 8, signed = true, symmetric = false);
"y": zero_point_linear_quantize(zero_point = 3, scale = 0.25, bits = 8, signed = true, symmetric = false);
"""


@pytest.fixture(scope="module")
def quant_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_quant") / "scaled"
    (root / "nnef").mkdir(parents=True)
    (root / "nnef" / "graph.nnef").write_text(GRAPH)
    (root / "nnef" / "graph.quant").write_text(QUANT)
    x_codes = np.array([[-128, -120, -111, -104, -100, -99, -98, -97]], dtype=np.int8)
    x_real = (x_codes.astype(np.float64) + 128) * 0.5
    y_codes = np.clip(np.floor(2 * x_real / 0.25 + 0.5) + 3, -128, 127).astype(np.int8)
    y_codes[0, 2] += 1                      # one step off: 0.25 in real units
    np.savez(root / "reference.npz", x=x_codes, y=y_codes)
    return str(root / "nnef")


def test_codes_are_dequantized_and_errors_counted_in_steps(quant_model):
    res = benchmark(quant_model, compare=[], warmup=0, repeat=1, isolate=False)
    row = res["rows"][0]
    assert row["status"] == "ok"
    assert row["max_abs_error"] == pytest.approx(0.25, abs=1e-6)
    assert row["max_error_steps"] == pytest.approx(1.0, abs=1e-6)
    assert any("dequantized with graph.quant: x" in n for n in res["notes"])


def test_bench_zoo_cell_shows_real_error_and_steps():
    spec = importlib.util.spec_from_file_location(
        "bench_zoo_script_q", os.path.join(ROOT, "scripts", "bench_zoo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.error_cell({"max_abs_error": 0.25, "max_error_steps": 1.0}) == "0.25 (1 LSB)"
    assert mod.error_cell({"max_abs_error": 0.5, "max_error_steps": None}) == "0.5"
    assert mod.error_cell(None) == "-"


class _T:
    def __init__(self, quantization):
        self.quantization = quantization


class _G:
    def __init__(self, **tensors):
        self.tensors = tensors


ZP = {"op-name": "zero_point_linear_quantize", "zero_point": np.array([1, -2]),
      "scale": np.array([0.5, 2.0]), "bits": 8, "signed": True, "symmetric": False}


def test_per_channel_codes_broadcast_left_aligned():
    codes = np.array([[3, 5, 7], [0, -2, 4]], dtype=np.int8)      # channel axis 0
    g = _G(a=_T(ZP))
    feed, converted = real_feed({"a": codes}, g, {"a": "float32"})
    assert converted == ["a"]
    np.testing.assert_array_equal(feed["a"], [[1.0, 2.0, 3.0], [4.0, 0.0, 12.0]])
    want, grids = real_reference({"a": codes}, g)
    got = {"a": want["a"] + np.array([[0.5, 0, 0], [0, 0, -4.0]])}   # 1 step in each channel, 2 in ch 1
    assert error_in_steps(got, want, grids) == pytest.approx(2.0)


def test_integer_inputs_and_float_references_are_left_alone():
    codes = np.array([[3, 5, 7], [0, -2, 4]], dtype=np.int8)
    g = _G(a=_T(ZP), b=_T(None))
    feed, converted = real_feed({"a": codes, "b": codes}, g, {"a": "int8", "b": "float32"})
    assert converted == [] and feed["a"] is codes and feed["b"] is codes
    real = codes.astype(np.float32)
    want, grids = real_reference({"a": real}, g)
    assert grids == {} and want["a"] is real


def test_min_max_step():
    q = {"op-name": "min_max_linear_quantize", "min": -1.0, "max": 1.0, "bits": 8,
         "signed": True, "symmetric": True}
    assert step_size(q, 2).shape == (1, 1) and step_size(q, 2).item() == pytest.approx(2.0 / 254)
    q["symmetric"] = False
    assert step_size(q, 2).item() == pytest.approx(2.0 / 255)
