"""Compile climml's C++ CPU kernels on demand, cache the library, register its XLA FFI targets.

Nothing here runs unless the kernels are asked for (:mod:`climml.native`: ``CLIMML_NATIVE=1`` or
``train.native_lstm: true``); the default is the pure-XLA path. The kernels are plain C++20
against the XLA FFI header that ships inside ``jaxlib``, so the only build requirement is a C++
compiler (``$CXX``, else ``c++`` / ``g++`` / ``clang++``).

The library is built for an explicit instruction set (:func:`isa_flags`: AVX-512 on x86-64), not
``-march=native``, so every machine with those features runs the same code. Other CPUs are
declined: the source compiles for AVX2, but there GCC moves the kernel's 16-float vectors through
the stack and it ran ~20x slower than the XLA path (benchmarks/RESULTS.md); it compiles for
aarch64 too, untested. The library goes into ``$CLIMML_CACHE`` (default ``~/.cache/climml``)
under a name that hashes the source, the flags, the compiler and jaxlib's version, so a change to
any of them rebuilds it and a cache shared between machines never hands one a library it cannot
run. It is written to a temporary file and renamed, so concurrent first uses and interrupted
builds never leave a half-written library behind.

:func:`load` returns False when the kernels cannot be had here, with the reason in
:data:`reason`; callers then use their XLA path.
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
from pathlib import Path

import jax
import jaxlib

SOURCE = Path(__file__).with_name("lstm_cpu.cc")
FLAGS = ("-O3", "-std=c++20", "-shared", "-fPIC", "-pthread")
"""Compiler flags besides the instruction set (:func:`isa_flags`)."""

TARGETS = {"climml_lstm_forward": "ClimmlLstmForward", "climml_lstm_backward": "ClimmlLstmBackward"}

# -mavx512f implies AVX2 and FMA to the compiler; they are listed for the reader. The AVX2 flags
# are kept to check that the source still compiles for them (tests/models/test_native_lstm.py).
_AVX512 = ("-mavx2", "-mfma", "-mavx512f")
_AVX2 = ("-mavx2", "-mfma")

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


def _cpu_flags() -> set[str]:
    """The CPU's feature names as Linux reports them (empty where ``/proc/cpuinfo`` is absent)."""
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def isa_flags() -> tuple[str, ...] | str:
    """The instruction-set flags to build with (AVX-512: one 16-float vector per register), or
    why this CPU is declined. An AVX2 build computes the same floats, bit for bit, but slowly."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"the kernel is built for x86-64 CPUs only (this one is {machine or 'unknown'})"
    flags = _cpu_flags()
    if {"avx512f", "avx2", "fma"} <= flags:
        return _AVX512
    return "the CPU lacks AVX-512, which the kernel needs to be faster than the XLA path"


def _library_path(compiler: str, flags: tuple[str, ...]) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags), version, jaxlib.__version__):
        key.update(part if isinstance(part, bytes) else part.encode())
    return _cache_dir() / f"climml_native_{key.hexdigest()[:16]}.so"


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Build the library into ``target`` atomically; raises ``RuntimeError`` with g++'s output."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [compiler, *flags, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            # The first errors name the cause; the whole log can run to hundreds of lines.
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            message = "; ".join(errors[:3]) or done.stderr.strip()[-1000:]
            raise RuntimeError(f"{' '.join(cmd)} failed: {message}")
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
    isa = isa_flags()
    if isinstance(isa, str):
        reason = isa
        return False
    compiler = _compiler()
    if compiler is None:
        reason = "no C++ compiler found (set CXX)"
        return False
    flags = (*FLAGS, *isa)
    try:
        path = _library_path(compiler, flags)
        if not path.exists():
            _compile(compiler, flags, path)
        library = ctypes.cdll.LoadLibrary(str(path))
    except (OSError, RuntimeError) as error:
        reason = f"the kernel failed to build: {error}"
        return False
    if not _registered:
        for target, symbol in TARGETS.items():
            capsule = jax.ffi.pycapsule(getattr(library, symbol))
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
        _registered = True
    _loaded, reason = True, None
    return True
