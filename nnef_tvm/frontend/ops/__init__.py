"""One module per NNEF op family; importing this package registers every converter.

Add a new family module to ``_FAMILIES`` below.
"""
import importlib

_FAMILIES: list[str] = [
    "tensors",
    "tract",
    "elementwise",
    "activation",
    "conv",
    "window",
    "pooling",
    "resampling",
    "local_norm",
    "roi",
    "reduce",
    "shape",
    "linear",
    "misc",
    "normalization",
    "quantization",
]

for _name in _FAMILIES:
    importlib.import_module(f"{__name__}.{_name}")
