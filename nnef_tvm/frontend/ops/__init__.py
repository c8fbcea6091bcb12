"""One module per NNEF op family; importing this package registers every converter.

Add a new family module to ``_FAMILIES`` below.
"""
import importlib

_FAMILIES: list[str] = [
    # filled in as families land, e.g. "elementwise", "activation", "reduce", ...
]

for _name in _FAMILIES:
    importlib.import_module(f"{__name__}.{_name}")
