"""``nnef-tune``: tune a model's fused kernels for a device and keep the records.

    nnef-tune MODEL --target T [--trials N] [--time-budget SECONDS]
              [--strategy both|template|evolutionary|replay]
              [--device-key KEY] [--tuning-dir DIR] [--tracker HOST:PORT --key KEY]
    nnef-tune --export FILE [--target T | --device-key KEY] [--tuning-dir DIR]
    nnef-tune --import FILE [--device-key KEY] [--tuning-dir DIR]
    nnef-tune --list [--tuning-dir DIR]

Records go to the tuning store (``$NNEF_TVM_TUNING_DIR``, else
``$XDG_CACHE_HOME/nnef-tvm/tuning``), one folder per device key; ``nnef-compile``
picks them up automatically for the same device. Re-running resumes: kernels
that already have N trials are skipped, and knob settings already measured are
not measured again. Records are stamped with the version of the default
schedule rules; when the rules change, a kernel's records from the older rules
are ignored (by compile too) and re-running measures the new default again.

Strategies (``--strategy``): ``template`` times our own CPU schedule rules
under each of their knob settings (tile sizes, vector widths, ...) -- few,
strong candidates; ``evolutionary`` is MetaSchedule's generic search;
``both`` (default) runs the template search first and gives the evolutionary
search the remaining trials and time, seeded by the stored records.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..errors import NNEFError
from .common import ArgumentParser, UsageError, parse_shape, positive_int, run_main

PROG = "nnef-tune"

EPILOG = """\
store:
  records live in DIR/<device key>/ (DIR: --tuning-dir, $NNEF_TVM_TUNING_DIR, or
  $XDG_CACHE_HOME/nnef-tvm/tuning). The device key is derived from the target
  kind and the CPU model (or GPU name + arch); --device-key overrides it.
  --export FILE writes one device's records as one file (.json, or .tar.gz/.tgz)
  to copy to another machine; --import FILE merges such a file into the store.

strategies:
  template      our CPU rules under every knob setting (the untuned schedule is
                one of them, so the tuned build is never slower than untuned)
  evolutionary  MetaSchedule's evolutionary search (generic schedule space)
  replay        MetaSchedule's random replay of its design space
  both          template, then evolutionary with the remaining trials/time
  --trials counts every measured trial of a kernel, stored ones included.
  Records are ranked by the minimum of their repeated timings. Records made
  against an older version of the default schedules are ignored (compile uses
  the current default for those kernels); re-running nnef-tune re-measures.

examples:
  nnef-tune model/ --target x86 --trials 200 --time-budget 1800
  nnef-tune model/ --strategy template --trials 32
  nnef-tune model/ --target rpi4 --tracker 10.0.0.2:9190 --key rpi4
  nnef-tune --export xeon.tgz --target x86
  nnef-tune --import xeon.tgz
"""


def _seconds(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def build_parser() -> ArgumentParser:
    import argparse
    p = ArgumentParser(prog=PROG, description="Tune an NNEF model's kernels with TVM "
                       "MetaSchedule and store the records per device.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="model: folder, .tgz/.tar/.zip, or graph.nnef")
    p.add_argument("--target", "-t", default="x86",
                   help="target name (see nnef-compile --list-targets) or TVM target JSON")
    p.add_argument("--trials", type=positive_int, default=64,
                   help="measured trials per kernel (default 64)")
    p.add_argument("--time-budget", type=_seconds, metavar="SECONDS",
                   help="stop measuring after this wall time (counted from the start; "
                   "the batch in flight finishes)")
    p.add_argument("--strategy", choices=("both", "template", "evolutionary", "replay"),
                   default="both", help="search strategy (default both: template search, "
                   "then the evolutionary search with what is left)")
    p.add_argument("--builder-workers", type=int, metavar="N",
                   help="candidate build processes (0: build in this process; default 0 for "
                   "the template search, 1 for MetaSchedule's search)")
    p.add_argument("--device-key", help="store folder name (default: derived from the device)")
    p.add_argument("--tuning-dir", metavar="DIR", help="tuning store root")
    p.add_argument("--tracker", metavar="HOST:PORT", help="measure on a device via an RPC tracker")
    p.add_argument("--key", help="RPC key of the device at the tracker (with --tracker)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="fix the shape of an external input (repeatable)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (CPU targets)")
    p.add_argument("--arch", help="GPU architecture, e.g. sm_80 (cuda)")
    p.add_argument("--builder-timeout", type=_seconds, default=120.0, metavar="SECONDS",
                   help="per-candidate build timeout (default 120)")
    p.add_argument("--seed", type=int, help="random seed of the search")
    p.add_argument("--no-in-model-check", action="store_true",
                   help="apply the fastest standalone record of every kernel; by default, "
                        "after the search, each kernel's few fastest records are timed inside "
                        "the model against its default schedule, and the kernel keeps the one "
                        "fastest there (or the default)")
    p.add_argument("--export", metavar="FILE", help="write the device's records to FILE")
    p.add_argument("--import", dest="import_", metavar="FILE", help="merge FILE into the store")
    p.add_argument("--list", action="store_true", help="list the store's devices and counts")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(PROG, _run, build_parser(), argv)


def _store(args):
    from ..schedules.store import TuningStore
    return TuningStore(args.tuning_dir)


def _run(args) -> int:
    modes = [m for m in ("export", "import_", "list") if getattr(args, m)]
    if len(modes) > 1:
        raise UsageError("--export, --import and --list are exclusive")
    if modes and args.model:
        raise UsageError(f"--{modes[0].rstrip('_')} takes no MODEL")
    if args.builder_workers is not None and args.builder_workers < 0:
        raise UsageError(f"--builder-workers must be >= 0, got {args.builder_workers}")
    if (args.tracker is None) != (args.key is None):
        raise UsageError("--tracker and --key go together")
    if args.tracker is not None:
        from ..schedules.tuning import parse_tracker
        try:
            parse_tracker(args.tracker)
        except NNEFError as e:
            raise UsageError(e.message) from None
    if args.list:
        return _list(args)
    if args.import_:
        return _import(args)
    if args.export:
        return _export(args)
    if not args.model:
        raise UsageError("the following arguments are required: MODEL "
                         "(or --export/--import/--list)")
    return _tune(args)


def _target(args):
    from ..targets import get_target
    return get_target(args.target, threads=args.threads, arch=args.arch)


def _key(args) -> str:
    from ..schedules.device_key import device_key
    if args.device_key:
        return device_key(None, override=args.device_key)
    return device_key(_target(args))


def _list(args) -> int:
    store = _store(args)
    devices = store.devices()
    if not devices:
        print(f"no tuning records in {store.root}")
        return 0
    print(f"tuning store {store.root}:")
    from ..schedules.rules_version import classify
    for key in devices:
        log = store.read(key)
        fresh = classify(log)
        stale = ""
        if fresh.stale:
            stale = (f" ({len(fresh.stale)} trials of {len(fresh.stale_workloads)} workloads "
                     "predate the current default schedules: ignored"
                     + (f"; {len(fresh.defaulted)} workloads need re-tuning"
                        if fresh.defaulted else "") + ")")
        bare = sum(1 for i in range(len(log.records)) if log.stamp_at(i) is None)
        if bare:
            stale += (f" ({bare} trials unstamped: from before rules versioning or other "
                      "tools, applied as before)")
        print(f"  {key}: {len(log.by_hash())} workloads, {len(log.records)} trials{stale}")
    return 0


def _export(args) -> int:
    store = _store(args)
    key = _key(args)
    n = store.export(key, args.export)
    print(f"wrote {args.export}: {n} trials of device {key}")
    return 0


def _import(args) -> int:
    store = _store(args)
    added = store.import_(args.import_, device_key=args.device_key)
    for key, n in added.items():
        print(f"imported {n} new trials for device {key} into {store.folder(key)}")
    return 0


def _tune(args) -> int:
    from ..schedules.tuning import stderr_progress, tune_model
    shapes = dict(parse_shape(s) for s in args.shape)
    target = _target(args)
    if args.tracker is None and not target.runs_locally:
        raise NNEFError(f"target '{target.name}' does not run on this machine: measure it on "
                        "the device with --tracker HOST:PORT --key KEY")
    missing = target.available()
    if missing:
        raise NNEFError(f"target '{target.name}' cannot be built here: " + "; ".join(missing))
    progress = None if args.quiet else stderr_progress(PROG)
    summary = tune_model(args.model, target, trials=args.trials, time_budget=args.time_budget,
                         store=_store(args), device_key_override=args.device_key,
                         tracker=args.tracker, rpc_key=args.key,
                         input_shapes=shapes or None, progress=progress,
                         builder_timeout=args.builder_timeout, seed=args.seed,
                         strategy=args.strategy, builder_workers=args.builder_workers,
                         in_model_check=not args.no_in_model_check)
    print(summary.text())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
