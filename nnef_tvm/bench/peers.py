"""The runtimes a user would pick instead of nnef-tvm, run on the same inputs.

* ``onnxruntime`` -- runs an ONNX model: the source ``.onnx`` next to the NNEF
  folder when there is one (the zoo layout ``<name>/source.onnx`` +
  ``<name>/nnef/``), otherwise an export of the NNEF model made by NNEF-Tools
  (``python -m nnef_tools.convert ... --output-format onnx`` in a subprocess).
  The row's ``source`` says which one was used.
* ``tract`` -- Sonos' tract loads the NNEF folder directly (PyPI ``tract``).
* ``nnef-interpreter`` -- NNEF-Tools' PyTorch interpreter on the NNEF folder
  (needs torch; CPU).

Each comparison runtime is optional: :meth:`Peer.missing` says why one cannot
run (a module that is not installed, no ONNX model), and the benchmark records
that as a note instead of failing. Heavy imports happen only inside
:meth:`Peer.load`, which runs in a worker process (see :mod:`.worker`); the
NNEF-Tools packages are loaded dynamically there and are never on the compile
path of nnef-tvm.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from typing import Callable, Optional

import numpy as np

RunFn = Callable[[list], list]


class PeerUnavailable(Exception):
    """This comparison runtime cannot run this model here (the message says why)."""


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def source_model(model_dir: str, ext: str) -> Optional[str]:
    """The zoo's source model beside an NNEF folder (``<dir>/../source<ext>``), if any."""
    parent = os.path.dirname(os.path.abspath(os.path.normpath(model_dir)))
    cand = os.path.join(parent, "source" + ext)
    return cand if os.path.isdir(model_dir) and os.path.isfile(cand) else None


class Peer:
    """One comparison runtime. Subclasses set ``name``, ``modules`` and ``install``."""

    name = "?"
    modules: tuple[str, ...] = ()
    install = ""
    threads_note = ""

    def missing(self) -> Optional[str]:
        """Why this runtime cannot run here (None: it can try)."""
        absent = [m for m in self.modules if not _have(m)]
        if absent:
            return f"not installed ({', '.join(absent)}; install: {self.install})"
        return None

    def prepare(self, model_dir: str, work: str, *, onnx_from: str = "auto") -> dict:
        """Parent-side preparation -> job fields for the worker (may raise PeerUnavailable)."""
        return {"model": os.path.abspath(model_dir), "source": "NNEF folder"}

    def load(self, job: dict, threads: Optional[int]) -> RunFn:
        """Worker side: load the model -> ``run(inputs in graph order) -> outputs``."""
        raise NotImplementedError


class OnnxRuntimePeer(Peer):
    name = "onnxruntime"
    modules = ("onnxruntime",)
    install = "pip install onnxruntime"
    threads_note = "intra_op_num_threads = threads, inter_op_num_threads = 1, sequential"

    def prepare(self, model_dir, work, *, onnx_from="auto"):
        src = source_model(model_dir, ".onnx") if onnx_from in ("auto", "source") else None
        if src is not None:
            return {"onnx": src, "source": f"source model {_short(src)}"}
        if onnx_from == "source":
            raise PeerUnavailable("no source.onnx beside the NNEF folder")
        out = os.path.join(work, "nnef_tools_export.onnx")
        return {"onnx": export_onnx(model_dir, out),
                "source": "ONNX export of the NNEF model by NNEF-Tools"}

    def load(self, job, threads):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(job["onnx"], opts, providers=["CPUExecutionProvider"])
        in_names = [i.name for i in sess.get_inputs()]
        want = job["input_order"]
        if len(in_names) != len(want):
            raise PeerUnavailable(f"the ONNX model takes {len(in_names)} inputs, the NNEF "
                                  f"graph {len(want)}")
        # the same names when the converter kept them; otherwise graph order
        order = want if sorted(in_names) == sorted(want) else None

        def run(values):
            if order is not None:
                feed = dict(zip(want, values))
            else:
                feed = dict(zip(in_names, values))
            return sess.run(None, feed)
        out_names = [o.name for o in sess.get_outputs()]
        if sorted(out_names) == sorted(job["output_order"]) and out_names != job["output_order"]:
            idx = [out_names.index(n) for n in job["output_order"]]
            return lambda values: [run(values)[i] for i in idx]
        return run


class TractPeer(Peer):
    name = "tract"
    modules = ("tract",)
    install = "pip install tract"
    threads_note = "tract's default (single-threaded)"

    def load(self, job, threads):
        import tract
        model = tract.nnef().load(job["model"])
        runnable = model.into_runnable()

        def run(values):
            return [t.to_numpy() for t in runnable.run([np.ascontiguousarray(v)
                                                         for v in values])]
        return run


class NNEFInterpreterPeer(Peer):
    name = "nnef-interpreter"
    modules = ("torch", "nnef_tools", "nnef")
    install = "pip install nnef-tools nnef torch"
    threads_note = "torch.set_num_threads(threads)"

    def load(self, job, threads):
        import torch
        if threads:
            torch.set_num_threads(int(threads))
        module = importlib.import_module("nnef_tools.interpreter.pytorch")
        interp = module.Interpreter(job["model"], device="cpu")
        outs = job["output_order"]

        def run(values):
            result = interp(list(values))
            return [result[n] for n in outs]
        return run


PEERS: dict[str, Peer] = {p.name: p for p in (OnnxRuntimePeer(), TractPeer(),
                                              NNEFInterpreterPeer())}


def get_peer(name: str) -> Peer:
    if name not in PEERS:
        raise KeyError(name)
    return PEERS[name]


def register_peer(peer: Peer) -> None:
    """Add (or replace) a comparison runtime; tests use it to stand in missing ones."""
    PEERS[peer.name] = peer


def export_onnx(model_dir: str, out: str, timeout: float = 600) -> str:
    """ONNX export of an NNEF model by NNEF-Tools (a subprocess) -> ``out``."""
    if not _have("nnef_tools"):
        raise PeerUnavailable("no ONNX model: NNEF-Tools is not installed to export one "
                              "(pip install nnef-tools)")
    cmd = [sys.executable, "-m", "nnef_tools.convert", "--input-format", "nnef",
           "--output-format", "onnx", "--input-model", os.path.abspath(model_dir),
           "--output-model", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"NNEF-Tools ONNX export timed out after {timeout:.0f}s") from None
    if proc.returncode != 0 or not os.path.isfile(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"NNEF-Tools could not export ONNX: {tail[0][:200]}")
    return out


def _short(path: str) -> str:
    parts = os.path.abspath(path).split(os.sep)
    return os.sep.join(parts[-2:])
