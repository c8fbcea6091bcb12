"""``nnef-run``: run a library written by nnef-compile, here or on a board over TVM RPC.

    nnef-run model.so --inputs in.npz [--output out.npz] [--device cpu|cuda|vulkan]
             [--rpc HOST:PORT | --tracker HOST:PORT --key KEY]
    nnef-run model.so --info

``--inputs`` is a ``.npz`` whose keys are the model's input names. Without
``--output`` the outputs are summarized on stdout. ``--info`` prints the
embedded metadata and needs no TVM (it reads the library's bytes, so it also
works for a library built for another ISA).
"""
from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

import numpy as np

from ..errors import NNEFError
from .common import ArgumentParser, UsageError, describe_shape, positive_int, run_main

PROG = "nnef-run"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Run a library compiled by nnef-compile.")
    p.add_argument("library", help="the .so written by nnef-compile")
    p.add_argument("--inputs", help=".npz with one array per model input")
    p.add_argument("--output", help=".npz to write the outputs to")
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "vulkan"],
                   help="device to run on (default: the one the library was built for)")
    p.add_argument("--rpc", metavar="HOST:PORT", help="run on an RPC server")
    p.add_argument("--tracker", metavar="HOST:PORT", help="RPC tracker to request a device from")
    p.add_argument("--key", help="device key at the tracker")
    p.add_argument("--threads", type=positive_int, help="CPU threads (local runs)")
    p.add_argument("--info", action="store_true", help="print the embedded metadata and exit")
    p.add_argument("--json", action="store_true", help="with --info: print the raw JSON")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(PROG, _run, build_parser(), argv)


def _run(args) -> int:
    from ..artifact import read_metadata
    meta = read_metadata(args.library)
    if args.info:
        print(json.dumps(meta, indent=2, sort_keys=True) if args.json else info_text(meta))
        return 0
    if args.rpc and args.tracker:
        raise UsageError("give either --rpc or --tracker, not both")
    if args.key and not args.tracker:
        raise UsageError("--key goes with --tracker")
    if args.tracker and not args.key:
        raise UsageError("--tracker needs --key")
    if not args.inputs:
        raise UsageError("the following arguments are required: --inputs")
    inputs = read_inputs(args.inputs)
    from .. import runtime
    session = None
    if args.rpc or args.tracker:
        session = runtime.connect(args.rpc, tracker=args.tracker, key=args.key)
    device = args.device or meta.get("device", "cpu")
    model = runtime.load(args.library, device, session=session, threads=args.threads)
    outputs = model.run(inputs, where=args.inputs)
    if args.output:
        np.savez(args.output, **outputs)
        print(f"wrote {args.output} ({len(outputs)} outputs)")
    else:
        for name, value in outputs.items():
            print(_value_line(name, value))
    return 0


def read_inputs(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise NNEFError("expected a .npz archive of named arrays", file=path)
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise NNEFError("no such file", file=path) from None
    except (OSError, ValueError, EOFError) as e:
        raise NNEFError(f"cannot read inputs: {e}", file=path) from None


def _value_line(name: str, value: np.ndarray) -> str:
    text = f"{name}: {value.dtype}{describe_shape(value.shape)}"
    if value.size and (np.issubdtype(value.dtype, np.number)):
        text += f" min {value.min():.6g} max {value.max():.6g} mean {value.mean():.6g}"
    return text


def info_text(meta: dict) -> str:
    tgt = meta.get("target", {})
    src = meta.get("source") or {}
    lines = [f"model: {meta.get('model')}",
             f"target: {tgt.get('name')} {json.dumps(tgt.get('tvm_target'))}",
             f"device: {meta.get('device')}"]
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        for s in meta.get(kind, []):
            q = f"  quantization {json.dumps(s['quantization'])}" if s.get("quantization") else ""
            lines.append(f"  {s['name']}: {s['dtype']}{describe_shape(s['shape'])}{q}")
    if src.get("sha256"):
        lines.append(f"source: {src.get('path')} sha256 {src['sha256']}")
    vers = meta.get("versions", {})
    lines.append("built with: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items())))
    if meta.get("kernels"):
        lines.append(f"kernels: {len(meta['kernels'])}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
