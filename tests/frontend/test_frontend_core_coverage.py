"""The converter registry against the 118 standard operations of ops.json."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from nnef_tvm.frontend import registry

OPS_JSON = Path(os.environ.get("NNEF_OPS_JSON", "/work/shared/nnef/ops.json"))
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "coverage_table.py"


def _ops():
    if not OPS_JSON.exists():
        pytest.skip(f"{OPS_JSON} not available")
    return json.loads(OPS_JSON.read_text())["operations"]


def _coverage_module():
    spec = importlib.util.spec_from_file_location("coverage_table_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_registered_names_are_standard_operations():
    names = {op["name"] for op in _ops()}
    assert len(names) == 118
    extra = registry.supported_ops() - names
    assert not extra, f"converters registered under non-standard names: {sorted(extra)}"


# the families of the frontend-core helper (the sliding-window families are checked by theirs)
CORE_FAMILIES = {"tensors", "elementwise", "activation", "reduce", "shape", "linear", "misc",
                 "normalization", "quantization"}


def test_every_core_converter_states_its_semantics():
    registry._load_all()
    mine = {n: fn for n, fn in registry._CONVERTERS.items()
            if fn.__module__.rsplit(".", 1)[-1] in CORE_FAMILIES}
    assert len(mine) >= 90
    missing = [n for n, fn in mine.items() if not (fn.__doc__ or "").strip()]
    assert not missing


def test_coverage_rows_classify_natives_and_lowerings():
    rows = {r["name"]: r for r in _coverage_module().coverage_rows(_ops())}
    assert len(rows) == 118
    assert rows["add"]["status"] == "native"
    assert rows["softmax"]["status"] == "native"


def test_every_standard_operation_is_native_or_lowerable():
    rows = _coverage_module().coverage_rows(_ops())
    missing = [r["name"] for r in rows if r["status"] == "unsupported"]
    assert not missing, f"no converter and not lowerable: {missing}"
