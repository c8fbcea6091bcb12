#!/usr/bin/env python3
"""An emulated 64-bit ARM "board" on an x86_64 machine, serving TVM RPC on loopback.

Why: ``nnef-compile --target arm64`` cross-compiles a library that this machine
cannot load. To prove the library really runs on an AArch64 Linux board (and
computes what the x86 build computes) without owning one, we run an aarch64
Python with the aarch64 ``apache-tvm`` wheel under user-mode QEMU and let
``nnef-run --rpc`` drive it exactly as it would drive a real board.

The board is made of ordinary, published parts, fetched with their ordinary
clients and cached under ``--root`` (default ``~/.cache/nnef-tvm/arm64-board``,
or ``$NNEF_TVM_BOARD_ROOT``):

* ``sysroot/``: Debian bookworm arm64 packages (python3.11 and the C/C++
  libraries it and TVM load), downloaded by ``apt-get download`` through a
  *private* apt configuration (``apt/``, removed afterwards), unpacked with
  ``dpkg-deb -x``.
  Nothing is installed on, or configured in, the host (no root needed).
* ``site/``: aarch64 wheels (apache-tvm, apache-tvm-ffi, numpy, ml_dtypes,
  typing_extensions) installed by the host's pip with ``--platform``.
* ``qemu/``: ``qemu-aarch64-static`` from the amd64 ``qemu-user-static``
  package, only when neither ``qemu-aarch64-static`` nor ``qemu-aarch64`` is on
  ``$PATH``.
* ``cross/``: Debian's aarch64 cross gcc (what ``nnef-compile --target arm64``
  links with), only when ``aarch64-linux-gnu-gcc`` is not on ``$PATH``; put
  the folder ``toolchain`` prints first on ``$PATH`` to use it.

Commands::

    emulated_board.py setup [--root DIR] [--mirror URL]   # idempotent, cached
    emulated_board.py start [--root DIR] [--port P] [--owner-pid PID]
                                                          # prints the port once it accepts
    emulated_board.py stop  [--root DIR] [--port P]       # that instance, or all of the root
    emulated_board.py status [--root DIR]
    emulated_board.py python [--root DIR] -- ARGS...      # the emulated python, for debugging
    emulated_board.py toolchain [--root DIR]              # folder of aarch64-linux-gnu-gcc

The server runs *in process* in the emulated Python (TVM's ``rpc_server``
launcher re-executes Python through a popen worker, which fails under
``qemu -L`` without binfmt_misc); each RPC session is still served by a forked
child as on a real board. It binds to 127.0.0.1 only: a TVM RPC server executes
whatever it is sent.

Exit codes: 0 ok, 1 failure, 3 this machine cannot host the board (no apt /
dpkg-deb, no network to the Debian mirror or PyPI, not an x86_64 Linux host):
tests skip on 3 and fail on 1.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Optional

# ------------------------------------------------------------------ configuration
SUITE = "bookworm"                         # Debian 12: python3.11, as the cp311 wheels
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PY = "python3.11"
# What the emulated interpreter needs; apt-cache resolves the rest of the closure.
ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
# Packaging/maintainer tools the closure drags in that nothing loads at run time.
PRUNED = {"dpkg", "install-info", "tar", "debconf", "debconf-2.0", "cdebconf", "mailcap",
          "mime-support", "readline-common", "tzdata", "libtirpc-common", "gcc-12-base",
          "sensible-utils", "base-files"}
PRUNED_PREFIXES = ("perl", "libperl")
# Exact versions: the board is reproducible and its cache key changes with them.
# (apache-tvm-ffi 0.1.14.post1 as on the host; see pyproject.toml for why.)
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy==2.4.6",
          "ml_dtypes==0.6.0", "typing_extensions==4.16.0")
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
                   "manylinux_2_17_aarch64", "manylinux2014_aarch64")
CONFIG_VERSION = 1                         # bump when the recipe changes
DEFAULT_PORT = 9190
START_TIMEOUT = 600.0                      # importing TVM under QEMU takes ~0.5-1 min

EXIT_UNAVAILABLE = 3


class Unavailable(Exception):
    """This machine cannot host the board (tests skip with this message)."""


class SetupError(Exception):
    """Setting the board up failed for a reason that is not the machine's."""


def default_root() -> Path:
    env = os.environ.get("NNEF_TVM_BOARD_ROOT")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/nnef-tvm/arm64-board").expanduser()


_T0 = time.time()


def log(msg: str) -> None:
    print(f"[board {time.time() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- the recipe key
def recipe_key(mirror: str) -> str:
    """Hash of everything that decides the board's content (the cache key)."""
    text = json.dumps([CONFIG_VERSION, SUITE, mirror, ROOT_PACKAGES, sorted(PRUNED),
                       PRUNED_PREFIXES, WHEELS, WHEEL_PLATFORMS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Layout:
    """Paths under the board root."""

    def __init__(self, root: Path):
        self.root = root
        self.debs = root / "debs"
        self.sysroot = root / "sysroot"
        self.site = root / "site"
        self.qemu_dir = root / "qemu"
        self.stamp = root / "setup.json"
        self.server = root / "rpc_board_server.py"
        self.lock = root / "setup.lock"
        self.work = root / "work"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / PY


# ------------------------------------------------------------------ host checks
def host_checks() -> None:
    if sys.platform != "linux":
        raise Unavailable(f"the emulated board needs a Linux host (this is {sys.platform})")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise Unavailable(f"the emulated board is for x86_64 hosts (this is {machine}); "
                          "on an aarch64 machine run the RPC server natively")
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"'{tool}' not found: the board's sysroot is built from Debian "
                              "packages with apt and dpkg-deb")
    if not os.path.isfile(KEYRING):
        raise Unavailable(f"{KEYRING} missing (install the debian-archive-keyring package) "
                          "to verify Debian's package lists")


def probe(url: str) -> None:
    """Raise Unavailable when the host of ``url`` cannot be reached.

    Skipped behind an HTTP proxy (apt and pip then go through it, not directly).
    """
    if any(os.environ.get(v) for v in ("http_proxy", "HTTP_PROXY", "https_proxy",
                                       "HTTPS_PROXY")):
        return
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=15).close()
    except OSError as e:
        raise Unavailable(f"cannot reach {parts.hostname}:{port} ({e}); the board's setup "
                          "downloads Debian packages and PyPI wheels") from None


def find_qemu(layout: Layout) -> Optional[str]:
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        found = shutil.which(name)
        if found:
            return found
    local = layout.qemu_dir / "usr" / "bin" / "qemu-aarch64-static"
    return str(local) if local.is_file() else None


# ------------------------------------------------------------------ apt, privately
class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache under ``apt/``.

    ``APT::Architecture=arm64`` makes unqualified names mean arm64 packages; the
    empty dpkg status file means nothing counts as installed, so dependency
    resolution sees the full closure. The host's apt configuration is never read
    or written (``Dir::Etc::*`` point here), so no root is needed.
    """

    def __init__(self, layout: Layout, mirror: str, extra_archs: tuple[str, ...] = (),
                 folder: str = "apt"):
        self.dir = layout.root / folder
        self.mirror = mirror
        self.archs = ("arm64",) + tuple(extra_archs)

    def options(self) -> list[str]:
        d = self.dir
        opts = {
            "Dir::Etc::SourceList": d / "sources.list",
            "Dir::Etc::SourceParts": d / "sources.list.d",
            "Dir::Etc::Preferences": d / "preferences",
            "Dir::Etc::PreferencesParts": d / "preferences.d",
            "Dir::Etc::Parts": d / "apt.conf.d",
            "Dir::Etc::Trusted": d / "trusted.gpg",
            "Dir::Etc::TrustedParts": d / "trusted.gpg.d",
            "Dir::State": d / "state",
            "Dir::State::status": d / "state" / "status",
            "Dir::Cache": d / "cache",
            "APT::Architecture": "arm64",
            "APT::Architectures": ",".join(self.archs),
            "Debug::NoLocking": "1",
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
            "Acquire::Retries": "3",
        }
        out = []
        for k, v in opts.items():
            if v == "":
                continue
            out += ["-o", f"{k}={v}"]
        return out

    def prepare(self) -> None:
        d = self.dir
        for sub in ("sources.list.d", "preferences.d", "apt.conf.d", "trusted.gpg.d",
                    "state/lists/partial", "cache/archives/partial"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "state" / "status").touch()
        (d / "preferences").touch()
        archs = ",".join(self.archs)
        (d / "sources.list").write_text(
            f"deb [arch={archs} signed-by={KEYRING}] {self.mirror} {SUITE} main\n")

    def run(self, tool: str, *args: str, cwd: Optional[Path] = None,
            capture: bool = False) -> str:
        cmd = [tool, *self.options(), *args]
        res = subprocess.run(cmd, cwd=cwd, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise SetupError(f"{tool} {' '.join(args[:3])} failed:\n{res.stdout[-3000:]}")
        return res.stdout if capture else ""

    def discard(self) -> None:
        """Drop the private lists and cache (only setup needs them; ~20-40 MB)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def update(self) -> None:
        self.prepare()
        log(f"apt-get update (private lists: {SUITE} {', '.join(self.archs)} from {self.mirror})")
        self.run("apt-get", "-q", "update")

    def closure(self, roots) -> list[str]:
        """Runtime dependency closure of ``roots`` (Depends + PreDepends), pruned."""
        text = self.run("apt-cache", "depends", "--recurse", "--no-recommends",
                        "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                        "--no-enhances", *roots, capture=True)
        graph = parse_depends(text)
        return resolve_closure(graph, roots)


def parse_depends(text: str) -> dict[str, list[list[str]]]:
    """``apt-cache depends`` output -> {package: [alternative group, ...]}.

    Format: a package name at column 0, then ``  Depends: x`` lines; a line
    ``" |Depends: a"`` starts/continues an or-group closed by the next plain line;
    ``<virtual>`` names are followed by their providers indented by 4 spaces.
    Virtual names are replaced by their first provider.
    """
    graph: dict[str, list[list[str]]] = {}
    current: Optional[list[list[str]]] = None
    open_group = False
    last_group: Optional[list[str]] = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            name = line.strip()
            current = graph.setdefault(name, [])
            open_group = False
            continue
        if current is None:
            continue
        stripped = line.strip()
        if line.startswith("    ") and last_group is not None:
            # provider of a virtual package in the last group
            last_group.append(stripped)
            continue
        alt = line.startswith(" |")
        kind, _, dep = stripped.lstrip("|").partition(":")
        if kind not in ("Depends", "PreDepends"):
            open_group = alt
            last_group = None
            continue
        dep = dep.strip()
        if open_group:
            last_group = current[-1]
        else:
            last_group = []
            current.append(last_group)
        last_group.append(dep)
        open_group = alt
    return graph


def _pruned(name: str) -> bool:
    return name in PRUNED or name.startswith(PRUNED_PREFIXES)


def resolve_closure(graph: dict[str, list[list[str]]], roots) -> list[str]:
    """Breadth-first closure: each or-group contributes its first usable package."""
    seen: list[str] = []
    queue = list(roots)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for group in graph.get(name, []):
            real = [d for d in group if not d.startswith("<")]
            choice = next((d for d in real if not _pruned(d)), None)
            if choice is None:
                continue          # only pruned tools (or unresolvable virtuals) satisfy it
            if choice not in seen:
                queue.append(choice)
    return sorted(seen)


# ------------------------------------------------------------------ setup stages
def extract_deb(deb: Path, dest: Path) -> None:
    res = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SetupError(f"dpkg-deb -x {deb.name} failed: {res.stdout[-1000:]}")


def download_debs(apt: PrivateApt, names, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    log(f"apt-get download {len(names)} packages")
    for old in dest.glob("*.deb"):
        old.unlink()
    apt.run("apt-get", "-q", "download", *names, cwd=dest)
    debs = sorted(dest.glob("*.deb"))
    if len(debs) < len(names):
        raise SetupError(f"downloaded {len(debs)} .deb files for {len(names)} packages")
    return debs


def build_sysroot(layout: Layout, apt: PrivateApt) -> list[str]:
    names = apt.closure(ROOT_PACKAGES)
    log("packages: " + " ".join(names))
    debs = download_debs(apt, names, layout.debs)
    tmp = layout.root / "sysroot.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for deb in debs:
        extract_deb(deb, tmp)
    shutil.rmtree(layout.debs, ignore_errors=True)
    apt.discard()
    if not (tmp / "usr" / "bin" / PY).is_file():
        raise SetupError(f"{PY} missing from the unpacked packages")
    shutil.rmtree(layout.sysroot, ignore_errors=True)
    tmp.rename(layout.sysroot)
    return names


# The AArch64 cross compiler nnef-compile links arm64 libraries with. Debian's
# cross gcc is relocatable (it finds cc1, as, ld, crt files and the arm64 libc
# relative to its own path), so it runs from the unpacked packages. Its cc1
# needs the host's libisl/libmpc/libmpfr/libgmp, present wherever gcc is.
CROSS_GCC = "aarch64-linux-gnu-gcc"
CROSS_PACKAGES = ("gcc-12-aarch64-linux-gnu:amd64", "cpp-12-aarch64-linux-gnu:amd64",
                  "gcc-12-aarch64-linux-gnu-base:amd64", "binutils-aarch64-linux-gnu:amd64",
                  "libgcc-12-dev-arm64-cross", "libc6-dev-arm64-cross", "libc6-arm64-cross",
                  "linux-libc-dev-arm64-cross", "libgcc-s1-arm64-cross")


def cross_bin(layout: Layout) -> Path:
    return layout.root / "cross" / "usr" / "bin"


def find_cross_gcc(layout: Layout) -> Optional[str]:
    """The host's aarch64-linux-gnu-gcc, else the one unpacked under the root."""
    found = shutil.which(CROSS_GCC)
    if found:
        return found
    local = cross_bin(layout) / CROSS_GCC
    return str(local) if local.is_file() else None


def fetch_cross_gcc(layout: Layout, mirror: str) -> str:
    """Unpack Debian's aarch64 cross gcc under ``cross/`` (no root) and check it links."""
    apt = PrivateApt(layout, mirror, extra_archs=("amd64",), folder="apt-cross")
    apt.update()
    debs = download_debs(apt, list(CROSS_PACKAGES), layout.root / "cross-debs")
    dest = layout.root / "cross"
    shutil.rmtree(dest, ignore_errors=True)
    for deb in debs:
        extract_deb(deb, dest)
    shutil.rmtree(layout.root / "cross-debs", ignore_errors=True)
    apt.discard()
    gcc = cross_bin(layout) / CROSS_GCC
    versioned = cross_bin(layout) / f"{CROSS_GCC}-12"
    if not versioned.is_file():
        raise SetupError(f"{versioned.name} missing from the cross gcc packages")
    gcc.unlink(missing_ok=True)
    gcc.symlink_to(versioned.name)
    probe_dir = layout.root / "cross-check"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / "t.c").write_text("int twice(int x) { return 2 * x; }\n")
    res = subprocess.run([str(gcc), "-shared", "-fPIC", "-O2", "-o", str(probe_dir / "t.so"),
                          str(probe_dir / "t.c")], text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    head = (probe_dir / "t.so").read_bytes()[:20] if (probe_dir / "t.so").is_file() else b""
    shutil.rmtree(probe_dir, ignore_errors=True)
    if res.returncode != 0 or head[18:20] != (183).to_bytes(2, "little"):
        raise Unavailable(f"the unpacked {CROSS_GCC} cannot link here (install "
                          f"gcc-aarch64-linux-gnu, or the host gcc's libraries):\n"
                          f"{res.stdout[-1500:]}")
    log(f"cross compiler ready: {gcc}")
    return str(gcc)


def fetch_qemu(layout: Layout, mirror: str) -> str:
    """qemu-aarch64-static from the amd64 qemu-user-static package (no root)."""
    apt = PrivateApt(layout, mirror, extra_archs=("amd64",), folder="apt-qemu")
    apt.update()
    dest = layout.root / "qemu-debs"
    debs = download_debs(apt, ["qemu-user-static:amd64"], dest)
    shutil.rmtree(layout.qemu_dir, ignore_errors=True)
    extract_deb(debs[0], layout.qemu_dir)
    shutil.rmtree(dest, ignore_errors=True)
    apt.discard()
    local = layout.qemu_dir / "usr" / "bin" / "qemu-aarch64-static"
    if not local.is_file():
        raise SetupError("qemu-aarch64-static not found in the qemu-user-static package")
    for other in local.parent.iterdir():          # the package holds every guest ISA
        if other != local:
            other.unlink()
    shutil.rmtree(layout.qemu_dir / "usr" / "share", ignore_errors=True)
    return str(local)


_NETWORK_ERRORS = ("NewConnectionError", "Name or service not known",
                   "Temporary failure in name resolution", "Network is unreachable",
                   "ConnectTimeout", "Connection refused", "No route to host")


def install_wheels(layout: Layout) -> None:
    tmp = layout.root / "site.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-warn-script-location", "--target", str(tmp), "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    for plat in WHEEL_PLATFORMS:
        cmd += ["--platform", plat]
    cmd += list(WHEELS)
    log("pip install --target site (aarch64 wheels): " + " ".join(WHEELS))
    res = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    if res.returncode != 0:
        if any(e in res.stdout for e in _NETWORK_ERRORS):
            raise Unavailable(f"pip cannot reach its index: {res.stdout[-600:]}")
        raise SetupError(f"pip install of the aarch64 wheels failed:\n{res.stdout[-3000:]}")
    shutil.rmtree(tmp / "bin", ignore_errors=True)
    shutil.rmtree(layout.site, ignore_errors=True)
    tmp.rename(layout.site)


# --------------------------------------------------------------- running python
def emulated_env(layout: Layout) -> dict:
    """A clean environment for the emulated interpreter (nothing of the host's Python).

    PYTHONHOME points at the sysroot's stdlib (the interpreter would otherwise
    look for it under the host's /usr); one thread for TVM and the BLAS, as
    emulated threads only compete for the host's cores.
    """
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(layout.root),
        "LANG": "C.UTF-8",
        "PYTHONHOME": str(layout.sysroot / "usr"),
        "PYTHONPATH": str(layout.site),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(layout.work),
        "TVM_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    return env


def python_command(layout: Layout, qemu: str, args) -> list[str]:
    return [qemu, "-L", str(layout.sysroot), str(layout.python), *args]


def check_python(layout: Layout, qemu: str, timeout: float = 900) -> str:
    """Import TVM under emulation (also writes the .pyc caches): returns a summary line."""
    layout.work.mkdir(parents=True, exist_ok=True)
    code = ("import platform, sys, time; t = time.time(); import numpy, tvm, tvm.rpc, "
            "tvm.runtime.vm; print(platform.machine(), sys.version.split()[0], "
            "'tvm', tvm.__version__, 'numpy', numpy.__version__, "
            "'import %.1fs' % (time.time() - t))")
    log("importing tvm in the emulated python (slow: ~0.5-1 min)")
    res = subprocess.run(python_command(layout, qemu, ["-c", code]), env=emulated_env(layout),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=timeout)
    if res.returncode != 0 or "aarch64" not in res.stdout:
        raise SetupError(f"the emulated python cannot import tvm:\n{res.stdout[-3000:]}")
    return res.stdout.strip().splitlines()[-1]


# The server script run by the emulated python. Written by setup (not imported here).
SERVER_SOURCE = '''\
"""TVM RPC server for the emulated board, run in process by the aarch64 python."""
import os, sys, threading, time
host, port, port_end, owner = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def watch_owner():
    # with --owner-pid: end the server when the process that asked for it is gone
    while True:
        time.sleep(2.0)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            print(f"owner {owner} is gone: exiting", flush=True)
            os._exit(0)
        except PermissionError:
            pass


if owner > 0:
    threading.Thread(target=watch_owner, daemon=True).start()
t = time.time()
print(f"importing tvm (pid {os.getpid()})", flush=True)
import tvm  # noqa: E402
from tvm.rpc import server  # noqa: E402
print(f"tvm {tvm.__version__} imported in {time.time() - t:.1f}s", flush=True)
# The state object binds, listens and serves on a thread; each session forks.
state = server.PopenRPCServerState(host, port, port_end, key="")
print(f"READY {state.port}", flush=True)
state.thread.join()
'''


# ------------------------------------------------------------------ commands
def read_stamp(layout: Layout) -> Optional[dict]:
    try:
        return json.loads(layout.stamp.read_text())
    except (OSError, ValueError):
        return None


def is_set_up(layout: Layout, mirror: str) -> bool:
    stamp = read_stamp(layout)
    return bool(stamp and stamp.get("key") == recipe_key(mirror) and layout.python.is_file()
                and (layout.site / "tvm").is_dir() and find_qemu(layout) is not None)


def cmd_setup(layout: Layout, mirror: str, force: bool = False) -> dict:
    """Build the board under the root unless it is already built for this recipe.

    A lock file serializes concurrent setups of one root (two test runs): the
    second waits and then finds the board ready.
    """
    if not force and is_set_up(layout, mirror) and find_cross_gcc(layout):
        stamp = read_stamp(layout)
        log(f"already set up at {layout.root} ({stamp.get('check')})")
        return stamp
    host_checks()
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another setup of this root is running: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if find_cross_gcc(layout) is None:
            log(f"no {CROSS_GCC} on PATH: unpacking Debian's cross gcc under {layout.root}")
            probe(mirror)
            fetch_cross_gcc(layout, mirror)
        return _setup_board(layout, mirror, force)


def _setup_board(layout: Layout, mirror: str, force: bool) -> dict:
    stamp = read_stamp(layout)
    if (not force and stamp and stamp.get("key") == recipe_key(mirror)
            and layout.python.is_file() and find_qemu(layout) is None):
        # a cache restored on a machine without qemu: only qemu is missing
        log("no qemu-aarch64(-static) on PATH: fetching qemu-user-static (amd64)")
        fetch_qemu(layout, mirror)
        return stamp
    if not force and is_set_up(layout, mirror):
        stamp = read_stamp(layout)
        log(f"set up at {layout.root} ({stamp.get('check')})")
        return stamp
    return _build(layout, mirror)


def _build(layout: Layout, mirror: str) -> dict:
    t0 = time.time()
    probe(mirror)
    qemu = find_qemu(layout)
    if qemu is None:
        log("no qemu-aarch64(-static) on PATH: fetching qemu-user-static (amd64)")
        qemu = fetch_qemu(layout, mirror)
    apt = PrivateApt(layout, mirror)
    apt.update()
    packages = build_sysroot(layout, apt)
    install_wheels(layout)
    check = check_python(layout, qemu)
    stamp = {"key": recipe_key(mirror), "packages": packages,
             "wheels": list(WHEELS), "check": check, "seconds": round(time.time() - t0, 1)}
    layout.stamp.write_text(json.dumps(stamp, indent=2))
    log(f"board ready: {check} (setup {stamp['seconds']}s)")
    return stamp


class Instance:
    """One running server of a root, named by the port ``start`` was asked for.

    Separate files per instance let two test runs share one cached board root
    without stopping each other's servers.
    """

    def __init__(self, layout: Layout, port: int):
        self.layout = layout
        self.port = port
        self.pidfile = layout.root / f"board-{port}.pid"
        self.portfile = layout.root / f"board-{port}.port"
        self.logfile = layout.root / f"board-{port}.log"

    @staticmethod
    def all(layout: Layout) -> list["Instance"]:
        out = []
        for f in sorted(layout.root.glob("board-*.pid")) + sorted(layout.root.glob("board-*.log")):
            tail = f.stem.split("-", 1)[1]
            if tail.isdigit() and int(tail) not in [i.port for i in out]:
                out.append(Instance(layout, int(tail)))
        return out

    def running_pid(self) -> Optional[int]:
        """Pid of the server if it is running (checked against its command line)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if str(self.layout.server) in cmdline and _pid_alive(pid) else None

    def bound_port(self) -> Optional[int]:
        try:
            return int(self.portfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def forget(self, pid: Optional[int] = None) -> None:
        """Remove the instance files (only if they still name ``pid``, when given)."""
        if pid is not None:
            try:
                if int(self.pidfile.read_text().strip()) != pid:
                    return
            except (OSError, ValueError):
                pass
        self.pidfile.unlink(missing_ok=True)
        self.portfile.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def cmd_start(layout: Layout, mirror: str, port: int, timeout: float,
              owner_pid: int = 0) -> int:
    if not is_set_up(layout, mirror):
        raise SetupError(f"the board at {layout.root} is not set up: run "
                         f"'{Path(__file__).name} setup --root {layout.root}' first")
    inst = Instance(layout, port)
    pid = inst.running_pid()
    if pid is not None and inst.bound_port() is None:
        log(f"another start of this instance is in progress (pid {pid}): waiting for it")
        end = time.time() + timeout
        while time.time() < end and inst.running_pid() == pid and inst.bound_port() is None:
            time.sleep(1.0)
    if inst.running_pid() is not None and inst.bound_port():
        log(f"already running (pid {inst.running_pid()}) on 127.0.0.1:{inst.bound_port()}")
        print(inst.bound_port(), flush=True)
        return inst.bound_port()
    if inst.running_pid() is not None:
        raise SetupError(f"instance {port} is running but never reported its port "
                         f"(log: {inst.logfile}); stop it with 'stop --port {port}'")
    inst.forget()
    layout.work.mkdir(parents=True, exist_ok=True)
    if not layout.server.is_file() or layout.server.read_text() != SERVER_SOURCE:
        layout.server.write_text(SERVER_SOURCE)
    args = [str(layout.server), "127.0.0.1", str(port), str(port + 100), str(owner_pid)]
    with open(inst.logfile, "w") as logf:
        proc = subprocess.Popen(python_command(layout, find_qemu(layout), args),
                                env=emulated_env(layout), stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=layout.work, start_new_session=True)
    inst.pidfile.write_text(str(proc.pid))
    log(f"board started (pid {proc.pid}, log {inst.logfile}); waiting for TVM to import")
    deadline = time.time() + timeout
    shown = 0
    while time.time() < deadline:
        text = inst.logfile.read_text(errors="replace")
        lines = text.splitlines()
        for line in lines[shown:]:
            log(f"  {line}")
        shown = len(lines)
        ready = [ln for ln in lines if ln.startswith("READY ")]
        if ready and _accepts(int(ready[-1].split()[1])):
            bound = int(ready[-1].split()[1])
            inst.portfile.write_text(str(bound))
            print(bound, flush=True)
            return bound
        if proc.poll() is not None:
            inst.forget(proc.pid)
            raise SetupError(f"the board exited with code {proc.returncode}:\n{text[-3000:]}")
        time.sleep(1.0)
    _stop_pid(proc.pid)
    inst.forget(proc.pid)
    raise SetupError(f"the board did not start listening within {timeout:.0f}s "
                     f"(log: {inst.logfile})")


def _stop_pid(pid: int, grace: float = 10.0) -> None:
    """End the server's process group: the server and its forked session children.

    The server leads its own session (``start_new_session``), so its pid is the
    group id. SIGTERM first, SIGKILL for whatever is left after ``grace`` s.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.time() + grace
    while time.time() < end and _pid_alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)      # reap it when it is our own child
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)       # leftovers (session children) or a stuck server
    except ProcessLookupError:
        pass


def cmd_stop(layout: Layout, port: Optional[int]) -> int:
    """Stop the instance started with ``--port port``, or every instance of the root."""
    instances = [Instance(layout, port)] if port is not None else Instance.all(layout)
    stopped = 0
    for inst in instances:
        pid = inst.running_pid()
        inst.forget()
        inst.logfile.unlink(missing_ok=True)
        if pid is not None:
            _stop_pid(pid)
            log(f"stopped (pid {pid}, port {inst.port})")
            stopped += 1
    if not stopped:
        log("not running")
    return stopped


def cmd_status(layout: Layout, mirror: str) -> int:
    stamp = read_stamp(layout)
    print(f"root: {layout.root}")
    print(f"set up: {is_set_up(layout, mirror)}" + (f" ({stamp.get('check')})" if stamp else ""))
    running = [(inst, inst.running_pid()) for inst in Instance.all(layout)]
    running = [(inst, pid) for inst, pid in running if pid is not None]
    if not running:
        print("server: not running")
    for inst, pid in running:
        print(f"server: pid {pid} on 127.0.0.1:{inst.bound_port() or '(starting)'}")
    return 0


def cmd_python(layout: Layout, mirror: str, args) -> int:
    if not is_set_up(layout, mirror):
        raise SetupError("not set up")
    layout.work.mkdir(parents=True, exist_ok=True)
    return subprocess.call(python_command(layout, find_qemu(layout), args),
                           env=emulated_env(layout))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["setup", "start", "stop", "status", "python", "toolchain"])
    p.add_argument("--root", type=Path, default=None,
                   help="cache folder (default $NNEF_TVM_BOARD_ROOT or "
                        "~/.cache/nnef-tvm/arm64-board)")
    p.add_argument("--mirror", default=os.environ.get("NNEF_TVM_BOARD_MIRROR", DEFAULT_MIRROR),
                   help=f"Debian mirror (default {DEFAULT_MIRROR})")
    p.add_argument("--port", type=int, default=None,
                   help=f"start: first port to try (default {DEFAULT_PORT}; the first free one "
                        "of the next 100 is bound); stop: the instance to stop (default: all)")
    p.add_argument("--owner-pid", type=int, default=0,
                   help="start: the server exits when this process is gone (tests pass "
                        "their own pid, so a killed test run leaves no board behind)")
    p.add_argument("--timeout", type=float, default=START_TIMEOUT,
                   help="seconds to wait for the server to listen")
    p.add_argument("--force", action="store_true", help="setup: rebuild even if cached")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:                      # 'python' command: the rest goes to the interpreter
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    args.args = extra
    layout = Layout((args.root or default_root()).expanduser().resolve())
    try:
        if args.command == "setup":
            cmd_setup(layout, args.mirror, force=args.force)
        elif args.command == "start":
            cmd_start(layout, args.mirror, args.port or DEFAULT_PORT, args.timeout,
                      args.owner_pid)
        elif args.command == "stop":
            cmd_stop(layout, args.port)
        elif args.command == "status":
            return cmd_status(layout, args.mirror)
        elif args.command == "toolchain":
            gcc = find_cross_gcc(layout)
            if gcc is None:
                raise SetupError(f"no {CROSS_GCC}: run setup first")
            print(os.path.dirname(gcc))
        else:
            return cmd_python(layout, args.mirror, args.args)
    except Unavailable as e:
        print(f"emulated board unavailable: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (SetupError, subprocess.TimeoutExpired) as e:
        print(f"emulated board: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
