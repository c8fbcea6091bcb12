"""Build hand-made Relax modules for each target family and check the artifacts.

Numbers are compared with numpy references written in conftest.py; binaries
are checked by their ELF headers (e_machine) and, for CUDA, by the fatbin
entries nvcc produced.
"""
import os
import platform
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnef_tvm.artifact import MARKER, read_metadata
from nnef_tvm.compiler import compile_relax
from nnef_tvm.errors import NNEFError
from nnef_tvm.runtime import elf_machine
from nnef_tvm.targets import get_target

EM_ARM, EM_X86_64, EM_AARCH64, EM_CUDA = 40, 62, 183, 190
X86 = platform.machine() == "x86_64"


def _needs(tool):
    return pytest.mark.skipif(shutil.which(tool) is None,
                              reason=f"{tool} not installed (apt-get install -y "
                                     f"gcc-{tool[:-4]})")


@pytest.mark.skipif(not X86, reason="x86 host")
def test_x86_build_and_run_matches_numpy(small_module, small_reference):
    cm = compile_relax(small_module, "x86")
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((2, 3)).astype("float32") for _ in range(2))
    out = cm.run({"x": x, "y": y})
    assert list(out) == ["output"]
    np.testing.assert_allclose(out["output"], small_reference(x, y), rtol=1e-6)
    assert [k.name for k in cm.kernels] == ["fused_add_relu_multiply"]
    assert cm.metadata["inputs"] == [
        {"name": "x", "shape": [2, 3], "dtype": "float32", "quantization": None},
        {"name": "y", "shape": [2, 3], "dtype": "float32", "quantization": None}]


@pytest.mark.skipif(not X86, reason="x86 host")
def test_two_outputs_and_constants(two_output):
    mod, reference = two_output
    cm = compile_relax(mod, "x86")
    assert [o["name"] for o in cm.outputs] == ["output0", "output1"]
    x = np.random.default_rng(1).standard_normal((4, 8)).astype("float32")
    out = cm.run({"x": x})
    want_p, want_d = reference(x)
    np.testing.assert_allclose(out["output0"], want_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["output1"], want_d, rtol=1e-6)


@pytest.mark.skipif(not X86, reason="x86 host")
def test_artifact_runs_in_fresh_process_with_tvm_runtime_only(tmp_path, small_module,
                                                              small_reference):
    cm = compile_relax(small_module, "x86", source=None)
    lib = cm.export(str(tmp_path / "m.so"))
    assert sorted(os.listdir(tmp_path)) == ["m.so"]          # no sidecar file
    assert elf_machine(lib) == EM_X86_64
    rng = np.random.default_rng(3)
    x, y = (rng.standard_normal((2, 3)).astype("float32") for _ in range(2))
    np.savez(tmp_path / "in.npz", x=x, y=y)
    script = textwrap.dedent(f"""
        import json, sys, numpy as np
        import tvm.runtime
        from tvm.runtime.vm import VirtualMachine
        lib = tvm.runtime.load_module({lib!r})
        meta = json.loads(lib.get_function("nnef_tvm_metadata", query_imports=True)())
        vm = VirtualMachine(lib, tvm.runtime.cpu())
        d = np.load({str(tmp_path / 'in.npz')!r})
        out = vm["main"](*[tvm.runtime.tensor(d[s["name"]]) for s in meta["inputs"]])
        np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
        print(json.dumps(meta))
        print("nnef_tvm" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta_line, imported = proc.stdout.strip().splitlines()[-2:]
    assert imported == "False"
    import json
    meta = json.loads(meta_line)
    assert meta == cm.metadata == read_metadata(lib)
    assert meta["target"]["name"] == "x86" and meta["versions"]["tvm"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), small_reference(x, y), rtol=1e-6)


def test_metadata_content_and_source_digest(tmp_path, small_module):
    src = tmp_path / "model"
    src.mkdir()
    (src / "graph.nnef").write_text("version 1.0;\n")
    import hashlib
    cm = compile_relax(small_module, "x86", source=str(src))
    meta = cm.metadata
    assert meta["format"] == "nnef-tvm-artifact/1"
    h = hashlib.sha256(b"graph.nnef\0version 1.0;\n\0").hexdigest()
    assert meta["source"] == {"path": "model", "sha256": h}
    assert set(meta["versions"]) >= {"nnef_tvm", "tvm", "tvm_ffi"}


def test_read_metadata_rejects_other_files(tmp_path):
    p = tmp_path / "x.so"
    p.write_bytes(b"\x7fELF" + b"\0" * 100)
    with pytest.raises(NNEFError, match="not an nnef-tvm library"):
        read_metadata(str(p))
    p.write_bytes(MARKER + b"12:{not json}")
    with pytest.raises(NNEFError, match="not JSON"):
        read_metadata(str(p))


@_needs("aarch64-linux-gnu-gcc")
@pytest.mark.parametrize("name", ["arm64", "rpi4"])
def test_arm64_library_is_aarch64_elf(tmp_path, small_module, name):
    cm = compile_relax(small_module, name)
    lib = cm.export(str(tmp_path / f"{name}.so"))
    assert elf_machine(lib) == EM_AARCH64
    with open(lib, "rb") as f:
        assert f.read(5)[4] == 2                                  # ELFCLASS64
    meta = read_metadata(lib)                                     # readable on any host
    assert meta["target"]["name"] == name
    if X86:
        with pytest.raises(NNEFError, match="does not run on this machine"):
            cm.run({"x": np.zeros((2, 3), "float32"), "y": np.zeros((2, 3), "float32")})
        from nnef_tvm.runtime import load
        with pytest.raises(NNEFError, match="built for AArch64"):
            load(lib)


@_needs("arm-linux-gnueabihf-gcc")
def test_armv7_library_is_32bit_arm_elf(tmp_path, small_module):
    lib = compile_relax(small_module, "armv7").export(str(tmp_path / "v7.so"))
    assert elf_machine(lib) == EM_ARM
    with open(lib, "rb") as f:
        assert f.read(5)[4] == 1                                  # ELFCLASS32


def _fatbin_entries(data: bytes):
    """(kind, sm) of every entry of every fatbin in ``data`` (kind 2 = ELF, 1 = PTX)."""
    out = []
    at = data.find(struct.pack("<I", 0xBA55ED50))
    while at >= 0:
        _, _, hsize, fsize = struct.unpack_from("<IHHQ", data, at)
        p, end = at + hsize, at + hsize + fsize
        while p < end:
            kind, _, ehsize, psize = struct.unpack_from("<HHIQ", data, p)
            sm = struct.unpack_from("<I", data, p + 28)[0]
            payload = data[p + ehsize:p + ehsize + psize]
            out.append((kind, sm, payload))
            p += ehsize + psize
        at = data.find(struct.pack("<I", 0xBA55ED50), end)
    return out


@pytest.mark.skipif(get_target("cuda").available() != [], reason="nvcc not installed")
def test_cuda_library_carries_compiled_device_code(tmp_path, small_module):
    cm = compile_relax(small_module, get_target("cuda", arch="sm_86"))
    lib = cm.export(str(tmp_path / "gpu.so"))
    data = open(lib, "rb").read()
    entries = _fatbin_entries(data)
    elves = [(sm, p) for kind, sm, p in entries if kind == 2]
    assert elves, "no cubin in the library"
    for sm, payload in elves:
        assert sm == 86
        assert payload[:4] == b"\x7fELF"
        assert struct.unpack_from("<H", payload, 18)[0] == EM_CUDA
    # the CUDA source is gone: nothing is left to compile at load time
    assert b"__global__" not in data
    meta = read_metadata(lib)
    assert meta["device"] == "cuda" and meta["target"]["tvm_target"]["arch"] == "sm_86"


@pytest.mark.skipif(get_target("cuda").available() != [], reason="nvcc not installed")
def test_cuda_kernels_are_thread_bound(small_module, tmp_path):
    """dlight scheduled every kernel: the dumped IR binds threadIdx/blockIdx."""
    compile_relax(small_module, get_target("cuda", arch="sm_80"), dump_ir=str(tmp_path))
    text = (tmp_path / "03_scheduled.relax.py").read_text()
    assert "threadIdx.x" in text and "blockIdx.x" in text


def test_cuda_packing_rewrites_the_module_blob(tmp_path, small_module):
    """Unit check of the blob rewrite, with a fake compiler (no nvcc needed)."""
    import tvm
    from nnef_tvm.targets import cuda
    from nnef_tvm.targets.library_blob import Blob, split_device_payload
    cm = compile_relax(small_module, get_target("cuda", arch="sm_80"))
    fake = tmp_path / "fake-nvcc"
    fake.write_text("#!/bin/sh\nwhile [ $# -gt 1 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n"
                    "printf FAKEBIN > \"$out\"\n")
    fake.chmod(0o755)
    c_file = cuda.pack_imports_compiled(cm.executable.mod, False, "", str(tmp_path),
                                        arch="sm_80", nvcc=str(fake))
    assert c_file.endswith(".c") and ".incbin" in open(c_file).read()
    blob = Blob.parse((tmp_path / "library_bin.bin").read_bytes())
    kinds = [k for k, _ in blob.modules]
    assert "cuda" in kinds and "relax.VMExecutable" in kinds
    payload = dict(blob.modules)["cuda"]
    fmt, _, code = split_device_payload(payload, [b"FAKEBIN"])
    assert (fmt, code) == ("fatbin", b"FAKEBIN")
    original = tvm.get_global_func("runtime.ModulePackImportsToTensor")(
        cm.executable.mod).numpy().tobytes()
    assert Blob.parse(original).serialize() == original            # lossless round trip


def test_vulkan_fails_clearly_after_the_relax_pipeline(tmp_path, small_module):
    from nnef_tvm.targets import vulkan
    if vulkan.has_vulkan_codegen():
        pytest.skip("this TVM has a Vulkan code generator")
    with pytest.raises(NNEFError) as e:
        compile_relax(small_module, "vulkan", dump_ir=str(tmp_path))
    assert "no Vulkan code generator" in e.value.message
    assert "USE_VULKAN" in e.value.message
    # everything up to codegen ran: fused, GPU-scheduled and lowered
    assert "threadIdx.x" in (tmp_path / "03_scheduled.relax.py").read_text()
    assert (tmp_path / "fusion_report.txt").exists()


def test_dump_ir_and_fusion_report(tmp_path, small_module):
    from nnef_tvm.reader.graph import Operation, Identifier
    from nnef_tvm.errors import SourcePos
    from nnef_tvm.targets.fusion_report import origins_from_graph

    class G:  # the part of a Graph the report reads
        operations = [Operation("add", {"x": Identifier("x"), "y": Identifier("y")},
                                {"z": Identifier("sum")}, pos=SourcePos("g.nnef", 3, 5)),
                      Operation("relu", {"x": Identifier("sum")}, {"y": Identifier("act")},
                                pos=SourcePos("g.nnef", 4, 5)),
                      Operation("mul", {"x": Identifier("act"), "y": Identifier("x")},
                                {"z": Identifier("prod")}, pos=SourcePos("g.nnef", 5, 5))]
    cm = compile_relax(small_module, "x86", dump_ir=str(tmp_path),
                       origins=origins_from_graph(G))
    names = sorted(os.listdir(tmp_path))
    assert names == ["00_input.relax.py", "01_before_fusion.relax.py",
                     "02_after_fusion.relax.py", "03_scheduled.relax.py",
                     "fusion_report.json", "fusion_report.txt"]
    assert "fused_add_relu_multiply" in (tmp_path / "02_after_fusion.relax.py").read_text()
    assert "fused_" not in (tmp_path / "01_before_fusion.relax.py").read_text()
    (k,) = cm.kernels
    assert k.tensors == ["sum", "act", "prod"]          # the group output was recovered
    assert [(o["op"], o["pos"]) for o in k.ops] == [("add", "g.nnef:3:5"),
                                                    ("relu", "g.nnef:4:5"),
                                                    ("mul", "g.nnef:5:5")]
    report = (tmp_path / "fusion_report.txt").read_text()
    assert "fused_add_relu_multiply:" in report and "relu -> act  at g.nnef:4:5" in report


@pytest.mark.skipif(get_target("cuda").available() != [], reason="nvcc not installed")
def test_cuda_build_callback_compiles_with_nvcc_and_is_restored():
    """Where TVM sees a CUDA driver it compiles at build time: our callback makes a fatbin."""
    import tvm
    t = get_target("cuda", arch="sm_80")
    before = tvm.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    src = 'extern "C" __global__ void k(float* a) { a[threadIdx.x] += 1.0f; }\n'
    with t.build_context():
        out = bytes(tvm.get_global_func("tvm_callback_cuda_compile")(src))
    assert out[:4] == struct.pack("<I", 0xBA55ED50)
    assert [(kind, sm) for kind, sm, _ in _fatbin_entries(out) if kind == 2] == [(2, 80)]
    after = tvm.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    if before is not None:
        assert after.__chandle__() == before.__chandle__()
