#!/usr/bin/env python3
"""Build the model zoo: real NNEF models made by NNEF-Tools' converter from real sources.

Why: our reader and compiler must accept what the de-facto NNEF producer writes, not
only hand-written documents. Every model here starts as a genuine source model
(torchvision / torch.nn exported to ONNX, or a Keras model converted to TFLite),
is converted to NNEF by ``nnef_tools.convert`` (NNEF-Tools 1.0.11), and is paired
with reference outputs computed by the SOURCE runtime (onnxruntime or the TFLite
interpreter) -- an oracle independent of both NNEF-Tools and nnef-tvm.

Usage::

    python scripts/make_zoo.py OUT_DIR [--models resnet18,lstm,...] [--list] [--slim]

The committed fixture zoo (small models only, no torch/tensorflow needed to use it)::

    python scripts/make_zoo.py tests/data/zoo --slim \
        --models 'lstm*',tflite_float,tflite_int8,tflite_int8_conformant

Layout written (``OUT_DIR`` is git-ignored, ``./zoo`` by convention)::

    OUT_DIR/zoo.json                   index: one entry per model (merged on re-runs)
    OUT_DIR/NAME/nnef/                 the NNEF folder (graph.nnef, *.dat, graph.quant)
    OUT_DIR/NAME/reference.npz         inputs under the NNEF graph's input names and
                                       source-runtime outputs under its output names
    OUT_DIR/NAME/source.onnx|.tflite   the source model that was converted
    OUT_DIR/NAME/tensor_mapping.json   source tensor name -> NNEF tensor name
    OUT_DIR/NAME/reference_nnef_tools.npz  outputs of NNEF-Tools' interpreter on the NNEF
                                       folder (when torch is installed)

Exact converter commands (the first that succeeds is used; ``zoo.json`` records
the one used and the error text of every failed attempt)::

    python -m nnef_tools.convert --input-format onnx --output-format nnef \\
        --input-model NAME/source.onnx --output-model NAME/nnef \\
        --keep-io-names --tensor-mapping NAME/tensor_mapping.json
    ... then the same with  --fold-constants
    ... then the same with  --fold-constants --optimize

    python -m nnef_tools.convert --input-format tflite --output-format nnef \\
        --input-model NAME/source.tflite --output-model NAME/nnef \\
        --keep-io-names --tensor-mapping NAME/tensor_mapping.json
    ... then the same with  --optimize

The Khronos parser must accept every converted folder (``khronos_check``, custom
fragments lowered). The converted model is also run through NNEF-Tools' own (PyTorch) interpreter
when torch is installed, and the error against the source reference is stored as
``nnef_tools_check``: a model whose conversion is already wrong is marked
``status: "converted-mismatch"`` so tests do not blame our compiler for it.

Converter defects we can undo are repaired in the converted folder (``POSTPROCESS``,
recorded in zoo.json as ``postprocess``: the function, why, what changed, and NNEF-Tools'
interpreter verdict before the repair): ``reorder_lstm_gates`` puts the LSTM gate blocks
in the order NNEF-Tools' own lstm_step fragment reads them; ``conform_per_channel_quant``
nests per-channel graph.quant arrays onto the axis they mean.

Requires the ``zoo`` extra (torch, torchvision, onnx, onnxruntime); TFLite models
also need ``tensorflow-cpu``. Models whose source library is missing are recorded
as ``status: "skipped"`` with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

SEED = 0
OPSET = 13            # highest opset whose ops NNEF-Tools 1.0.11 maps (no LayerNormalization)
FLOAT_TOLERANCE = {"kind": "relative-max", "value": 1e-4,
                   "meaning": "max|out - ref| <= value * max|ref| per output"}
INT8_TOLERANCE = {"kind": "lsb", "value": 1,
                  "meaning": "quantized outputs differ by at most `value` steps"}

ONNX_ATTEMPTS = [[], ["--fold-constants"], ["--fold-constants", "--optimize"]]
TFLITE_ATTEMPTS = [[], ["--optimize"]]


# --------------------------------------------------------------------------- sources

@dataclass
class Source:
    """A source model on disk plus its reference run (names are the source's own)."""

    format: str                              # 'onnx' | 'tflite'
    path: str
    description: str
    inputs: dict[str, np.ndarray]            # source input name -> array (in source order)
    outputs: dict[str, np.ndarray]           # source output name -> array (in source order)
    tolerance: dict = field(default_factory=lambda: dict(FLOAT_TOLERANCE))
    quantization: dict = field(default_factory=dict)   # source name -> {scale, zero_point, dtype}


def _random_inputs(shapes: dict[str, tuple], seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _randomize_batchnorm(model) -> None:
    """Give BatchNorm layers non-trivial statistics so folding/scaling is really exercised."""
    import torch
    gen = torch.Generator().manual_seed(SEED + 1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _export_torch(model, input_shapes: dict[str, tuple], output_names: list[str],
                  path: str, description: str, opset: int = OPSET) -> Source:
    """torch.nn.Module -> ONNX file (legacy TorchScript exporter, static shapes) + ORT reference."""
    import torch
    model.eval()
    inputs = _random_inputs(input_shapes)
    args = tuple(torch.from_numpy(a) for a in inputs.values())
    kwargs = dict(input_names=list(inputs), output_names=output_names,
                  opset_version=opset, do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(model, args, path, dynamo=False, **kwargs)
        except TypeError as e:       # older torch without the `dynamo` switch
            if "dynamo" not in str(e):
                raise
            torch.onnx.export(model, args, path, **kwargs)
    return Source("onnx", path, description, inputs, _run_onnxruntime(path, inputs))


def _run_onnxruntime(path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs)))


def build_resnet18(path: str) -> Source:
    import torch
    import torchvision
    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None)
    _randomize_batchnorm(model)
    return _export_torch(model, {"input": (1, 3, 224, 224)}, ["logits"], path,
                         "torchvision.models.resnet18(weights=None), random init, ONNX opset %d" % OPSET)


def build_mobilenet_v2(path: str) -> Source:
    import torch
    import torchvision
    torch.manual_seed(SEED)
    model = torchvision.models.mobilenet_v2(weights=None)
    _randomize_batchnorm(model)
    return _export_torch(model, {"input": (1, 3, 224, 224)}, ["logits"], path,
                         "torchvision.models.mobilenet_v2(weights=None), random init, ONNX opset %d" % OPSET)


def build_efficientnet_b0(path: str) -> Source:
    import torch
    import torchvision
    torch.manual_seed(SEED)
    model = torchvision.models.efficientnet_b0(weights=None)
    _randomize_batchnorm(model)
    return _export_torch(model, {"input": (1, 3, 224, 224)}, ["logits"], path,
                         "torchvision.models.efficientnet_b0(weights=None) (SiLU + squeeze-excitation), "
                         "random init, ONNX opset %d" % OPSET)


def _se_resnet_module():
    """A small squeeze-and-excitation ResNet (Hu et al. 2018): SE gates inside residual blocks."""
    import torch
    from torch import nn

    class SEBlock(nn.Module):
        def __init__(self, cin, cout, stride, reduction=4):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.squeeze = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(cout, cout // reduction, 1)
            self.fc2 = nn.Conv2d(cout // reduction, cout, 1)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(self.squeeze(y)))))
            return torch.relu(y * gate + self.shortcut(x))

    class SENet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.blocks = nn.Sequential(SEBlock(16, 16, 1), SEBlock(16, 32, 2), SEBlock(32, 64, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            y = self.pool(self.blocks(self.stem(x)))
            return torch.softmax(self.fc(torch.flatten(y, 1)), dim=1)

    return SENet()


def build_se_net(path: str) -> Source:
    import torch
    torch.manual_seed(SEED)
    model = _se_resnet_module()
    _randomize_batchnorm(model)
    return _export_torch(model, {"input": (1, 3, 32, 32)}, ["probabilities"], path,
                         "small SE-ResNet (3 residual blocks with squeeze-excitation gates, softmax head), "
                         "random init, ONNX opset %d" % OPSET)


def build_transformer_encoder(path: str) -> Source:
    import torch
    torch.manual_seed(SEED)
    if hasattr(torch.backends, "mha"):       # keep the fused fast path out of the trace
        torch.backends.mha.set_fastpath_enabled(False)

    class Encoder(torch.nn.Module):
        """Passes is_causal as a Python bool: the tracer otherwise turns it into a tensor."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128,
                                                          dropout=0.0, batch_first=True)

        def forward(self, tokens):
            return self.layer(tokens, is_causal=False)

    # opset 14: the first with scaled_dot_product_attention; < 17 keeps LayerNorm decomposed
    # (NNEF-Tools 1.0.11 has no LayerNormalization converter).
    return _export_torch(Encoder(), {"tokens": (1, 16, 64)}, ["encoded"], path,
                         "torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, "
                         "batch_first=True), ONNX opset 14 (LayerNorm decomposed)", opset=14)


def _final_state_lstm(path: str, *, input_size: int, hidden: int, steps: int, batch: int,
                      bias: bool, seed: int) -> Source:
    """One-layer torch.nn.LSTM returning only the final (h, c).

    Only the final state: NNEF-Tools 1.0.11 rejects an ONNX LSTM whose Y sequence output
    has a consumer ("first output must not have consumer operations"), which also rules
    out stacked layers (layer 1's Y feeds layer 2); it has no GRU/RNN converter at all.
    The initial state is an input (a zero state made inside the model becomes a dynamic
    Expand the converter rejects).
    """
    import torch
    torch.manual_seed(seed)

    class FinalState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(input_size=input_size, hidden_size=hidden, num_layers=1, bias=bias)

        def forward(self, sequence, h0, c0):
            _, (h, c) = self.lstm(sequence, (h0, c0))
            return h, c

    shapes = {"sequence": (steps, batch, input_size), "h0": (1, batch, hidden), "c0": (1, batch, hidden)}
    return _export_torch(FinalState(), shapes, ["h_n", "c_n"], path,
                         f"torch.nn.LSTM(input_size={input_size}, hidden_size={hidden}"
                         f"{'' if bias else ', bias=False'}), {steps} steps x batch {batch}, initial "
                         f"state as inputs, final (h, c) as outputs, ONNX opset {OPSET}")


def build_lstm(path: str) -> Source:
    return _final_state_lstm(path, input_size=16, hidden=32, steps=8, batch=1, bias=True, seed=SEED)


def build_lstm_batch3(path: str) -> Source:
    """Batch > 1 and another step count / hidden size than ``lstm``."""
    return _final_state_lstm(path, input_size=8, hidden=12, steps=5, batch=3, bias=True, seed=SEED + 2)


def build_lstm_nobias(path: str) -> Source:
    """Without bias the converter passes the literal 0.0 as B, which lstm_step splits on
    axis 1: the document is invalid (Khronos and our reader reject it)."""
    return _final_state_lstm(path, input_size=8, hidden=12, steps=5, batch=3, bias=False, seed=SEED + 2)


def build_onnx_cnn(path: str) -> Source:
    """A CNN written with the onnx helper API: needs neither torch nor tensorflow (CI-friendly).

    Covers what the torchvision nets do not: grouped strided conv, LeakyRelu, average
    pooling with padding excluded from the count, channel concat, Tanh, a Gemm with
    transposed weights, two outputs.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(SEED)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)

    inits = [init("w1", (8, 3, 3, 3)), init("b1", (8,), 0.1),
             init("w2", (8, 4, 3, 3)), init("b2", (8,), 0.1),
             init("fc_w", (10, 16 * 4 * 4), 0.1), init("fc_b", (10,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
        helper.make_node("Tanh", ["c2"], ["a2"]),
        helper.make_node("AveragePool", ["a1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Concat", ["a2", "p1"], ["cat"], axis=1),
        helper.make_node("MaxPool", ["cat"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1),
        helper.make_node("Sigmoid", ["scores"], ["gates"]),
    ]
    graph = helper.make_graph(
        nodes, "onnx_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("gates", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    inputs = _random_inputs({"image": (1, 3, 16, 16)})
    return Source("onnx", path, "hand-written ONNX CNN (onnx.helper): grouped strided conv, LeakyRelu, "
                  "Tanh, AveragePool excluding padding, Concat, MaxPool, Gemm, Sigmoid; opset %d" % OPSET,
                  inputs, _run_onnxruntime(path, inputs))


# ---- TFLite sources (Keras -> TFLiteConverter)

def _keras_cnn():
    import tensorflow as tf
    tf.keras.utils.set_random_seed(SEED)
    inp = tf.keras.Input(shape=(32, 32, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="valid", activation="relu")(x)
    x = tf.keras.layers.AveragePooling2D(2)(x)
    x = tf.keras.layers.Flatten()(x)
    logits = tf.keras.layers.Dense(10, name="logits")(x)
    probs = tf.keras.layers.Softmax(name="probs")(logits)
    # two outputs: the softmax's int8 scale (1/256) is coarse, the logits' is not
    return tf.keras.Model(inp, [logits, probs])


def _run_tflite(path: str, inputs_by_index: list[np.ndarray]):
    import tensorflow as tf
    interp = tf.lite.Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()
    for d, a in zip(ins, inputs_by_index):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    return ins, outs, [interp.get_tensor(d["index"]).copy() for d in outs]


def _tflite_source(path: str, tflite_bytes: bytes, description: str, quantized: bool) -> Source:
    with open(path, "wb") as f:
        f.write(tflite_bytes)
    import tensorflow as tf
    interp = tf.lite.Interpreter(model_path=path)
    details = interp.get_input_details()
    rng = np.random.default_rng(SEED)
    arrays, quant = [], {}
    for d in details:
        real = rng.uniform(0.0, 1.0, size=tuple(d["shape"])).astype(np.float32)
        if quantized:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            arrays.append(np.clip(np.round(real / scale) + zp, info.min, info.max).astype(d["dtype"]))
        else:
            arrays.append(real)
    ins, outs, results = _run_tflite(path, arrays)
    if quantized:
        for d in list(ins) + list(outs):
            scale, zp = d["quantization"]
            quant[d["name"]] = {"scale": float(scale), "zero_point": int(zp),
                                "dtype": np.dtype(d["dtype"]).name}
    return Source("tflite", path, description,
                  {d["name"]: a for d, a in zip(ins, arrays)},
                  {d["name"]: r for d, r in zip(outs, results)},
                  dict(INT8_TOLERANCE) if quantized else dict(FLOAT_TOLERANCE), quant)


def build_tflite_float(path: str) -> Source:
    import tensorflow as tf
    model = _keras_cnn()
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return _tflite_source(path, data, "Keras CNN (conv, depthwise conv, pools, dense, softmax) "
                          "-> TFLiteConverter, float32", quantized=False)


def build_tflite_int8(path: str) -> Source:
    import tensorflow as tf
    model = _keras_cnn()
    rng = np.random.default_rng(SEED + 7)

    def representative():
        for _ in range(32):
            yield [rng.uniform(0.0, 1.0, size=(1, 32, 32, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return _tflite_source(path, conv.convert(), "the tflite_float Keras CNN, full-integer int8 "
                          "quantization (representative dataset, int8 input/output)", quantized=True)


# ---- post-processing of a converted folder (documented in zoo.json as "postprocess")

_QUANT_ENTRY = re.compile(r'^"(?P<name>[^"]+)"\s*:\s*(?P<op>\w+)\s*\((?P<args>.*)\)\s*;\s*$')
_FLAT_ARRAY_ARG = re.compile(r"(?P<key>\w+)\s*=\s*(?P<array>\[[^\[\]]*\])")


def conform_per_channel_quant(nnef_dir: str) -> dict:
    """Rewrite flat per-channel graph.quant arrays so they broadcast as NNEF says.

    NNEF broadcasting is left-aligned, so a flat ``[C]`` parameter array varies along
    axis 0. NNEF-Tools writes ``[C]`` also for tensors whose channels lie on the LAST
    axis (TFLite biases ``[1, C]``, depthwise filters ``[1, H, W, C]``). Where a flat
    array does not broadcast against its tensor but matches the last axis, it becomes
    a nested array of the tensor's rank (``[[...]]`` for rank 2) -- the form NNEF 1.0.5
    defines for that axis. Returns {tensor name: new parameter shape} for what changed.
    """
    import nnef
    graph = nnef.parse_file(os.path.join(nnef_dir, "graph.nnef"), lowered=_fragment_names(nnef_dir))
    nnef.infer_shapes(graph)
    path = os.path.join(nnef_dir, "graph.quant")
    with open(path) as f:
        lines = f.read().splitlines()
    changed, out = {}, []
    for line in lines:
        m = _QUANT_ENTRY.match(line.strip())
        tensor = graph.tensors.get(m.group("name")) if m else None
        if tensor is not None and tensor.shape:
            shape = list(tensor.shape)

            def nest(am, shape=shape, name=m.group("name")):
                count = len([v for v in am.group("array")[1:-1].split(",") if v.strip()])
                fits_axis0 = count in (1, shape[0])
                if fits_axis0 or len(shape) < 2 or count != shape[-1]:
                    return am.group(0)
                changed[name] = [1] * (len(shape) - 1) + [count]
                depth = len(shape) - 1
                return f"{am.group('key')} = {'[' * depth}{am.group('array')}{']' * depth}"

            line = _FLAT_ARRAY_ARG.sub(nest, line)
        out.append(line)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return changed


# ONNX LSTM weights stack the gate blocks as (i, o, f, c); the lstm_step fragment NNEF-Tools
# writes splits them as [i, f, g, o]. Block k of the repaired tensor is block
# ONNX_GATES_FOR_NNEF_LSTM[k] of the converter's (g is ONNX's c, the cell candidate).
ONNX_GATES_FOR_NNEF_LSTM = (0, 2, 3, 1)
_NNEF_TENSOR_HEADER_BYTES = 128          # NNEF 1.0.5 tensor file: fixed 128-byte header
_PASS_THROUGH_OPS = ("squeeze", "unsqueeze", "reshape", "copy")


def _variable_behind(graph, value, producers: dict):
    """The ``variable`` op a lstm_loop argument comes from through squeeze/unsqueeze/reshape/
    copy (the converter squeezes W and R), or None for a literal (a bias-less LSTM gets 0.0)."""
    while isinstance(value, str) and value in producers:
        op = producers[value]
        if op.name == "variable":
            return op
        if op.name == "external":
            raise RuntimeError(f"lstm_loop argument {value} is a graph input, not a variable")
        if op.name not in _PASS_THROUGH_OPS:
            raise RuntimeError(f"lstm_loop argument {value} comes from {op.name}, not a variable")
        value = op.inputs["input"]
    if isinstance(value, str):
        raise RuntimeError(f"lstm_loop argument {value} has no producer in the graph")
    return None


def _permute_gate_blocks(path: str, axis: int, blocks: int, order: list[int]) -> dict:
    """Rewrite a float32 tensor file with its ``blocks`` equal blocks along ``axis`` put in
    ``order``; the 128-byte header is kept byte for byte (only the payload moves)."""
    import hashlib

    from nnef_tvm.reader.tensorfile import ItemType, parse_header
    with open(path, "rb") as f:
        raw = f.read()
    header = parse_header(raw, path)
    if header.item_type != ItemType.FLOAT or header.bits != 32:
        raise RuntimeError(f"{path}: expected float32 items, got {header.item_type.name}/{header.bits}")
    payload = raw[_NNEF_TENSOR_HEADER_BYTES:]
    if len(payload) != header.data_length:
        raise RuntimeError(f"{path}: payload is {len(payload)} bytes, header says {header.data_length}")
    data = np.frombuffer(payload, dtype="<f4").reshape(header.shape)
    if data.shape[axis] % blocks:
        raise RuntimeError(f"{path}: axis {axis} of {data.shape} does not split into {blocks} gate blocks")
    parts = np.split(data, blocks, axis=axis)
    fixed = np.concatenate([parts[k] for k in order], axis=axis).astype("<f4")
    with open(path, "wb") as f:
        f.write(raw[:_NNEF_TENSOR_HEADER_BYTES])
        f.write(fixed.tobytes())
    return {"shape": list(header.shape), "gate_axis": axis, "blocks": blocks, "new_order": list(order),
            "sha256_converted": hashlib.sha256(raw).hexdigest(),
            "sha256_repaired": hashlib.sha256(raw[:_NNEF_TENSOR_HEADER_BYTES] + fixed.tobytes()).hexdigest()}


def reorder_lstm_gates(nnef_dir: str) -> dict:
    """Reorder the LSTM gate blocks of W, R and B from ONNX's (i, o, f, c) to the (i, f, g, o)
    that the lstm_step fragment in graph.nnef reads, so the NNEF model means the ONNX LSTM.

    NNEF-Tools 1.0.11 hands the ONNX LSTM's W [1, 4H, I], R [1, 4H, H] and B [1, 8H]
    (= Wb ++ Rb) to its ``lstm_loop`` fragment unchanged, but ``lstm_step`` splits
    ``linear(x, W, Wb) + linear(h, R, Rb)`` as ``[i, f, g, o]``: as converted, the
    forget gate reads ONNX's output-gate rows and so on. The H-row blocks of W and
    R (axis -2) and of both halves of B (axis -1, 8 blocks) are permuted in the .dat
    files; graph.nnef and the file headers stay as written. A literal bias (0.0 for a
    bias-less LSTM) needs nothing. Returns {tensor file: what was moved, sha256 before/after}.
    """
    import nnef
    graph = nnef.parse_file(os.path.join(nnef_dir, "graph.nnef"))
    producers = {out: op for op in graph.operations for out in op.outputs.values() if isinstance(out, str)}
    changed, order = {}, list(ONNX_GATES_FOR_NNEF_LSTM)
    for op in graph.operations:
        if op.name != "lstm_loop":
            continue
        variables = {role: _variable_behind(graph, op.inputs[role], producers) for role in ("W", "R", "B")}
        if variables["R"] is None:
            raise RuntimeError("lstm_loop without a variable R: cannot tell the hidden size")
        hidden = variables["R"].attribs["shape"][-1]
        for role, var in variables.items():
            if var is None:
                continue
            shape = var.attribs["shape"]
            axis, blocks = (len(shape) - 1, 8) if role == "B" else (len(shape) - 2, 4)
            if shape[axis] != blocks * hidden:
                raise RuntimeError(f"lstm_loop {role} has shape {shape}; expected {blocks} x {hidden} "
                                   f"on axis {axis}")
            file = var.attribs["label"] + ".dat"
            if file in changed:      # shared by several loops: move once
                continue
            info = _permute_gate_blocks(os.path.join(nnef_dir, file), axis, blocks,
                                        order + [4 + k for k in order] if blocks == 8 else order)
            changed[file] = dict(role=role, **info)
    if not changed:
        raise RuntimeError(f"{nnef_dir}: no lstm_loop with variable weights to repair")
    return changed


POSTPROCESS: dict[str, Callable[[str], dict]] = {
    "tflite_int8_conformant": conform_per_channel_quant,
    "lstm": reorder_lstm_gates,
    "lstm_batch3": reorder_lstm_gates,
    "lstm_nobias": reorder_lstm_gates,
}


_LSTM_GATE_ISSUE = (
    "NNEF-Tools 1.0.11 passes the ONNX LSTM weights through unchanged, so W/R/B keep ONNX's gate "
    "order (i, o, f, c), but its lstm_step fragment splits them as (i, f, g, o): as converted, "
    "NNEF-Tools' own interpreter is off from onnxruntime by ~0.9 (postprocess.nnef_tools_check_before). "
    "Repaired here by reorder_lstm_gates (postprocess): the gate blocks of the W/R/B .dat payloads "
    "are permuted, graph.nnef and the file headers are left as written; the repaired folder matches "
    "onnxruntime in NNEF-Tools' interpreter (nnef_tools_check) and is the translation of the ONNX LSTM.")

# Converter defects we diagnosed, recorded in zoo.json as the entry's "converter_issue".
KNOWN_CONVERTER_ISSUES = {
    "lstm": _LSTM_GATE_ISSUE,
    "lstm_batch3": _LSTM_GATE_ISSUE,
    "lstm_nobias": "Without an LSTM bias NNEF-Tools 1.0.11 writes the literal 0.0 as lstm_loop's B, "
                   "and its lstm_step fragment splits B on axis 1 (split(B, axis = 1, ratios = [1, 1])): "
                   "a rank-0 literal has no axis 1 and its singleton would not split in two, so the "
                   "document is invalid; the Khronos parser and NNEF-Tools' interpreter fail on it. "
                   "The W/R gate blocks are still reordered (postprocess). " + _LSTM_GATE_ISSUE,
    "tflite_int8": "Khronos' infer_shapes rejects it (quantization parameters must broadcast to "
                   "their tensor); tflite_int8_conformant is the repaired copy. graph.quant gives per-channel parameters as flat [C] arrays also for tensors whose "
                   "channel is not axis 0: biases of shape [1, C] and the depthwise filter kept in TFLite "
                   "layout [1, 3, 3, C]. Under NNEF's left-aligned broadcasting a [C] array varies along "
                   "axis 0, so these entries do not fit their tensors as written (they mean the last "
                   "axis); NNEF-Tools' own interpreter trips over the [1, C] biases (bias of size "
                   "[8, 8]). The activation and [C_out, ...] filter entries are fine.",
}

# name -> (source format, builder, one-line summary for --list)
MODELS: dict[str, tuple[str, Callable[[str], Source], str]] = {
    "resnet18": ("onnx", build_resnet18, "torchvision ResNet-18, 1x3x224x224"),
    "mobilenet_v2": ("onnx", build_mobilenet_v2, "torchvision MobileNetV2 (ReLU6 = clamp), 1x3x224x224"),
    "se_net": ("onnx", build_se_net, "small SE-ResNet with squeeze-excitation gates, 1x3x32x32"),
    "efficientnet_b0": ("onnx", build_efficientnet_b0, "torchvision EfficientNet-B0 (SiLU, SE), 1x3x224x224"),
    "transformer_encoder": ("onnx", build_transformer_encoder, "nn.TransformerEncoderLayer, 1x16x64"),
    "lstm": ("onnx", build_lstm, "nn.LSTM 16->32, 8 steps; inputs x/h0/c0, outputs h_n/c_n "
             "(gate order repaired)"),
    "lstm_batch3": ("onnx", build_lstm_batch3, "nn.LSTM 8->12, 5 steps x batch 3 (gate order repaired)"),
    "lstm_nobias": ("onnx", build_lstm_nobias, "nn.LSTM 8->12 without bias, 5 steps x batch 3: the "
                    "converter writes an invalid document"),
    "onnx_cnn": ("onnx", build_onnx_cnn, "hand-written ONNX CNN, no torch needed, 1x3x16x16, 2 outputs"),
    "tflite_float": ("tflite", build_tflite_float, "Keras CNN -> TFLite float32, 1x32x32x3 NHWC"),
    "tflite_int8": ("tflite", build_tflite_int8, "same CNN, full-integer int8 TFLite"),
    "tflite_int8_conformant": ("tflite", build_tflite_int8,
                               "tflite_int8 with graph.quant per-channel arrays made NNEF-conformant"),
}


# --------------------------------------------------------------------------- conversion

def converter_command(fmt: str, src: str, out: str, mapping: str, options: list[str]) -> list[str]:
    """The exact NNEF-Tools command line (also quoted in the module docstring)."""
    return [sys.executable, "-m", "nnef_tools.convert", "--input-format", fmt, "--output-format", "nnef",
            "--input-model", src, "--output-model", out, "--keep-io-names",
            "--tensor-mapping", mapping] + options


def convert(fmt: str, src: str, out: str, mapping: str) -> tuple[Optional[list[str]], list[dict]]:
    """Try the option sets in order; return (options used or None, failed attempts)."""
    failures = []
    for options in (ONNX_ATTEMPTS if fmt == "onnx" else TFLITE_ATTEMPTS):
        shutil.rmtree(out, ignore_errors=True)
        cmd = converter_command(fmt, src, out, mapping, options)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(out))
        if proc.returncode == 0 and os.path.isfile(os.path.join(out, "graph.nnef")):
            return options, failures
        text = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        failures.append({"options": options, "returncode": proc.returncode,
                         "error": "\n".join(text[-15:])})
    return None, failures


_HEADER = re.compile(r"graph\s+\w+\s*\(([^)]*)\)\s*->\s*\(([^)]*)\)")
_EXTERNAL = re.compile(r"(\w+)\s*=\s*external\s*<\s*(\w+)\s*>\s*\(\s*shape\s*=\s*\[([^\]]*)\]")


def graph_interface(nnef_dir: str):
    """(input names, output names, {input: (dtype, shape)}) read from graph.nnef's header."""
    with open(os.path.join(nnef_dir, "graph.nnef")) as f:
        text = f.read()
    m = _HEADER.search(text)
    split = lambda s: [n.strip() for n in s.split(",") if n.strip()]  # noqa: E731
    externals = {name: (dtype, tuple(int(d) for d in dims.split(",") if d.strip()))
                 for name, dtype, dims in _EXTERNAL.findall(text)}
    return split(m.group(1)), split(m.group(2)), externals


def map_names(source_names: list[str], nnef_names: list[str], mapping: dict) -> tuple[dict, str]:
    """source name -> NNEF name: via the converter's tensor mapping, else by position."""
    mapped = {s: mapping.get(s) for s in source_names}
    if sorted(v for v in mapped.values() if v) == sorted(nnef_names) and None not in mapped.values():
        return mapped, "tensor-mapping"
    if len(source_names) == len(nnef_names):
        return dict(zip(source_names, nnef_names)), "position"
    raise RuntimeError(f"cannot map source names {source_names} onto NNEF names {nnef_names}")


def _fragment_names(nnef_dir: str) -> list[str]:
    with open(os.path.join(nnef_dir, "graph.nnef")) as f:
        return re.findall(r"^\s*fragment\s+(\w+)", f.read(), re.M)


def khronos_check(nnef_dir: str) -> dict:
    """Does the Khronos parser accept the folder (custom fragments lowered) and infer its shapes?"""
    try:
        import nnef
    except ImportError as e:
        return {"ran": False, "reason": str(e)}
    try:
        graph = nnef.load_graph(nnef_dir, lowered=_fragment_names(nnef_dir))
        nnef.infer_shapes(graph)
    except Exception as e:
        return {"ran": True, "ok": False, "error": f"{type(e).__name__}: {str(e)[:400]}"}
    return {"ran": True, "ok": True, "operations": len(graph.operations)}


def _numpy2_shim() -> None:
    """NNEF-Tools 1.0.11's interpreter calls ``np.reshape(a, newshape=...)`` (dequantizing
    per-channel parameters), which numpy 2.1 removed: give its modules a numpy whose
    reshape still takes that keyword. Touches only NNEF-Tools' module globals."""
    import types

    from nnef_tools.interpreter.pytorch import nnef_module, nnef_operators
    shim = types.ModuleType("numpy_for_nnef_tools")
    shim.__dict__.update(np.__dict__)

    def reshape(a, shape=None, *args, newshape=None, **kwargs):
        return np.reshape(a, newshape if newshape is not None else shape, *args, **kwargs)

    shim.reshape = reshape
    for module in (nnef_module, nnef_operators):
        module.np = shim


def nnef_tools_check(nnef_dir: str, inputs: list[np.ndarray], outputs: dict[str, np.ndarray],
                     tolerance: dict, quant: dict, save_to: str) -> dict:
    """Run NNEF-Tools' PyTorch interpreter on the converted model and compare with the reference.

    Its outputs are saved to ``save_to`` (npz, NNEF output names; None: not saved): where
    the converter changed the meaning of the model, they are what the NNEF document itself says.
    """
    try:
        from nnef_tools.interpreter.pytorch import Interpreter
        _numpy2_shim()
    except Exception as e:  # torch missing
        return {"ran": False, "reason": f"{type(e).__name__}: {e}"}
    try:
        fragments = _fragment_names(nnef_dir)
        interp = Interpreter(nnef_dir, device="cpu", decomposed=fragments or None)
        feed = [a.astype(np.float32) if a.dtype != np.float32 else a for a in inputs]
        if quant:   # the interpreter computes on real values: dequantize the input
            feed = [(a.astype(np.float32) - q["zero_point"]) * q["scale"]
                    for a, q in zip(inputs, [quant[k] for k in list(quant)[:len(inputs)]])]
        got = interp(feed)
    except Exception as e:
        return {"ran": False, "reason": f"{type(e).__name__}: {str(e)[:400]}"}
    if save_to:
        np.savez(save_to, **{name: np.asarray(got[name]) for name in outputs})
    report, ok = {}, True
    for name, ref in outputs.items():
        out = np.asarray(got[name])
        if quant and name in quant:
            q = quant[name]
            steps = np.round(out.astype(np.float64) / q["scale"]) + q["zero_point"]
            err = float(np.max(np.abs(steps - ref.astype(np.float64))))
            bound = float(tolerance["value"])
        else:
            err = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
            bound = tolerance["value"] * float(np.max(np.abs(ref)) or 1.0)
        ok &= err <= bound
        report[name] = {"max_abs_err": err, "bound": bound}
    return {"ran": True, "ok": bool(ok), "outputs": report,
            "note": "int8 errors in quantization steps" if quant else "float errors"}


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def make_model(name: str, out_root: str) -> dict:
    fmt, builder, _ = MODELS[name]
    mdir = os.path.join(os.path.abspath(out_root), name)
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    entry: dict = {"model": name, "source_format": fmt}
    src_path = os.path.join(mdir, "source." + fmt)
    t0 = time.time()
    try:
        src = builder(src_path)
    except ImportError as e:
        entry.update(status="skipped", reason=f"source library missing: {e}")
        return entry
    except Exception:
        entry.update(status="source-failed", reason=traceback.format_exc(limit=3)[-1500:])
        return entry
    entry["source"] = src.description
    nnef_dir = os.path.join(mdir, "nnef")
    mapping_path = os.path.join(mdir, "tensor_mapping.json")
    options, failures = convert(fmt, src_path, nnef_dir, mapping_path)
    entry["converter_failures"] = failures
    if options is None:
        entry.update(status="converter-failed", reason=failures[-1]["error"] if failures else "")
        return entry
    entry["converter_options"] = ["--keep-io-names"] + options
    entry["converter_command"] = " ".join(
        converter_command(fmt, f"{name}/source.{fmt}", f"{name}/nnef", f"{name}/tensor_mapping.json",
                          options)[1:]).replace("-m nnef_tools", "python -m nnef_tools", 1)
    mapping = {}
    if os.path.isfile(mapping_path):
        with open(mapping_path) as f:
            mapping = json.load(f)
    in_names, out_names, externals = graph_interface(nnef_dir)
    in_map, how_in = map_names(list(src.inputs), in_names, mapping)
    out_map, how_out = map_names(list(src.outputs), out_names, mapping)
    arrays = {in_map[k]: v for k, v in src.inputs.items()}
    arrays.update({out_map[k]: v for k, v in src.outputs.items()})
    for k, a in src.inputs.items():
        want = externals.get(in_map[k], (None, None))[1]
        if want is not None and tuple(want) != a.shape:
            raise RuntimeError(f"{name}: NNEF input {in_map[k]} has shape {want}, reference {a.shape}")
    np.savez(os.path.join(mdir, "reference.npz"), **arrays)
    quant = {(in_map.get(k) or out_map.get(k)): q for k, q in src.quantization.items()}
    nnef_outputs = {out_map[k]: v for k, v in src.outputs.items()}
    if name in POSTPROCESS:
        fix = POSTPROCESS[name]
        before = nnef_tools_check(nnef_dir, list(src.inputs.values()), nnef_outputs, src.tolerance,
                                  quant, None)
        entry["postprocess"] = {"function": fix.__name__, "why": fix.__doc__.strip().split("\n\n")[0],
                                "changed": fix(nnef_dir), "nnef_tools_check_before": before}
    entry.update(
        status="ok",
        nnef="%s/nnef" % name,
        reference="%s/reference.npz" % name,
        inputs={in_map[k]: {"shape": list(v.shape), "dtype": v.dtype.name, "source_name": k}
                for k, v in src.inputs.items()},
        outputs={out_map[k]: {"shape": list(v.shape), "dtype": v.dtype.name, "source_name": k}
                 for k, v in src.outputs.items()},
        input_order=in_names, output_order=out_names,
        name_mapping={"inputs": how_in, "outputs": how_out},
        tolerance=src.tolerance,
        quantization=quant,
        nnef_bytes=folder_bytes(nnef_dir),
        operations=_count_ops(nnef_dir),
    )
    entry["khronos_check"] = khronos_check(nnef_dir)
    check = nnef_tools_check(nnef_dir, list(src.inputs.values()), nnef_outputs, src.tolerance, quant,
                             os.path.join(mdir, "reference_nnef_tools.npz"))
    entry["nnef_tools_check"] = check
    if check.get("ran") and not check.get("ok"):
        entry["status"] = "converted-mismatch"
        entry["reason"] = ("NNEF-Tools' interpreter disagrees with the source runtime on the converted "
                           "model: the conversion changed its meaning; reference_nnef_tools.npz holds "
                           "what the NNEF document computes")

    if name in KNOWN_CONVERTER_ISSUES:
        entry["converter_issue"] = KNOWN_CONVERTER_ISSUES[name]
    entry["seconds"] = round(time.time() - t0, 1)
    return entry


def _count_ops(nnef_dir: str) -> dict:
    with open(os.path.join(nnef_dir, "graph.nnef")) as f:
        text = f.read()
    graph_at = re.search(r"^graph\s", text, re.M)
    body = text[graph_at.start():] if graph_at else text
    counts: dict[str, int] = {}
    for op in re.findall(r"=\s*([a-z_][a-z_0-9]*)\s*(?:<[^>]*>)?\s*\(", body):
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _drop_source(entry: dict, out_root: str) -> None:
    import hashlib
    path = os.path.join(out_root, entry["model"], "source." + entry["source_format"])
    if os.path.isfile(path):
        with open(path, "rb") as f:
            entry["source_sha256"] = hashlib.sha256(f.read()).hexdigest()
        os.remove(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", default="zoo")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated names; 'tflite_*' style globs allowed")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    ap.add_argument("--slim", action="store_true",
                    help="drop the source model files after conversion (keeps their sha256): for "
                         "the small committed fixture zoo in tests/data/zoo")
    args = ap.parse_args(argv)
    if args.list:
        for name, (fmt, _, summary) in MODELS.items():
            print(f"{name:22s} {fmt:7s} {summary}")
        return 0
    import fnmatch
    wanted = []
    for pat in (p.strip() for p in args.models.split(",") if p.strip()):
        hits = [n for n in MODELS if fnmatch.fnmatch(n, pat)]
        if not hits:
            ap.error(f"unknown model {pat!r}; known: {', '.join(MODELS)}")
        wanted += [h for h in hits if h not in wanted]
    os.makedirs(args.out_dir, exist_ok=True)
    index_path = os.path.join(args.out_dir, "zoo.json")
    index = {}
    if os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
    failed = 0
    for name in wanted:
        print(f"[zoo] {name} ...", flush=True)
        entry = make_model(name, args.out_dir)
        if args.slim:
            _drop_source(entry, args.out_dir)
        index[name] = entry
        with open(index_path, "w") as f:
            json.dump(index, f, indent=2, sort_keys=False)
        size = entry.get("nnef_bytes")
        print(f"[zoo] {name}: {entry['status']}" + (f" ({size / 1e6:.1f} MB)" if size else "")
              + (f" -- {entry.get('reason', '')[-300:]}" if entry["status"] != "ok" else ""), flush=True)
        failed += entry["status"] != "ok"
    return 1 if failed == len(wanted) else 0


if __name__ == "__main__":
    sys.exit(main())
