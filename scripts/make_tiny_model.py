#!/usr/bin/env python3
"""Write a tiny NNEF model folder: the model the README's first command compiles.

Why a self-made model: it needs no torch, no ONNX and no converter, so anyone can
produce it with numpy and this project alone, and it stays small enough to read.

The network (NCHW, float32, weights drawn from a fixed seed)::

    input  1x3x32x32
    conv 3->8 3x3 pad 1  + relu + max_pool 2x2   -> 1x8x16x16
    conv 8->16 3x3 pad 1 + relu + max_pool 2x2   -> 1x16x8x8
    reshape -> 1x1024, linear -> 1x10, softmax    -> output 1x10

Labels contain a '/', so the weights land in sub-folders (``conv1/filter.dat``)
as NNEF-Tools and the Khronos tools write them.

Usage::

    python scripts/make_tiny_model.py OUT_DIR [--input input.dat] [--seed 0]

``--input FILE`` additionally writes one random input tensor (an NNEF tensor
file) for ``nnef-run``-style commands.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from nnef_tvm.reader.tensorfile import write_tensor

GRAPH = """\
version 1.0;

# A tiny image classifier made by scripts/make_tiny_model.py (random weights).
graph tiny_cnn( input ) -> ( output )
{
    input = external<scalar>(shape = [1, 3, 32, 32]);

    conv1_filter = variable<scalar>(shape = [8, 3, 3, 3], label = 'conv1/filter');
    conv1_bias = variable<scalar>(shape = [1, 8], label = 'conv1/bias');
    conv1 = conv(input, conv1_filter, conv1_bias, padding = [(1, 1), (1, 1)]);
    relu1 = relu(conv1);
    pool1 = max_pool(relu1, size = [1, 1, 2, 2], stride = [1, 1, 2, 2],
                     padding = [(0, 0), (0, 0), (0, 0), (0, 0)], border = 'ignore');

    conv2_filter = variable<scalar>(shape = [16, 8, 3, 3], label = 'conv2/filter');
    conv2_bias = variable<scalar>(shape = [1, 16], label = 'conv2/bias');
    conv2 = conv(pool1, conv2_filter, conv2_bias, padding = [(1, 1), (1, 1)]);
    relu2 = relu(conv2);
    pool2 = max_pool(relu2, size = [1, 1, 2, 2], stride = [1, 1, 2, 2],
                     padding = [(0, 0), (0, 0), (0, 0), (0, 0)], border = 'ignore');

    flat = reshape(pool2, shape = [1, 1024]);
    fc_weights = variable<scalar>(shape = [10, 1024], label = 'fc/weights');
    fc_bias = variable<scalar>(shape = [1, 10], label = 'fc/bias');
    logits = linear(flat, fc_weights, fc_bias);
    output = softmax(logits);
}
"""

# label -> shape, in the order the weights are drawn (keeps the seed meaningful)
VARIABLES = {
    "conv1/filter": (8, 3, 3, 3),
    "conv1/bias": (1, 8),
    "conv2/filter": (16, 8, 3, 3),
    "conv2/bias": (1, 16),
    "fc/weights": (10, 1024),
    "fc/bias": (1, 10),
}
INPUT_SHAPE = (1, 3, 32, 32)


def make_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-style scaled normal weights, small biases: activations stay O(1) through the net."""
    rng = np.random.default_rng(seed)
    weights = {}
    for label, shape in VARIABLES.items():
        if label.endswith("bias"):
            weights[label] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            weights[label] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def make_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).standard_normal(INPUT_SHAPE).astype(np.float32)


def write_model(out_dir: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Write graph.nnef and the .dat files into ``out_dir``; return the weights by label."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "graph.nnef"), "w") as f:
        f.write(GRAPH)
    weights = make_weights(seed)
    for label, array in weights.items():
        path = os.path.join(out_dir, *label.split("/")) + ".dat"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_tensor(path, array)
    return weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write a tiny NNEF CNN model folder (random weights).")
    ap.add_argument("out_dir", help="model folder to create (graph.nnef + weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", metavar="FILE", help="also write a random 1x3x32x32 input tensor file")
    args = ap.parse_args(argv)
    weights = write_model(args.out_dir, args.seed)
    if args.input:
        write_tensor(args.input, make_input(args.seed))
    count = sum(w.size for w in weights.values())
    print(f"wrote {args.out_dir}: tiny_cnn, {len(weights)} variables, {count} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
