"""The per-device tuning store: MetaSchedule logs kept per device, safe to share.

Why a store: a tuned schedule is only good on the device it was measured on,
and tuning costs minutes to hours, so records are kept per *device key* (a
sanitized name such as ``llvm-intel-r-xeon-r-processor``) under one root
folder (``$NNEF_TVM_TUNING_DIR``, else ``$XDG_CACHE_HOME/nnef-tvm/tuning``)::

    ROOT/<device key>/database_workload.json       one workload per line
    ROOT/<device key>/database_tuning_record.json  one measured trial per line
    ROOT/<device key>/nnef_tvm_record_stamps.json  which rules version a record met
    ROOT/<device key>/.lock                        flock(2) target for appends

The two files use MetaSchedule's ``JSONDatabase`` line format (a workload line
is ``[structural hash, base64 module]``; a record line is ``[workload line
index, record]``), so TVM's own tools can read a store folder too. We write and
read them ourselves because:

* several ``nnef-tune`` processes may append at once (two models tuned in
  parallel): each append takes an exclusive ``flock`` on ``.lock`` and
  re-reads the workload file's new tail before writing, so a record always
  points at the right workload line;
* a line torn by a crash or edited by hand must not make the whole log
  unreadable: bad lines are skipped with one warning per file.

Workloads are keyed by their structural hash, so a kernel shared by two models
(the same fused conv shape) is tuned and stored once.

Stamps: MetaSchedule's record line has exactly four fields (TVM 0.27's
``TuningRecord::FromJSON`` rejects a fifth), so what ``nnef-tune`` knows
about a record -- the version of the default schedule rules it competed with
and whether the template search or MetaSchedule's search measured it
(:mod:`.rules_version`) -- goes into a third file, one JSON object per line,
keyed by the record's workload hash and a digest of its JSON
(:func:`record_digest`). A key survives re-indexing by export/import and
does not depend on line numbers; TVM's ``JSONDatabase`` ignores the file.

Ranking: a record's time is the *minimum* of its measured repeats
(:func:`best_secs`). On a shared machine a repeat can only be slowed down by
other load, never sped up, so the minimum is the closest to the kernel's own
time; the mean lets one disturbed repeat decide between two candidates.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from ..errors import NNEFError

ENV_DIR = "NNEF_TVM_TUNING_DIR"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
STAMP_FILE = "nnef_tvm_record_stamps.json"
LOCK_FILE = ".lock"
EXPORT_FORMAT = "nnef-tvm-tuning-log/1"
FAILED_SECS = 1e9          # MetaSchedule marks failed trials with run_secs of 1e10


class StoreWarning(UserWarning):
    """A tuning log line was unreadable and skipped."""


def default_root() -> Path:
    """``$NNEF_TVM_TUNING_DIR``, else ``$XDG_CACHE_HOME/nnef-tvm/tuning`` (~/.cache default)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "nnef-tvm" / "tuning"


def sanitize_key(text: str) -> str:
    """A device key usable as one folder name: ``[a-z0-9._-]``, no leading dot, <= 96 chars."""
    key = re.sub(r"[^a-z0-9._-]+", "-", str(text).strip().lower())
    key = re.sub(r"-{2,}", "-", key).strip("-.")[:96].strip("-.")
    if not key:
        raise NNEFError(f"device key '{text}' has no usable characters (use letters, digits, "
                        "'.', '_' or '-')")
    return key


def _run_secs(record_json) -> Optional[list]:
    try:
        secs = record_json[1]
        return [float(s) for s in secs] if secs else None
    except (IndexError, TypeError, KeyError, ValueError):
        return None


def mean_secs(record_json) -> Optional[float]:
    """Mean measured seconds of a record line's record, None for a failed trial."""
    vals = _run_secs(record_json)
    if not vals:
        return None
    m = sum(vals) / len(vals)
    return m if m < FAILED_SECS else None


def best_secs(record_json) -> Optional[float]:
    """The seconds records are ranked by: the minimum repeat, None for a failed trial."""
    vals = _run_secs(record_json)
    if not vals or max(vals) >= FAILED_SECS:
        return None
    return min(vals)


def min_of(run_secs) -> Optional[float]:
    """:func:`best_secs` of a bare list of run seconds (a runner result, a TuningRecord)."""
    return best_secs([None, list(run_secs)]) if run_secs else None


def record_digest(record_json) -> str:
    """A short digest of a record's JSON: with the workload hash, the key of its stamp."""
    text = json.dumps(record_json, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# ------------------------------------------------------------ reading a log
@dataclass
class Workload:
    """One workload line: its structural hash and the line's JSON."""

    shash: str
    json: list


@dataclass
class DeviceLog:
    """What one device folder holds, parsed line by line (bad lines skipped)."""

    workloads: list = field(default_factory=list)       # index -> Workload | None (bad line)
    records: list = field(default_factory=list)         # (workload index, record json)
    skipped: int = 0
    stamps: dict = field(default_factory=dict)   # (hash, record digest) -> [stamp, ...]
    record_stamps: Optional[list] = None         # per record: its stamp or None (see stamp_at)
    decisions: Optional[dict] = None   # an export's in-model decisions (see in_model_check)

    def stamp_at(self, pos: int) -> Optional[dict]:
        """The stamp of ``records[pos]``; None: written before stamps, or by other tools.

        Stamp lines are keyed by the record's content, so byte-identical
        records (the same trace failing twice, say) share a key: the n-th
        copy in the record file gets the n-th stamp line written for it
        (records and stamps are appended in the same order, under one lock).
        """
        if self.record_stamps is None:
            self.record_stamps = _align_stamps(self.workloads, self.records, self.stamps)
        return self.record_stamps[pos]

    def by_hash(self) -> dict:
        return {w.shash: i for i, w in enumerate(self.workloads) if w is not None}

    def subset(self, positions) -> "DeviceLog":
        """This log with only the records at ``positions`` (in log order, stamps kept)."""
        keep = sorted(positions)
        return DeviceLog(workloads=self.workloads, records=[self.records[p] for p in keep],
                         skipped=self.skipped, stamps=self.stamps,
                         record_stamps=[self.stamp_at(p) for p in keep])

    def records_of(self, shash: str) -> list:
        idx = {i for i, w in enumerate(self.workloads) if w is not None and w.shash == shash}
        return [r for i, r in self.records if i in idx]

    def trial_counts(self) -> dict:
        """{workload hash: number of recorded trials (failed ones included)}."""
        counts: dict = {}
        for i, _ in self.records:
            w = self.workloads[i]
            counts[w.shash] = counts.get(w.shash, 0) + 1
        return counts

    def best(self) -> dict:
        """{workload hash: (seconds, record json)} of the fastest successful trial (by min)."""
        out: dict = {}
        for i, rec in self.records:
            secs = best_secs(rec)
            if secs is None:
                continue
            shash = self.workloads[i].shash
            if shash not in out or secs < out[shash][0]:
                out[shash] = (secs, rec)
        return out


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the non-empty lines of ``path``."""
    if not path.is_file():
        return
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def _parse_workload(text: str) -> Workload:
    obj = json.loads(text)
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], str)):
        raise ValueError("expected [hash, module]")
    return Workload(obj[0], obj)


def _parse_record(text: str, n_workloads: int) -> tuple[int, list]:
    obj = json.loads(text)
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int)
            and isinstance(obj[1], list) and len(obj[1]) >= 3):
        raise ValueError("expected [workload index, record]")
    if not 0 <= obj[0] < n_workloads:
        raise ValueError(f"workload index {obj[0]} out of range")
    return obj[0], obj[1]


def _parse_stamp(text: str) -> tuple:
    obj = json.loads(text)
    if not (isinstance(obj, dict) and isinstance(obj.get("workload"), str)
            and isinstance(obj.get("record"), str) and isinstance(obj.get("stamp"), dict)):
        raise ValueError("expected {workload, record, stamp}")
    return (obj["workload"], obj["record"]), obj["stamp"]


def stamp_line(shash: str, record_json, stamp: dict) -> dict:
    """One line of the stamp file."""
    return {"workload": shash, "record": record_digest(record_json), "stamp": dict(stamp)}


def _align_stamps(workloads, records, stamps: dict) -> list:
    """Per record, its stamp (the n-th copy of a record takes the n-th stamp of its key)."""
    out, used = [], {}
    for i, rec in records:
        key = (workloads[i].shash, record_digest(rec)) if stamps else None
        found = stamps.get(key) if key else None
        n = used.get(key, 0)
        if found and n < len(found):
            used[key] = n + 1
            out.append(found[n])
        else:
            out.append(None)
    return out


def read_log(folder) -> DeviceLog:
    """Parse a device folder; unreadable lines are skipped with one warning per file."""
    folder = Path(folder)
    log = DeviceLog()
    bad: list = []
    for n, text in _lines(folder / WORKLOAD_FILE):
        try:
            log.workloads.append(_parse_workload(text))
        except (ValueError, TypeError):
            log.workloads.append(None)       # keep the index: records count lines
            bad.append((WORKLOAD_FILE, n))
    for n, text in _lines(folder / RECORD_FILE):
        try:
            idx, rec = _parse_record(text, len(log.workloads))
            if log.workloads[idx] is None:
                raise ValueError("record of an unreadable workload")
            log.records.append((idx, rec))
        except (ValueError, TypeError):
            bad.append((RECORD_FILE, n))
    # after the records: a writer adds a record's stamp right after the record
    # (one lock), so every record read here normally finds its stamp
    for n, text in _lines(folder / STAMP_FILE):
        try:
            key, stamp = _parse_stamp(text)
            log.stamps.setdefault(key, []).append(stamp)
        except (ValueError, TypeError):
            bad.append((STAMP_FILE, n))
    log.skipped = len(bad)
    for name in sorted({b[0] for b in bad}):
        where = [str(n) for f, n in bad if f == name]
        shown = ", ".join(where[:5]) + (", ..." if len(where) > 5 else "")
        warnings.warn(f"{folder / name}: skipped {len(where)} unreadable line(s) "
                      f"(line {shown})", StoreWarning, stacklevel=2)
    return log


# ------------------------------------------------------------ writing a log
@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _append_line(path: Path, text: str) -> None:
    """Append one line with one write(2) (O_APPEND), after a newline if the file lacks one."""
    data = (text.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    data = b"\n" + data       # a torn last line stays a line of its own
        os.write(fd, data)
    finally:
        os.close(fd)


class LogWriter:
    """Appends records to one device folder; safe against other writers (flock).

    It remembers how far it has read the workload file, so each append only
    parses the lines other processes added since.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._offset = 0
        self._count = 0
        self._index: dict = {}

    def _refresh(self) -> None:
        # Called under the lock: every writer ends its lines with a newline, so
        # only a crash leaves a torn tail, which counts as a (bad) line of its
        # own exactly as read_log counts it (_append_line starts a new line).
        path = self.folder / WORKLOAD_FILE
        if not path.is_file():
            return
        with open(path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        for raw in data.split(b"\n"):
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            try:
                self._index.setdefault(_parse_workload(text).shash, self._count)
            except (ValueError, TypeError):
                pass
            self._count += 1
        self._offset += len(data)

    def append(self, workload_json: list, record_json: list,
               stamp: Optional[dict] = None) -> None:
        """Append one trial (a workload line is added first if the workload is new).

        ``stamp`` (:func:`.rules_version.stamp`) goes to the stamp file, under
        the same lock, right after the record.
        """
        with _locked(self.folder):
            self._refresh()
            shash = workload_json[0]
            idx = self._index.get(shash)
            if idx is None:
                _append_line(self.folder / WORKLOAD_FILE, json.dumps(workload_json))
                self._refresh()
                idx = self._index[shash]
            _append_line(self.folder / RECORD_FILE, json.dumps([idx, record_json]))
            if stamp:
                _append_line(self.folder / STAMP_FILE,
                             json.dumps(stamp_line(shash, record_json, stamp)))

    def add_stamp(self, shash: str, record_json: list, stamp: dict) -> None:
        """Stamp a record already in the log (an import bringing the stamp later)."""
        with _locked(self.folder):
            _append_line(self.folder / STAMP_FILE,
                         json.dumps(stamp_line(shash, record_json, stamp)))


# ------------------------------------------------------------ the store
class TuningStore:
    """All devices' logs under one root folder."""

    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    def folder(self, device_key: str) -> Path:
        return self.root / sanitize_key(device_key)

    def devices(self) -> list[str]:
        """Device keys that have a record file."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if (p / RECORD_FILE).is_file() or (p / WORKLOAD_FILE).is_file())

    def read(self, device_key: str) -> DeviceLog:
        return read_log(self.folder(device_key))

    def writer(self, device_key: str) -> LogWriter:
        return LogWriter(self.folder(device_key))

    def has_records(self, device_key: str) -> bool:
        path = self.folder(device_key) / RECORD_FILE
        return path.is_file() and path.stat().st_size > 0

    # ------------------------------------------------ sharing across machines
    def export(self, device_key: str, file) -> int:
        """Write the device's log as one file (.json, or .tar.gz/.tgz) -> number of trials.

        Only readable lines are exported, re-indexed, so the file is clean
        even when the local log has bad lines. The stamps of the exported
        records travel with them (``stamps`` in the JSON, the stamp file in
        an archive), and so do the device's in-model decisions
        (:mod:`.in_model_check`: ``decisions`` in the JSON, the decisions
        file in an archive): they were measured on this kind of device too.
        """
        from .in_model_check import DECISIONS_FILE, read_choices, read_vetoes
        key = sanitize_key(device_key)
        log = self.read(key)
        if not log.records:
            raise NNEFError(f"no tuning records for device '{key}' in {self.root}")
        used = sorted({i for i, _ in log.records})
        remap = {old: new for new, old in enumerate(used)}
        doc = {"format": EXPORT_FORMAT, "device_key": key,
               "workloads": [log.workloads[i].json for i in used],
               "records": [[remap[i], rec] for i, rec in log.records]}
        stamps = []
        for pos, (i, rec) in enumerate(log.records):
            st = log.stamp_at(pos)
            if st:
                stamps.append(stamp_line(log.workloads[i].shash, rec, st))
        if stamps:
            doc["stamps"] = stamps
        folder = self.folder(key)
        decisions = {"vetoes": read_vetoes(folder), "choices": read_choices(folder)}
        if decisions["vetoes"] or decisions["choices"]:
            doc["decisions"] = decisions
        file = Path(file)
        text = json.dumps(doc)
        if _is_tar(file):
            files = [(f"{key}/{WORKLOAD_FILE}",
                      "".join(json.dumps(w) + "\n" for w in doc["workloads"])),
                     (f"{key}/{RECORD_FILE}",
                      "".join(json.dumps(r) + "\n" for r in doc["records"]))]
            if stamps:
                files.append((f"{key}/{STAMP_FILE}",
                              "".join(json.dumps(x) + "\n" for x in stamps)))
            if "decisions" in doc:
                files.append((f"{key}/{DECISIONS_FILE}", json.dumps(doc["decisions"])))
            with tarfile.open(file, "w:gz") as tar:
                for name, body in files:
                    data = body.encode("utf-8")
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            file.write_text(text + "\n", encoding="utf-8")
        return len(doc["records"])

    def import_(self, file, device_key: Optional[str] = None) -> dict:
        """Merge an exported file into this store -> {device key: trials added}.

        Trials already present (same workload, same record, as many copies)
        are not duplicated; a local copy whose record has no stamp at all gets
        the file's stamps. The file's in-model decisions are taken for the
        workloads that have no local decision (a local one was measured
        here). ``device_key`` overrides the key stored in the file.
        """
        from .in_model_check import merge_imported_decisions
        from collections import Counter
        file = Path(file)
        if not file.is_file():
            raise NNEFError("tuning log file not found", file=str(file))
        logs = _read_export(file)
        added = {}
        for key, src in logs.items():
            key = sanitize_key(device_key or key)
            existing = self.read(key)
            have = Counter((existing.workloads[i].shash, json.dumps(r, sort_keys=True))
                           for i, r in existing.records)
            taken: Counter = Counter()
            restamped: set = set()
            writer = self.writer(key)
            n = 0
            for pos, (idx, rec) in enumerate(src.records):
                wl = src.workloads[idx]
                stamp = src.stamp_at(pos)
                sig = (wl.shash, json.dumps(rec, sort_keys=True))
                taken[sig] += 1
                if taken[sig] <= have[sig]:              # this copy is already here
                    skey = (wl.shash, record_digest(rec))
                    if stamp and (skey not in existing.stamps or skey in restamped):
                        writer.add_stamp(wl.shash, rec, stamp)
                        restamped.add(skey)
                    continue
                writer.append(wl.json, rec, stamp)
                n += 1
            added[key] = n
            if src.decisions:
                merge_imported_decisions(self.folder(key), src.decisions)
        return added


def _is_tar(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".tar.gz", ".tgz", ".tar"))


def _read_export(file: Path) -> dict:
    """{device key: DeviceLog} of an exported file (JSON or archive)."""
    if _is_tar(file) or tarfile.is_tarfile(file):
        return _read_export_tar(file)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NNEFError(f"not a tuning log export (JSON or .tar.gz): {e}", file=str(file)) \
            from None
    if not (isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT):
        raise NNEFError(f"not a tuning log export (expected format '{EXPORT_FORMAT}')",
                        file=str(file))
    wls, recs = _clean(doc.get("workloads"), doc.get("records"), file)
    log = DeviceLog(workloads=[Workload(w[0], w) if w else None for w in wls], records=recs,
                    stamps=_clean_stamps(doc.get("stamps"), file),
                    decisions=doc.get("decisions") if isinstance(doc.get("decisions"), dict)
                    else None)
    return {doc.get("device_key") or "imported": log}


def _read_export_tar(file: Path) -> dict:
    import tempfile
    from .in_model_check import DECISIONS_FILE, _read
    out = {}
    try:
        with tarfile.open(file, "r:*") as tar, tempfile.TemporaryDirectory() as tmp:
            members = [m for m in tar.getmembers() if m.isfile() and os.path.basename(m.name)
                       in (WORKLOAD_FILE, RECORD_FILE, STAMP_FILE, DECISIONS_FILE)]
            for m in members:
                parts = Path(m.name).parts
                if len(parts) != 2 or parts[0] in ("..", ".", ""):
                    continue
                dest = Path(tmp) / sanitize_key(parts[0])
                dest.mkdir(exist_ok=True)
                (dest / parts[1]).write_bytes(tar.extractfile(m).read())
            for folder in sorted(Path(tmp).iterdir()):
                out[folder.name] = read_log(folder)
                out[folder.name].decisions = _read(folder) or None
    except (tarfile.TarError, OSError) as e:
        raise NNEFError(f"cannot read tuning log archive: {e}", file=str(file)) from None
    if not out:
        raise NNEFError(f"archive holds no <device>/{RECORD_FILE}", file=str(file))
    return out


def _clean(workloads, records, file) -> tuple:
    if not isinstance(workloads, list) or not isinstance(records, list):
        raise NNEFError("tuning log export lacks 'workloads'/'records' lists", file=str(file))
    wls = []
    for w in workloads:
        try:
            wls.append(_parse_workload(json.dumps(w)).json)
        except (ValueError, TypeError):
            wls.append(None)
    recs, bad = [], 0
    for r in records:
        try:
            idx, rec = _parse_record(json.dumps(r), len(wls))
            if wls[idx] is None:
                raise ValueError("bad workload")
            recs.append((idx, rec))
        except (ValueError, TypeError):
            bad += 1
    if bad:
        warnings.warn(f"{file}: skipped {bad} unreadable record(s)", StoreWarning, stacklevel=3)
    return wls, recs


def _clean_stamps(stamps, file) -> dict:
    """{(hash, record digest): [stamp, ...]} of an export's optional ``stamps`` list."""
    out, bad = {}, 0
    for line in stamps if isinstance(stamps, list) else []:
        try:
            key, stamp = _parse_stamp(json.dumps(line))
            out.setdefault(key, []).append(stamp)
        except (ValueError, TypeError):
            bad += 1
    if bad or (stamps is not None and not isinstance(stamps, list)):
        warnings.warn(f"{file}: skipped {bad or 1} unreadable stamp(s)", StoreWarning,
                      stacklevel=3)
    return out
