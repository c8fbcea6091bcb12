"""Export small PyTorch models with torch-to-nnef into tests/data/t2n/<name>/.

Why: the ``tract`` extension set (``extensions=('tract',)``) must accept what
torch-to-nnef really writes, not only hand-written look-alikes. Each fixture is
a tiny model (random weights, fixed seed) exported to ``model.nnef.tgz`` plus
``io.npz`` holding the inputs (``input``, ...) and PyTorch's own outputs
(``output``, ...) as the numeric reference.

Needs torch and torch_to_nnef (not installed on CI; the committed fixtures are
what the fast tests read). torch-to-nnef insists on a tract binary for its
version checks; a stub script that only prints the version is enough with
``check_io=False``.

    python scripts/make_t2n_fixtures.py [--out tests/data/t2n] [names...]
"""
from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

TRACT_VERSION = "0.21.13"
# fixtures exported for a newer tract, where torch-to-nnef writes other operations
TRACT_VERSION_OF = {"causal_lm": "0.22.1", "upsample": "0.23.2"}


def _models():
    """name -> (builder returning (module, example inputs tuple))."""
    import torch
    from torch import nn

    class ConvBnNet(nn.Module):
        """conv + BatchNorm + ReLU + maxpool + linear: the classic image classifier head."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(6, 8, 3, stride=2, bias=False)
            self.bn2 = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8 * 3 * 3, 5)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn(self.conv(x))))
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(torch.flatten(x, 1))

    class MobileBlock(nn.Module):
        """depthwise / pointwise convolutions with hardswish and ReLU6, residual, global pool."""

        def __init__(self):
            super().__init__()
            self.expand = nn.Conv2d(4, 12, 1)
            self.bn1 = nn.BatchNorm2d(12)
            self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
            self.bn2 = nn.BatchNorm2d(12)
            self.project = nn.Conv2d(12, 4, 1)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            y = nn.functional.hardswish(self.bn1(self.expand(x)))
            y = nn.functional.relu6(self.bn2(self.dw(y)))
            y = self.project(y) + x
            y = nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
            return torch.sigmoid(self.head(y))

    class GeluMlp(nn.Module):
        """Linear -> exact GELU (erf) -> LayerNorm -> Linear -> tanh-GELU."""

        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(10, 16)
            self.norm = nn.LayerNorm(16)
            self.fc2 = nn.Linear(16, 6)

        def forward(self, x):
            y = self.norm(nn.functional.gelu(self.fc1(x)))
            return nn.functional.gelu(self.fc2(y), approximate="tanh")

    class Attention(nn.Module):
        """single-block transformer: q/k/v projections, 2 heads, softmax(QK^T/sqrt(d))V, LayerNorm."""

        def __init__(self, dim=8, heads=2):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out = nn.Linear(dim, dim)
            self.norm = nn.LayerNorm(dim)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            hd = d // self.heads

            def split(z):
                return z.reshape(b, t, self.heads, hd).transpose(1, 2)

            q, k, v = split(q), split(k), split(v)
            att = torch.softmax(q @ k.transpose(-2, -1) / hd ** 0.5, dim=-1)
            y = (att @ v).transpose(1, 2).reshape(b, t, d)
            return self.norm(x + self.out(y))

    class Conv1dNet(nn.Module):
        """1-D convolutions (dilated, strided), average pooling, leaky ReLU."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(2, 6, 5, padding=2)
            self.c2 = nn.Conv1d(6, 4, 3, stride=2, dilation=2)
            self.pool = nn.AvgPool1d(2)

        def forward(self, x):
            y = nn.functional.leaky_relu(self.c1(x), 0.1)
            return self.pool(torch.tanh(self.c2(y)))

    class EmbedBag(nn.Module):
        """token embedding (gather) + mean over tokens + linear."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 6)
            self.fc = nn.Linear(6, 3)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(dim=1))

    class Gru(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    class Lstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 5, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    class BiGru(nn.Module):
        """bidirectional GRU: the backward direction is a scan with a negative chunk."""

        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, bidirectional=True)

        def forward(self, x):
            return self.rnn(x)[0]

    class Deconv(nn.Module):
        """grouped transposed convolution (tract's filter layout differs from NNEF's)."""

        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)

        def forward(self, x):
            return nn.functional.elu(self.up(x))

    class Misc(nn.Module):
        """elementwise and shape constructs torch-to-nnef writes with tract_core_* ops or
        tract-only syntax: round (ties to even), arange, einsum, clamp with integer bounds,
        reflect padding, silu/selu redefined as fragments, glu, comparisons, tril (trilu),
        BatchNorm1d + PReLU (literal slope array), log_softmax."""

        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(6)
            self.prelu = nn.PReLU(init=0.2)

        def forward(self, x):
            y = torch.round(x * 2.5) + torch.arange(6, dtype=torch.float32)
            y = y + torch.einsum("ij,kj->ik", x, x).sum(1, keepdim=True)
            y = torch.clamp(y, -3, 4) + nn.functional.silu(x) + nn.functional.selu(x)
            y = nn.functional.pad(y[None], (2, 2), mode="reflect")[0]
            y = nn.functional.glu(torch.cat([y, x], 1), dim=1)
            y = torch.where(y > 0.5, y, -y)[:, :6] + (~(x > 0)).float() + (x > 0.3).float()
            y = self.prelu(self.bn(y)) + torch.tril(x.T @ x, diagonal=1)[:2, :]
            return torch.log_softmax(y, dim=-1)

    class Encoder(nn.Module):
        """torch's TransformerEncoderLayer: scaled_dot_product_attention (tract_core_einsum,
        tract_core_shape_of), LayerNorm, ReLU feed-forward."""

        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

        def forward(self, x):
            return self.layer(x)

    class CausalLm(nn.Module):
        """causal self-attention with an explicit scale + log_softmax head; exported for tract
        0.22 (torch-to-nnef then writes tract_transformers_sdpa and tract_core_log_softmax)."""

        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.head = nn.Linear(8, 7)

        def forward(self, x):
            q, k, v = self.qkv(x).reshape(1, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
            return torch.log_softmax(self.head(y.transpose(1, 2).reshape(1, 5, 8)), dim=-1)

    class Upsample(nn.Module):
        """bilinear (half-pixel and align-corners) and nearest upsampling; exported for tract
        0.23.2, where torch-to-nnef writes tract_core_resize with constant scales/sizes."""

        def forward(self, x):
            a = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            b = nn.functional.interpolate(x, size=(6, 8), mode="bilinear", align_corners=True)
            c = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            return a + b * c

    def randn(*shape):
        return torch.randn(*shape)

    return {
        "conv_bn": lambda: (ConvBnNet(), (randn(1, 3, 14, 14),)),
        "mobile_block": lambda: (MobileBlock(), (randn(1, 4, 8, 8),)),
        "gelu_mlp": lambda: (GeluMlp(), (randn(3, 10),)),
        "attention": lambda: (Attention(), (randn(1, 5, 8),)),
        "conv1d": lambda: (Conv1dNet(), (randn(1, 2, 24),)),
        "embedding": lambda: (EmbedBag(), (torch.tensor([[1, 5, 19, 0], [7, 7, 3, 12]]),)),
        "gru": lambda: (Gru(), (randn(1, 6, 4),)),
        "lstm": lambda: (Lstm(), (randn(1, 6, 4),)),
        "bigru": lambda: (BiGru(), (randn(5, 1, 3),)),
        "deconv": lambda: (Deconv(), (randn(1, 4, 3, 3),)),
        "misc": lambda: (Misc(), (randn(2, 6),)),
        "encoder": lambda: (Encoder(), (randn(1, 4, 8),)),
        "causal_lm": lambda: (CausalLm(), (randn(1, 5, 8),)),
        "upsample": lambda: (Upsample(), (randn(1, 2, 3, 4),)),
    }


def _randomize_norm_stats(module):
    """Fresh BatchNorm layers have mean 0 / var 1: give them real statistics so folding is tested."""
    import torch
    from torch import nn
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        if isinstance(m, nn.LayerNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)


def _fake_tract(folder: Path, version: str = TRACT_VERSION) -> Path:
    script = folder / "tract"
    script.write_text(f"#!/bin/sh\necho 'tract {version}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def export(name: str, out_root: Path, seed: int = 0) -> Path:
    """Export fixture ``name`` into ``out_root/name/``: model.nnef.tgz + io.npz."""
    import torch
    from torch_to_nnef import export_model_to_nnef
    from torch_to_nnef.inference_target import TractNNEF

    torch.manual_seed(seed)
    module, args = _models()[name]()
    _randomize_norm_stats(module)
    module.eval()
    with torch.no_grad():
        ref = module(*args)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    in_names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    out_names = ["output"] if len(refs) == 1 else [f"output_{i}" for i in range(len(refs))]

    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.nnef.tgz"
    version = TRACT_VERSION_OF.get(name, TRACT_VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        export_model_to_nnef(
            model=module, args=args, file_path_export=target,
            inference_target=TractNNEF(version=version, check_io=False, dump_identity_properties=False,
                                       specific_tract_binary_path=_fake_tract(Path(tmp), version)),
            input_names=in_names, output_names=out_names, log_level=logging.WARNING,
            compression_level=9, )
    arrays = {n: a.numpy() for n, a in zip(in_names, args)}
    arrays.update({n: r.detach().numpy() for n, r in zip(out_names, refs)})
    np.savez_compressed(folder / "io.npz", **arrays)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent.parent / "tests" / "data" / "t2n")
    ap.add_argument("names", nargs="*", help="fixtures to export (default: all)")
    ns = ap.parse_args(argv)
    names = ns.names or list(_models())
    failed = []
    for n in names:
        try:
            path = export(n, ns.out)
            print(f"{n}: {path} ({os.path.getsize(path)} bytes)")
        except Exception as e:   # a model torch-to-nnef cannot export is reported, not fatal
            failed.append(n)
            print(f"{n}: export failed: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
