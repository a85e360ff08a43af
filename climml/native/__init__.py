"""Native CPU kernels (C++ through the XLA FFI) for the hot loops XLA:CPU runs slowly.

Only the LSTM recurrence for now (:func:`lstm_forward`, :func:`lstm_backward`); see
``lstm_cpu.cc`` for why and how. :func:`lstm_supported` says whether a layer can use them: float32,
hidden size a multiple of 16, traced for the CPU backend, and a C++ compiler on the machine
(:mod:`climml.native.build`). Everything else, and every other backend, uses the XLA path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from climml.errors import ConfigError, expected
from climml.native import build

LANES = 16

_disabled = 0


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Layers traced inside this block use the XLA path (to compare the two in one process;
    ``CLIMML_NATIVE=0`` does the same for a whole process)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def lstm_supported(dtype, hidden: int) -> bool:
    """True when a float32 LSTM layer of ``hidden`` units traced now can run natively."""
    return (
        not _disabled
        and jnp.dtype(dtype) == jnp.float32
        and hidden % LANES == 0
        and jax.default_backend() == "cpu"
        and build.load()
    )


def _require() -> None:
    if not build.load():
        raise RuntimeError(f"climml's native kernels are unavailable: {build.reason}")


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def lstm_forward(x, w_in, bias, w_rec, valid):
    """Run the LSTM over time from the zero state.

    Args:
      x: ``(T, B, F)`` inputs, time-major.
      w_in: ``(F, 4H)`` input kernel (gate blocks i, f, g, o).
      bias: ``(4H,)`` the sum of both biases.
      w_rec: ``(H, 4H)`` recurrent kernel.
      valid: ``(T, B)`` booleans, False at padded steps (state carried, gates unused).

    Returns:
      ``(hs, cs, acts)``: the states ``h``, ``c`` after each step ``(T, B, H)`` and the gate
      activations ``(T, B, 4H)`` the backward pass needs.
    """
    _require()
    steps, batch, _ = x.shape
    hidden = w_rec.shape[0]
    if hidden % LANES:
        raise ConfigError(expected("hidden", f"a multiple of {LANES} units", hidden))
    call = jax.ffi.ffi_call(
        "climml_lstm_forward",
        (_f32(steps, batch, hidden), _f32(steps, batch, hidden), _f32(steps, batch, 4 * hidden)),
        vmap_method="sequential",
    )
    return call(x, w_in, bias, w_rec, valid.astype(jnp.uint8))


def lstm_backward(acts, cs, w_rec, valid, d_hs=None, d_last=None, w_in=None):
    """Backpropagation through time: ``(d_z, d_x)``.

    ``acts``, ``cs``, ``valid`` as from :func:`lstm_forward`; ``d_hs`` ``(T, B, H)`` is the
    cotangent of the per-step states and ``d_last`` ``(B, H)`` that of the final one; ``None``
    for either means zero (an unread output), and no zero array is built for it. ``d_z``
    ``(T, B, 4H)`` is the cotangent of the pre-activations (of ``x @ w_in`` and of ``h @ w_rec``).
    With ``w_in`` ``(F, 4H)`` (``F`` a multiple of 16) the kernel also returns the input
    cotangent ``d_x = d_z @ w_in.T`` ``(T, B, F)``; without it ``d_x`` is ``None``.
    """
    _require()
    empty = jnp.zeros((0,), jnp.float32)
    steps, batch, _ = acts.shape
    d_x_shape = (0,) if w_in is None else (steps, batch, w_in.shape[0])
    call = jax.ffi.ffi_call(
        "climml_lstm_backward", (_f32(*acts.shape), _f32(*d_x_shape)), vmap_method="sequential"
    )
    d_z, d_x = call(
        acts,
        cs,
        w_rec.T,
        empty if w_in is None else w_in.T,
        valid.astype(jnp.uint8),
        empty if d_hs is None else d_hs,
        empty if d_last is None else d_last,
    )
    return d_z, (None if w_in is None else d_x)
