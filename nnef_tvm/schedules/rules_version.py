"""Which version of the default CPU schedule rules a tuning record competed with.

Why: a template-search record (:mod:`.template_search`) is only an honest
winner while the *current* default schedule is among the candidates it beat.
When the rules improve, the workload's structural hash stays the same, so the
store's old records -- the old default, its knob variants, and MetaSchedule's
records that beat that old default -- would keep being applied although
today's default (never measured) may be faster. So every record ``nnef-tune``
writes is stamped with :func:`rules_version`, and compile ignores a
workload's records made against other rules (:func:`classify`).

The version is computed, never bumped by hand: a short SHA-256 of the rule
modules' code (:data:`RULE_MODULES` plus every ``*_cpu.py`` module of this
package, so a new rule module is covered without editing this list). The
code is hashed as its syntax tree without docstrings (``ast.dump``): a
change to a comment, a docstring or the formatting does not orphan a store,
any change to what the rules do does. It is computed once per process (the
code a process runs does not change after import either).

Which records a version makes stale (:func:`classify`), per workload:

* records are grouped by the rules version in their stamp; a group whose
  records include a *template* record (the run measured that version's
  default schedule) is **stale** when its version is not the current one --
  its template records and the evolutionary records measured against them
  (same version, any run) are ignored;
* records of a group without template records (MetaSchedule's search only,
  e.g. GPU targets or ``--strategy evolutionary``) never competed with a
  default schedule and keep competing as before;
* unstamped records (written before stamps existed, or imported from a
  plain MetaSchedule database) have no known version and are used as before.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# the default CPU rules and what they share; every "<name>_cpu.py" here is added
RULE_MODULES = ("cpu_common", "conv_cpu", "conv_channel_cpu", "conv_spatial_cpu",
                "generic_cpu", "prepack", "default", "pool_cpu", "dense_cpu")
PACKAGE = __name__.rpartition(".")[0]
VERSION_CHARS = 12

TEMPLATE = "template"     # stamp phase of a template-search record
SEARCH = "search"         # stamp phase of a MetaSchedule search record

_cache: dict = {}


def rule_module_names(modules=None) -> list[str]:
    """Fully qualified names of the rule modules that exist (sorted, no duplicates)."""
    names = {m if "." in m else f"{PACKAGE}.{m}" for m in (modules or RULE_MODULES)}
    if modules is None:
        here = Path(__file__).parent
        names |= {f"{PACKAGE}.{p.stem}" for p in here.glob("*_cpu.py")}
    return sorted(n for n in names if _origin(n) is not None)


def _origin(name: str) -> Optional[str]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin not in (None, "built-in") else None


def code_digest_text(source: str) -> str:
    """The text that is hashed for one module: its syntax tree without docstrings."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source                       # hash what is there (a broken module still counts)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def compute_rules_version(modules=None) -> str:
    """The version of ``modules`` (default: the rule modules) as they are on disk now."""
    h = hashlib.sha256()
    for name in rule_module_names(modules):
        text = Path(_origin(name)).read_text(encoding="utf-8", errors="replace")
        short = name.rpartition(".")[2]
        h.update(short.encode() + b"\0" + code_digest_text(text).encode() + b"\0")
    return h.hexdigest()[:VERSION_CHARS]


def rules_version() -> str:
    """The current rules version (computed on the first call of this process)."""
    key = tuple(RULE_MODULES)
    if key not in _cache:
        _cache[key] = compute_rules_version()
    return _cache[key]


def stamp(phase: str, version: Optional[str] = None) -> dict:
    """The stamp stored beside a record that ``phase`` (TEMPLATE / SEARCH) measured."""
    return {"rules": version or rules_version(), "phase": phase}


# ------------------------------------------------------------ which records count
@dataclass
class Freshness:
    """A device log split into the records compile may use and the stale ones.

    ``log`` holds only the usable records (same workload lines, so indices
    stay valid); ``stale`` the positions (in the full log's ``records``) that
    were dropped; ``stale_workloads`` the hashes of workloads with dropped
    records, ``defaulted`` those of them left with no usable record (compile
    uses the current default schedule for them).
    """

    version: str
    log: object
    stale: set = field(default_factory=set)
    stale_workloads: set = field(default_factory=set)
    defaulted: set = field(default_factory=set)


def classify(log, version: Optional[str] = None) -> Freshness:
    """Split ``log`` (a :class:`.store.DeviceLog`) by ``version`` (default: the current one)."""
    from .store import DeviceLog
    version = version or rules_version()
    with_template: set = set()             # (shash, version) groups holding a template record
    keys: list = []                         # per record: its (shash, version), None unstamped
    for pos, (idx, rec) in enumerate(log.records):
        shash = log.workloads[idx].shash
        st = log.stamp_at(pos)
        if not st or not st.get("rules"):
            keys.append(None)
            continue
        key = (shash, str(st["rules"]))
        keys.append(key)
        if st.get("phase") == TEMPLATE:
            with_template.add(key)
    stale_keys = {k for k in with_template if k[1] != version}
    fresh = Freshness(version, log)
    if not stale_keys:
        return fresh
    kept, kept_stamps = [], []
    for pos, key in enumerate(keys):
        if key in stale_keys:
            fresh.stale.add(pos)
            fresh.stale_workloads.add(key[0])
        else:
            kept.append(log.records[pos])
            kept_stamps.append(log.stamp_at(pos))
    fresh.log = DeviceLog(workloads=log.workloads, records=kept, skipped=log.skipped,
                          stamps=log.stamps, record_stamps=kept_stamps)
    alive = {log.workloads[i].shash for i, _ in kept}
    fresh.defaulted = fresh.stale_workloads - alive
    return fresh
