#!/usr/bin/env python3
"""Benchmark: reading NNEF tensor files with nnef_tvm vs reading the raw bytes with numpy.

Writes ~100 MB of float32 weights as several ``.dat`` files in a model folder
(plus an uncompressed .tar of the same folder), then times, interleaved and
repeated, with the median reported:

* raw:     ``np.fromfile(path, '<f4', offset=128)`` per file, then ``.sum()``
* ours:    ``tensorfile.read_tensor_file(path)`` (memory-mapped), then ``.sum()``
* folder:  ``open_container(folder)`` + ``read_tensor(box.buffer(name))``, then ``.sum()``
* tar:     the same through the memory-mapped .tar container

The ``.sum()`` forces every byte to be read on both sides. Files are in the page
cache for all variants (they were just written and are read in turn), so this
measures the software overhead, not the disk. Target: ours/raw <= 1.5.

    python scripts/bench_tensors.py [--mb 100] [--files 8] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tarfile
import tempfile
import time

import numpy as np

from nnef_tvm.reader import tensorfile
from nnef_tvm.reader.container import open_container
from nnef_tvm.schedules.device_key import cpu_model  # noqa: E402


def make_model(folder: str, total_mb: int, files: int) -> list[str]:
    rng = np.random.default_rng(0)
    per_file = total_mb * (1 << 20) // 4 // files
    names = []
    with open(os.path.join(folder, "graph.nnef"), "w") as f:
        f.write("version 1.0;\n")          # content irrelevant here: only tensors are read
    for i in range(files):
        name = f"layer{i}/weights.dat"
        os.makedirs(os.path.join(folder, f"layer{i}"), exist_ok=True)
        tensorfile.write_tensor(os.path.join(folder, name),
                                rng.standard_normal((per_file // 256, 256), dtype=np.float32))
        names.append(name)
    return names


def run_raw(folder, names):
    return sum(float(np.fromfile(os.path.join(folder, n), "<f4", offset=128).sum()) for n in names)


def run_ours(folder, names):
    return sum(float(tensorfile.read_tensor_file(os.path.join(folder, n))[0].sum()) for n in names)


def run_container(path, names):
    with open_container(path) as box:
        return sum(float(tensorfile.read_tensor(box.buffer(n), n)[0].sum()) for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100, help="total size of the weights in MB")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="nnef_bench_") as tmp:
        folder = os.path.join(tmp, "model")
        os.makedirs(folder)
        names = make_model(folder, args.mb, args.files)
        tar_path = os.path.join(tmp, "model.tar")
        with tarfile.open(tar_path, "w") as tar:
            for n in ["graph.nnef"] + names:
                tar.add(os.path.join(folder, n), n)
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
        print(f"data: {len(names)} files, {size / 1e6:.1f} MB float32")

        variants = {
            "raw np.fromfile": lambda: run_raw(folder, names),
            "read_tensor_file": lambda: run_ours(folder, names),
            "folder container": lambda: run_container(folder, names),
            "tar container": lambda: run_container(tar_path, names),
        }
        expect = run_raw(folder, names)          # warm-up, and the reference checksum
        for fn in variants.values():
            assert abs(fn() - expect) <= 1e-6 * max(1.0, abs(expect)), "variants disagree"
        times = {k: [] for k in variants}
        for _ in range(args.repeats):           # interleaved
            for k, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)

    base = statistics.median(times["raw np.fromfile"])
    print(f"{'variant':<18} {'median ms':>10} {'MB/s':>8} {'ratio':>6}")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"{k:<18} {m * 1e3:10.1f} {size / 1e6 / m:8.0f} {m / base:6.2f}")
    ratio = statistics.median(times["read_tensor_file"]) / base
    print(f"ours/raw = {ratio:.2f} (target <= 1.5): {'OK' if ratio <= 1.5 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
