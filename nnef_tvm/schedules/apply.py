"""Finding and applying a device's tuned schedules when compiling (``nnef-compile``).

Compilation looks up the target's device key (:mod:`.device_key`) in the
tuning store and, when that device has records, hands the pipeline a
MetaSchedule database holding the best record of each workload; the
pipeline's ``_apply_database`` hook applies it right after FuseTIR. Kernels
without a record keep the default schedule (none on CPU, dlight on GPUs).

``--tuning-dir DIR`` may be a store root (the device's subfolder is used) or a
single device folder / MetaSchedule JSONDatabase folder. Setting
``NNEF_TVM_NO_TUNING=1`` disables the automatic lookup in the default store.

Best record: the lowest minimum repeat (:func:`.store.best_secs`). Records
that competed with an older version of the default rules are ignored
(:func:`.rules_version.classify`); a kernel left without records because of
that keeps the *current* default schedule and is reported ("records predate
the current default schedules ... re-run nnef-tune") on the progress line,
in :meth:`AppliedTuning.summary` (the compiled model's ``metadata["tuning"]``)
and by ``nnef-compile``. ``nnef-tune``'s in-model selection
(:mod:`.in_model_check`) overrides the ranking per workload: a *chosen*
workload applies the record that ran fastest inside the model, a *vetoed*
one keeps its default schedule.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import NNEFError
from .in_model_check import chosen_records, vetoed_workloads
from .store import RECORD_FILE, TuningStore, read_log

STALE_ADVICE = ("records predate the current default schedules, using defaults; "
                "re-run nnef-tune")

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
    rules_version: Optional[str] = None
    stale_database: object = None  # workloads whose records are all stale (None: none)
    stale_workloads: int = 0      # in the store
    stale: Optional[int] = None   # fused kernels among them (after count())
    vetoed: int = 0               # workloads whose records lost in the model (in_model_check)
    chosen: int = 0               # workloads applying the record chosen in the model

    def count(self, fused_mod, target) -> tuple[int, int]:
        """(kernels with a tuned record, tunable kernels) of a module after FuseTIR.

        Also counts the kernels whose records are all stale (``stale``).
        """
        self.tuned, self.kernels = count_tuned(self.database, fused_mod, target.tvm())
        self.stale = count_known(self.stale_database, fused_mod) \
            if self.stale_database is not None else 0
        return self.tuned, self.kernels

    def stale_line(self) -> Optional[str]:
        """The warning about stale records, None when there is nothing to say."""
        n = self.stale if self.stale is not None else self.stale_workloads
        if not n:
            return None
        what = "kernels" if self.stale is not None else "workloads in the store"
        return f"{n} {what}: {STALE_ADVICE}"

    def line(self) -> str:
        stale = self.stale_line()
        tail = f"; {stale}" if stale else ""
        if self.chosen:
            tail += f"; {self.chosen} tuned workload(s) use the record chosen in the model"
        if self.vetoed:
            tail += (f"; {self.vetoed} tuned workload(s) slower in the model than their "
                     "default schedule are not applied")
        if self.tuned is None:
            return (f"tuning: {self.records} tuned workloads for device {self.device_key}"
                    + tail)
        return (f"tuning: {self.tuned} of {self.kernels} kernels use tuned schedules, "
                f"{self.kernels - self.tuned} default (device {self.device_key})" + tail)

    def summary(self) -> dict:
        return {"device_key": self.device_key, "tuned_kernels": self.tuned,
                "default_kernels": None if self.kernels is None else self.kernels - self.tuned,
                "stale_kernels": self.stale, "rules_version": self.rules_version,
                "vetoed_workloads": self.vetoed, "chosen_workloads": self.chosen,
                "notice": self.stale_line()}


def tuning_for_compile(target, tuning_dir=None, progress: Optional[Callable] = None,
                       device_key_override: Optional[str] = None) -> Optional[AppliedTuning]:
    """The tuned schedules to apply for ``target``, or None (default schedules)."""
    from .device_key import device_key
    from .rules_version import classify
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
    fresh = classify(read_log(folder))
    vetoed = vetoed_workloads(folder, fresh.version)
    if vetoed:      # slower in the model than the default (.in_model_check): not applied
        fresh.log = _without(fresh.log, vetoed)
    chosen = chosen_records(folder, fresh.version)
    if chosen:      # the record that ran fastest in the model (.in_model_check)
        fresh.log, chosen_n = _only_chosen(fresh.log, chosen)
    else:
        chosen_n = 0
    database, loaded = _memory_database(None, fresh.log, top_k=1)
    if not loaded and not fresh.defaulted:
        if progress is not None:
            progress(f"tuning: no usable records for device {key} in {folder}")
        return None
    stale_db = _workload_database(fresh.log, fresh.defaulted) if fresh.defaulted else None
    return AppliedTuning(database, key, str(folder), loaded, rules_version=fresh.version,
                         stale_database=stale_db, stale_workloads=len(fresh.defaulted),
                         vetoed=len(vetoed), chosen=chosen_n)


def _without(log, hashes: set):
    """``log`` without the records of the workloads ``hashes``."""
    return log.subset(pos for pos, (i, _) in enumerate(log.records)
                      if log.workloads[i].shash not in hashes)


def _only_chosen(log, chosen: dict):
    """(``log`` where each workload of ``chosen`` keeps only its chosen record, how many did).

    ``chosen``: {workload hash: record digest}. A workload whose chosen record
    is no longer in the store (imported over, edited) keeps all its records.
    """
    from .store import record_digest
    found = {pos: log.workloads[i].shash for pos, (i, rec) in enumerate(log.records)
             if log.workloads[i].shash in chosen
             and record_digest(rec) == chosen[log.workloads[i].shash]}
    have = set(found.values())
    return log.subset(pos for pos, (i, _) in enumerate(log.records)
                      if log.workloads[i].shash not in have or pos in found), len(have)


def _workload_database(log, hashes):
    """A MemoryDatabase holding just the workloads ``hashes`` (asked with has_workload)."""
    from tvm.s_tir import meta_schedule as ms
    from .tuning import _warn
    db = ms.database.MemoryDatabase()
    for w in log.workloads:
        if w is not None and w.shash in hashes:
            try:
                db.commit_workload(ms.database.Workload.from_json(w.json).mod)
            except Exception as e:  # noqa: BLE001 - a bad line must never crash a build
                _warn(f"skipped stored workload {w.shash}: {e}")
    return db


def count_known(database, fused_mod) -> int:
    """How many unscheduled PrimFuncs of ``fused_mod`` are workloads of ``database``."""
    from tvm import tirx
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    n = 0
    for _, func in fused_mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            continue
        if database.has_workload(_normalize_mod(func)):
            n += 1
    return n


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
