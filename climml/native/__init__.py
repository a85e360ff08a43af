"""Native CPU kernels (C++ through the XLA FFI) for the hot loops XLA:CPU runs slowly: opt-in.

Only the LSTM recurrence for now (:func:`lstm_forward`, :func:`lstm_backward`); see
``lstm_cpu.cc`` for why and how. The default everywhere is the pure-XLA path, which gives the same
numbers on every machine; the kernel's differ from it by rounding (~1e-6) and it is compiled on
the machine that runs it, so it is used only when asked for: ``CLIMML_NATIVE=1`` for a process,
``train.native_lstm: true`` for a configured run (the pipeline enters :func:`enabled`), or
:func:`enabled` around the code that traces a model. ``CLIMML_NATIVE=0`` or :func:`disabled`
turns it off again; the innermost block wins over the environment.

:func:`lstm_supported` says whether a layer traced now uses the kernel: asked for, float32, hidden
size a multiple of 16, traced for the CPU backend, and the kernel built for this CPU
(:mod:`climml.native.build`: x86-64 with AVX-512, and a C++ compiler). When it is asked
for but the machine cannot serve it, one warning per process gives the reason and every layer uses
the XLA path. The choice is made when a function is traced: a jitted function already traced
keeps the path it was traced with. With several devices a batch sharded over them stays sharded:
each device runs the kernel on its own rows (:mod:`climml.native._partition`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from climml.errors import ConfigError, expected
from climml.native import build
from climml.native._partition import batch_partitioned, looped

LANES = 16

ENV = "CLIMML_NATIVE"

_choices: list[bool] = []  # open enabled() / disabled() blocks, innermost last
_warned = False


def requested() -> bool:
    """Whether the kernels are asked for: the innermost open block, else ``CLIMML_NATIVE``."""
    if _choices:
        return _choices[-1]
    value = os.environ.get(ENV, "0").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(expected(ENV, "0 (XLA path, the default) or 1 (native kernel)", value))
    return value == "1"


@contextlib.contextmanager
def _choose(use: bool) -> Iterator[None]:
    _choices.append(use)
    try:
        yield
    finally:
        _choices.pop()


def enabled(when: bool = True) -> contextlib.AbstractContextManager[None]:
    """Layers traced inside this block use the kernel where :func:`lstm_supported`.

    ``when=False`` changes nothing, so ``enabled(cfg.train.native_lstm)`` leaves a run without the
    switch to ``CLIMML_NATIVE``.
    """
    return _choose(True) if when else contextlib.nullcontext()


def disabled() -> contextlib.AbstractContextManager[None]:
    """Layers traced inside this block use the XLA path (to compare the two in one process)."""
    return _choose(False)


def _decline(reason: str | None) -> bool:
    """Warn, once per process, that the kernel was asked for and cannot be had; False."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"climml: the native LSTM kernel was requested but {reason}; using the XLA path",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


def lstm_supported(dtype, hidden: int) -> bool:
    """True when a ``dtype`` LSTM layer of ``hidden`` units traced now runs in the kernel.

    Layers that are not float32 or whose hidden size is not a multiple of 16 use the XLA path
    silently (a property of the layer, not of the machine).
    """
    if not requested() or jnp.dtype(dtype) != jnp.float32 or hidden % LANES:
        return False
    if jax.default_backend() != "cpu":
        return _decline(f"it runs on CPU only (JAX's backend is {jax.default_backend()})")
    if not build.load():
        return _decline(build.reason)
    return True


def _require() -> None:
    if not build.load():
        raise RuntimeError(f"climml's native kernels are unavailable: {build.reason}")


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _invoke(call, args, arg_axes, out_axes):
    """``call(*args)``; with several devices, split along the batch axes given for each
    argument and result (``None``: replicated), so a sharded batch stays sharded."""
    if jax.device_count() == 1:
        return call(*args)
    partitioned = lambda *a: batch_partitioned(lambda *b: tuple(call(*b)), a, arg_axes, out_axes)  # noqa: E731
    return looped(partitioned)(*args)


def _or_empty(a: jax.Array | None) -> jax.Array:
    """An optional kernel input: the array, or an empty one meaning "absent"."""
    return jnp.zeros((0,), jnp.float32) if a is None else a


def lstm_forward(x, w_in, bias, w_rec, valid, h0=None, c0=None, *, keep_gates=True):
    """Run the LSTM over time.

    Args:
      x: ``(T, B, F)`` inputs, time-major.
      w_in: ``(F, 4H)`` input kernel (gate blocks i, f, g, o).
      bias: ``(4H,)`` the sum of both biases.
      w_rec: ``(H, 4H)`` recurrent kernel.
      valid: ``(T, B)`` booleans, False at padded steps (state carried, gates unused).
      h0, c0: ``(B, H)`` state before step 0 (a later chunk of a sequence); ``None``: zeros.
      keep_gates: return the gate activations for :func:`lstm_backward`; False saves writing
        ``T x B x 4H`` floats when the backward pass will recompute them chunk by chunk.

    Returns:
      ``(hs, cs, acts)``: the states ``h``, ``c`` after each step ``(T, B, H)`` and the gate
      activations ``(T, B, 4H)`` (``None`` unless ``keep_gates``).
    """
    _require()
    hidden = w_rec.shape[0]
    if hidden % LANES:
        raise ConfigError(expected("hidden", f"a multiple of {LANES} units", hidden))

    def call(x, *rest):  # result shapes from the arguments: a device's shard has fewer rows
        steps, batch, _ = x.shape
        gates = (steps, batch, 4 * hidden) if keep_gates else (0,)
        results = (_f32(steps, batch, hidden), _f32(steps, batch, hidden), _f32(*gates))
        ffi = jax.ffi.ffi_call("climml_lstm_forward", results, vmap_method="sequential")
        return ffi(x, *rest)

    args = (x, w_in, bias, w_rec, valid.astype(jnp.uint8), _or_empty(h0), _or_empty(c0))
    hs, cs, acts = _invoke(call, args, (1, None, None, None, 1, 0, 0), (1, 1, 1))
    return hs, cs, (acts if keep_gates else None)


def lstm_backward(acts, cs, w_rec, valid, d_hs=None, d_h=None, *, w_in=None, c0=None, d_c=None):
    """Backpropagation through time: ``(d_z, d_x, d_h0, d_c0)``.

    ``acts``, ``cs``, ``valid`` as from :func:`lstm_forward`; ``d_hs`` ``(T, B, H)`` is the
    cotangent of the per-step states, ``d_h``, ``d_c`` ``(B, H)`` those of the final state;
    ``None`` for any of them means zero (an unread output), and no zero array is built for it.
    ``d_z`` ``(T, B, 4H)`` is the cotangent of the pre-activations (of ``x @ w_in`` and of
    ``h @ w_rec``). With ``w_in`` ``(F, 4H)`` (``F`` a multiple of 16) the kernel also returns
    the input cotangent ``d_x = d_z @ w_in.T`` ``(T, B, F)``, else ``d_x`` is ``None``. With
    ``c0``, the cell state before step 0 of a later chunk, it returns the cotangents ``d_h0``,
    ``d_c0`` ``(B, H)`` of the chunk's initial state, else they are ``None``.
    """
    _require()

    def call(acts, cs, *rest):  # result shapes from the arguments (see lstm_forward)
        steps, batch, hidden = cs.shape
        d_x = (0,) if w_in is None else (steps, batch, w_in.shape[0])
        state = (0,) if c0 is None else (batch, hidden)
        results = (_f32(*acts.shape), _f32(*d_x), _f32(*state), _f32(*state))
        ffi = jax.ffi.ffi_call("climml_lstm_backward", results, vmap_method="sequential")
        return ffi(acts, cs, *rest)

    args = (
        acts,
        cs,
        w_rec.T,
        _or_empty(None if w_in is None else w_in.T),
        valid.astype(jnp.uint8),
        _or_empty(c0),
        _or_empty(d_hs),
        _or_empty(d_h),
        _or_empty(d_c),
    )
    axes = (1, 1, None, None, 1, 0, 1, 0, 0)
    d_z, d_x, d_h0, d_c0 = _invoke(call, args, axes, (1, 1, 0, 0))
    none_if = lambda absent, a: None if absent else a  # noqa: E731
    return d_z, none_if(w_in is None, d_x), none_if(c0 is None, d_h0), none_if(c0 is None, d_c0)
