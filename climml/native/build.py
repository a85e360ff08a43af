"""Compile climml's C++ CPU kernels on first use, cache the library, register its XLA FFI targets.

The kernels are plain C++17/20 against the XLA FFI header that ships inside ``jaxlib``, so the
only build requirement is a C++ compiler (``$CXX``, else ``c++`` / ``g++`` / ``clang++``). The
library is built for the machine it runs on (``-march=native``) into ``$CLIMML_CACHE`` (default
``~/.cache/climml``) under a name that hashes the source, the flags, the compiler and jaxlib's
version, so a change to any of them rebuilds it. It is written to a temporary file and renamed, so
concurrent first uses and interrupted builds never leave a half-written library behind.

Without a compiler, or with ``CLIMML_NATIVE=0``, :func:`load` returns ``None`` and callers use
their pure-XLA path; the reason is kept in :data:`reason`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jaxlib

SOURCE = Path(__file__).with_name("lstm_cpu.cc")
FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-pthread")
TARGETS = {"climml_lstm_forward": "ClimmlLstmForward", "climml_lstm_backward": "ClimmlLstmBackward"}

reason: str | None = None
"""Why the native kernels are unavailable (``None`` while they are, or before :func:`load`)."""

_loaded: bool | None = None
_registered = False  # XLA refuses a second registration of a target name in one process
_lock = threading.Lock()  # models may be traced from several threads at once


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    root = os.environ.get("CLIMML_CACHE") or Path.home() / ".cache" / "climml"
    return Path(root) / "native"


def _cpu_features() -> str:
    """What ``-march=native`` depends on, so that a cache shared between machines (a network
    home directory) never hands one CPU a library built for another's instruction set."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return platform.processor() or platform.machine()


def _library_path(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(FLAGS),
        version,
        jaxlib.__version__,
        _cpu_features(),
    ):
        key.update(part if isinstance(part, bytes) else part.encode())
    return _cache_dir() / f"climml_native_{key.hexdigest()[:16]}.so"


def _compile(compiler: str, target: Path) -> None:
    """Build the library into ``target`` atomically; raises ``RuntimeError`` with g++'s output."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load() -> bool:
    """Build (once per machine) and register the kernels; False, with :data:`reason`, if not."""
    if _loaded is not None:
        return _loaded
    with _lock:
        return _load()


def _load() -> bool:
    global _loaded, _registered, reason
    if _loaded is not None:  # another thread finished while this one waited
        return _loaded
    _loaded = False
    if os.environ.get("CLIMML_NATIVE", "1") == "0":
        reason = "disabled by CLIMML_NATIVE=0"
        return False
    compiler = _compiler()
    if compiler is None:
        reason = "no C++ compiler found (set CXX)"
        return False
    try:
        path = _library_path(compiler)
        if not path.exists():
            _compile(compiler, path)
        library = ctypes.cdll.LoadLibrary(str(path))
    except (OSError, RuntimeError) as error:
        reason = f"native kernels failed to build: {error}"
        warnings.warn(f"climml: {reason}; using the XLA path", RuntimeWarning, stacklevel=2)
        return False
    if not _registered:
        for target, symbol in TARGETS.items():
            capsule = jax.ffi.pycapsule(getattr(library, symbol))
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
        _registered = True
    _loaded, reason = True, None
    return True
