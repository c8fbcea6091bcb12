"""Metadata embedded in the one shared library we deploy.

The library must describe itself -- input/output names, shapes, dtypes,
quantization, target, the sha256 of the source model, nnef-tvm and TVM
versions -- without a sidecar file. We link one extra C object into the .so
that holds the metadata JSON twice over:

1. a TVM FFI packed function ``nnef_tvm_metadata`` returning the JSON as a
   string, so plain ``tvm.runtime.load_module(path).get_function(
   "nnef_tvm_metadata", query_imports=True)()`` works anywhere the library
   loads (locally or on an RPC server; the root module is the VM executable,
   the function lives in the imported shared-library module);
2. the same bytes behind a fixed marker (``NNEF_TVM_METADATA:<len>:``), so
   :func:`read_metadata` can read it by scanning the file: this works for a
   library built for another ISA (an AArch64 .so on an x86 laptop) or for a
   device runtime missing here (a CUDA .so on a machine without a GPU).
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from typing import Any, Optional

from .errors import NNEFError

MARKER = b"NNEF_TVM_METADATA:"
FORMAT = "nnef-tvm-artifact/1"
FUNCTION_NAME = "nnef_tvm_metadata"


# ----------------------------------------------------------------- writing
def versions() -> dict[str, str]:
    from . import __version__
    out = {"nnef_tvm": __version__}
    try:
        import tvm
        out["tvm"] = tvm.__version__
    except ImportError:  # pragma: no cover - TVM is a dependency
        pass
    try:
        import tvm_ffi
        out["tvm_ffi"] = tvm_ffi.__version__
    except (ImportError, AttributeError):
        pass
    return out


def source_digest(path: str) -> Optional[str]:
    """sha256 of the model source: the file, or every file of a folder (name + bytes)."""
    if path is None or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                h.update(rel.encode() + b"\0")
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                h.update(b"\0")
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def metadata_c_source(metadata: dict[str, Any]) -> str:
    """C source of the metadata object (marker + JSON, and the packed function)."""
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
    head = MARKER + f"{len(text)}:".encode()
    blob = head + text + b"\0"
    rows = []
    for i in range(0, len(blob), 24):
        rows.append("  " + ",".join(str(b) for b in blob[i:i + 24]) + ",")
    body = "\n".join(rows)
    return f"""/* nnef-tvm artifact metadata ({FORMAT}); generated, do not edit. */
#include <tvm/ffi/c_api.h>

__attribute__((used)) static const char nnef_tvm_metadata_blob[{len(blob)}] = {{
{body}
}};

/* TVM FFI packed function: () -> str (the metadata JSON). The link step may
   compile this file as C++: keep the symbol unmangled. */
#ifdef __cplusplus
extern "C"
#endif
TVM_FFI_DLL_EXPORT int __tvm_ffi_{FUNCTION_NAME}(void* self, const TVMFFIAny* args,
                                              int32_t num_args, TVMFFIAny* result) {{
  TVMFFIByteArray text;
  (void)self; (void)args; (void)num_args;
  text.data = nnef_tvm_metadata_blob + {len(head)};
  text.size = {len(text)};
  return TVMFFIStringFromByteArray(&text, result);
}}
"""


def write_metadata_source(metadata: dict, directory: str) -> str:
    path = os.path.join(directory, "nnef_tvm_metadata.c")
    with open(path, "w") as f:
        f.write(metadata_c_source(metadata))
    return path


def include_options() -> list[str]:
    """Compiler flags that make ``tvm/ffi/c_api.h`` visible (any target: the header is portable)."""
    import tvm_ffi.libinfo as ffi_info
    return ["-I" + ffi_info.find_include_path(), "-I" + ffi_info.find_dlpack_include_path()]


# ----------------------------------------------------------------- reading
def read_metadata(path: str) -> dict[str, Any]:
    """The metadata of a library, by scanning its bytes (no TVM, any ISA)."""
    try:
        with open(path, "rb") as f:
            try:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file
                data = b""
            try:
                at = data.find(MARKER)
                if at < 0:
                    raise NNEFError("not an nnef-tvm library (no embedded metadata found)",
                                    file=path)
                start = at + len(MARKER)
                colon = data.find(b":", start, start + 24)
                if colon < 0:
                    raise NNEFError("corrupt nnef-tvm metadata header", file=path, offset=at)
                size = int(data[start:colon])
                text = bytes(data[colon + 1:colon + 1 + size])
            finally:
                if isinstance(data, mmap.mmap):
                    data.close()
    except OSError as e:
        raise NNEFError(f"cannot read library: {e.strerror}", file=path) from None
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise NNEFError("corrupt nnef-tvm metadata (not JSON)", file=path, offset=at) from None


def metadata_from_module(lib) -> dict[str, Any]:
    """The metadata through the packed function of a loaded (possibly remote) module."""
    fn = lib.get_function(FUNCTION_NAME, query_imports=True)
    return json.loads(str(fn()))
