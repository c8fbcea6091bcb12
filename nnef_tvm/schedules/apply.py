"""Finding and applying a device's tuned schedules when compiling (``nnef-compile``).

Compilation looks up the target's device key (:mod:`.device_key`) in the
tuning store and, when that device has records, hands the pipeline a
MetaSchedule database holding the best record of each workload; the
pipeline's ``_apply_database`` hook applies it right after FuseTIR. Kernels
without a record keep the default schedule (none on CPU, dlight on GPUs).

``--tuning-dir DIR`` may be a store root (the device's subfolder is used) or a
single device folder / MetaSchedule JSONDatabase folder. Setting
``NNEF_TVM_NO_TUNING=1`` disables the automatic lookup in the default store.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import NNEFError
from .store import RECORD_FILE, TuningStore, read_log

ENV_DISABLE = "NNEF_TVM_NO_TUNING"


@dataclass
class AppliedTuning:
    """The database handed to the pipeline, and how many kernels it covered."""

    database: object
    device_key: str
    folder: str
    records: int                  # best records loaded (one per workload)
    tuned: Optional[int] = None   # fused kernels with a record (after count())
    kernels: Optional[int] = None

    def count(self, fused_mod, target) -> tuple[int, int]:
        """(kernels with a tuned record, tunable kernels) of a module after FuseTIR."""
        self.tuned, self.kernels = count_tuned(self.database, fused_mod, target.tvm())
        return self.tuned, self.kernels

    def line(self) -> str:
        if self.tuned is None:
            return f"tuning: {self.records} tuned workloads for device {self.device_key}"
        return (f"tuning: {self.tuned} of {self.kernels} kernels use tuned schedules, "
                f"{self.kernels - self.tuned} default (device {self.device_key})")

    def summary(self) -> dict:
        return {"device_key": self.device_key, "tuned_kernels": self.tuned,
                "default_kernels": None if self.kernels is None else self.kernels - self.tuned}


def tuning_for_compile(target, tuning_dir=None, progress: Optional[Callable] = None,
                       device_key_override: Optional[str] = None) -> Optional[AppliedTuning]:
    """The tuned schedules to apply for ``target``, or None (default schedules)."""
    from .device_key import device_key
    from .tuning import _memory_database
    key = device_key(target, override=device_key_override)
    if tuning_dir:
        root = Path(os.fspath(tuning_dir)).expanduser()
        if not root.is_dir():
            raise NNEFError("tuning directory not found", file=str(root))
        folder = root if (root / RECORD_FILE).is_file() else TuningStore(root).folder(key)
    else:
        if os.environ.get(ENV_DISABLE, "").strip() not in ("", "0"):
            return None
        folder = TuningStore().folder(key)
    if not (folder / RECORD_FILE).is_file():
        if tuning_dir and progress is not None:
            progress(f"tuning: no records for device {key} in {folder}; default schedules")
        return None
    log = read_log(folder)
    database, loaded = _memory_database(None, log, top_k=1)
    if not loaded:
        if progress is not None:
            progress(f"tuning: no usable records for device {key} in {folder}")
        return None
    return AppliedTuning(database, key, str(folder), loaded)


def count_tuned(database, fused_mod, tvm_target) -> tuple[int, int]:
    """How many unscheduled PrimFuncs of ``fused_mod`` the database has a record for.

    It asks the database exactly what ``MetaScheduleApplyDatabase`` asks (the
    PrimFunc normalized by MetaSchedule, with its global name).
    """
    from tvm import tirx
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    tuned = total = 0
    for gv, func in fused_mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            continue
        total += 1
        if database.query_tuning_record(_normalize_mod(func), tvm_target, gv.name_hint) \
                is not None:
            tuned += 1
    return tuned, total
