"""Tuning start-up: only the target's tensor intrinsics, builds that need none.

Importing ``tvm.s_tir.tensor_intrin`` parses the TVMScript of every
backend's intrinsics (CUDA's alone is ~35 s of CPU here); TVM does it in
every ``TuneContext`` and every builder worker. These tests check which
intrinsic modules a target asks for, that the in-process builder compiles a
candidate, and (slow: a fresh interpreter) that a whole TuneContext comes up
without the other backends' intrinsics.
"""
import json
import os
import subprocess
import sys

import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.schedules import tuning  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402


@pytest.mark.parametrize("target, want", [
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu"}, ("x86",)),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}, ("arm_cpu",)),
    ({"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf"}, ("arm_cpu",)),
    ({"kind": "llvm", "mtriple": "riscv64-linux-gnu"}, ("riscv_cpu",)),
    ({"kind": "cuda", "arch": "sm_80"}, ("cuda",)),
    ({"kind": "llvm", "mtriple": "wasm32-unknown-unknown"}, tuning.ALL_INTRIN_MODULES),
])
def test_intrinsic_modules_per_target(target, want):
    assert tuning.intrinsic_modules(tvm.target.Target(target)) == want


def test_project_targets_map_to_their_isa():
    assert tuning.intrinsic_modules(tuning.tuning_target(get_target("x86"))) == ("x86",)
    assert tuning.intrinsic_modules(get_target("rpi4").tvm()) == ("arm_cpu",)


def test_in_process_builder_compiles_a_candidate():
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tuning_template_test import matmul_module  # noqa: I100
    x86 = get_target("x86")
    task, = tuning.extract_tasks(tuning.fused_module(matmul_module(), x86),
                                 tuning.tuning_target(x86))
    sch = s_tir.Schedule(task.extracted.dispatched[0])
    good, = tuning.make_builder(workers=0).build(
        [BuilderInput(sch.mod, tuning.tuning_target(x86))])
    assert good.error_msg is None and os.path.isfile(good.artifact_path)
    # a module that cannot be built gives an error result, not an exception
    bad, = tuning.make_builder(workers=0).build(
        [BuilderInput(sch.mod, tvm.target.Target({"kind": "cuda", "arch": "sm_0"}))])
    assert bad.artifact_path is None and "build failed" in bad.error_msg


def test_record_json_matches_tvms_for_plain_traces():
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tuning_template_test import matmul_module  # noqa: I100
    x86 = get_target("x86")
    task, = tuning.extract_tasks(tuning.fused_module(matmul_module(), x86),
                                 tuning.tuning_target(x86))
    wmod = task.extracted.dispatched[0]
    sch = s_tir.Schedule(wmod)
    loops = sch.get_loops(sch.get_sblock("matmul"))
    sch.parallel(loops[0])
    rec = ms.database.TuningRecord(sch.trace, ms.database.Workload(wmod), [2e-6, 3e-6],
                                   tuning.tuning_target(x86),
                                   ms.arg_info.ArgInfo.from_prim_func(wmod["main"]))
    assert tuning.record_to_json(rec) == tuning._plain(rec.as_json())
    json.dumps(tuning.record_to_json(rec))


STARTUP_PROBE = r"""
import sys, time, json
t0 = time.monotonic()
from tvm.s_tir import meta_schedule as ms
from nnef_tvm.schedules import tuning
from nnef_tvm.targets import get_target
sys.path.insert(0, sys.argv[1])
from tuning_template_test import matmul_module
x86 = get_target("x86")
tt = tuning.tuning_target(x86)
loaded = tuning.load_tensor_intrinsics(tt)
task, = tuning.extract_tasks(tuning.fused_module(matmul_module(), x86), tt)
t1 = time.monotonic()
ctx = ms.TuneContext(mod=task.extracted.dispatched[0], target=tt,
                     space_generator="post-order-apply", search_strategy="replay-trace",
                     task_name="m", num_threads=1)
spaces = ctx.generate_design_space()
print(json.dumps({"loaded": list(loaded), "context_s": time.monotonic() - t1,
                  "spaces": len(spaces),
                  "mods": sorted(m for m in sys.modules if m.startswith("tvm.s_tir.tensor_intrin"))}))
"""


@pytest.mark.slow
def test_tune_context_comes_up_without_other_backends_intrinsics():
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["loaded"] == ["x86"] and info["spaces"] >= 1
    assert "tvm.s_tir.tensor_intrin.x86" in info["mods"]
    for other in ("cuda", "rocm", "hexagon", "arm_cpu"):
        assert f"tvm.s_tir.tensor_intrin.{other}" not in info["mods"]
