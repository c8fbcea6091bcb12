"""Quantized models: graph.quant simulated at compile time vs the TFLite interpreter.

The fixtures' reference.npz hold the int8 input fed to the TFLite interpreter and
its int8 outputs. We dequantize the input with the input's graph.quant entry,
run the compiled model, re-quantize each float output with its own entry, and
count the difference in steps (LSB) of the output's scale.
"""
import os
import warnings

import numpy as np
import pytest

import nnef_tvm
from nnef_tvm.errors import NNEFError

ZOO = os.path.join(os.path.dirname(__file__), "..", "data", "zoo")


def _zp_params(q):
    assert q["op-name"] == "zero_point_linear_quantize"
    return float(np.asarray(q["scale"])), int(np.asarray(q["zero_point"]))


class _Frontend:
    """from_nnef + relax.build on plain llvm (fast; nnef_tvm.compile is in the slow test)."""

    def __init__(self, model, **kw):
        import tvm
        from tvm import relax
        from nnef_tvm.frontend import from_nnef
        ex = relax.build(from_nnef(model, **kw), target="llvm")
        self.vm, self.model = relax.VirtualMachine(ex, tvm.cpu()), model

    def run(self, inputs):
        import tvm
        g = self.model.graph
        outs = self.vm["main"](*[tvm.runtime.tensor(inputs[n]) for n in g.inputs])
        outs = [outs] if hasattr(outs, "numpy") else list(outs)
        return {n: o.numpy() for n, o in zip(g.outputs, outs)}


def _lsb_errors(model, compiled, ref):
    g = model.graph
    inputs = {}
    for name in g.inputs:
        s, zp = _zp_params(g.tensors[name].quantization)
        inputs[name] = ((ref[name].astype(np.float32) - zp) * s).astype(np.float32)
    outs = compiled.run(inputs)
    errs = {}
    for name in g.outputs:
        s, zp = _zp_params(g.tensors[name].quantization)
        q = np.clip(np.floor(outs[name] / s + 0.5) + zp, -128, 127)
        errs[name] = float(np.abs(q - ref[name].astype(np.float32)).max())
    return errs


def _load_lenient(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = nnef_tvm.load(os.path.join(ZOO, name, "nnef"), realign_flat_quant=True)
    return m, [str(w.message) for w in caught]


def test_flat_per_channel_arrays_rejected_by_default():
    with pytest.raises(NNEFError, match="variable4.*left-aligned|left-aligned"):
        nnef_tvm.load(os.path.join(ZOO, "tflite_int8", "nnef"))


def test_realign_flat_quant_matches_the_conformant_repair():
    lenient, messages = _load_lenient("tflite_int8")
    fixed = nnef_tvm.load(os.path.join(ZOO, "tflite_int8_conformant", "nnef"))
    # one warning per repaired entry, naming it (the four scripts/make_zoo.py repaired)
    for name in ("variable2", "variable4", "variable5", "variable6"):
        assert any(f"'{name}'" in m for m in messages), (name, messages)
    assert len([m for m in messages if "re-aligned" in m]) == 4
    for name, t in lenient.graph.tensors.items():
        other = fixed.graph.tensors[name]
        assert (t.quantization is None) == (other.quantization is None)
        for k, v in (t.quantization or {}).items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(other.quantization[k]))
            assert np.shape(v) == np.shape(other.quantization[k]), (name, k)
        if t.data is not None:
            np.testing.assert_array_equal(t.data, other.data)


def test_realign_leaves_ambiguous_axes_alone():
    from nnef_tvm.reader.quant import realign_flat_entry
    entry = {"op-name": "zero_point_linear_quantize", "scale": np.ones(8, "float32"),
             "zero_point": np.zeros(8, "int32"), "bits": 8}
    assert realign_flat_entry("t", entry, (1, 8, 8)) is entry            # axes 1 and 2 match
    with pytest.warns(UserWarning, match="'t'.*axis 2"):
        out = realign_flat_entry("t", entry, (1, 3, 8))
    assert out["scale"].shape == (1, 1, 8) and out["zero_point"].shape == (1, 1, 8)
    assert realign_flat_entry("t", entry, (8, 1, 8)) is entry            # fits axis 0 already


def test_tflite_int8_within_one_lsb_of_tflite():
    """Lenient read of NNEF-Tools' output, fake-quantized as graph.quant declares."""
    model, _ = _load_lenient("tflite_int8")
    errs = _lsb_errors(model, _Frontend(model, fake_quantize=True),
                       np.load(os.path.join(ZOO, "tflite_int8", "reference.npz")))
    assert max(errs.values()) <= 1.0, errs


@pytest.mark.slow
def test_tflite_int8_compiled_auto_within_one_lsb():
    """nnef_tvm.compile(quantization='auto') picks 'int8' (every conv/linear qualifies) and
    records it in the metadata."""
    model, _ = _load_lenient("tflite_int8")
    compiled = nnef_tvm.compile(model, "x86")
    assert compiled.metadata["quantization"] == {"requested": "auto", "used": "int8"}
    errs = _lsb_errors(model, compiled, np.load(os.path.join(ZOO, "tflite_int8", "reference.npz")))
    assert max(errs.values()) <= 1.0, errs


@pytest.mark.slow
def test_conformant_fake_vs_none():
    """Real arithmetic ignores the rounding of every tensor: measurably worse (2 LSB here)."""
    path = os.path.join(ZOO, "tflite_int8_conformant")
    model = nnef_tvm.load(os.path.join(path, "nnef"))
    ref = np.load(os.path.join(path, "reference.npz"))
    fake = _lsb_errors(model, _Frontend(model, fake_quantize=True), ref)
    none = _lsb_errors(model, _Frontend(model), ref)
    assert max(fake.values()) <= 1.0, fake
    assert max(none.values()) >= max(fake.values()), (none, fake)


def test_bad_quantization_mode_is_an_nnef_error():
    from nnef_tvm.frontend import quantization_mode
    model = nnef_tvm.load(os.path.join(ZOO, "tflite_int8_conformant", "nnef"))
    assert quantization_mode(model) == "int8"      # every conv/linear has int8 operands
    assert quantization_mode(model, "fake") == "fake"
    assert quantization_mode(model, "none") == "none"
    with pytest.raises(NNEFError, match="quantization must be one of"):
        quantization_mode(model, "int4")
