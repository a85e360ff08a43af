"""Native CPU kernels (C++ through the XLA FFI) for the hot loops XLA:CPU runs slowly.

Only the LSTM recurrence for now (:func:`lstm_forward`, :func:`lstm_backward`); see
``lstm_cpu.cc`` for why and how. :func:`lstm_supported` says whether a layer can use them: float32,
hidden size a multiple of 16, traced for the CPU backend, and a C++ compiler on the machine
(:mod:`climml.native.build`). Everything else, and every other backend, uses the XLA path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from climml.native import build

LANES = 16


def lstm_supported(dtype, hidden: int) -> bool:
    """True when a float32 LSTM layer of ``hidden`` units traced now can run natively."""
    return (
        jnp.dtype(dtype) == jnp.float32
        and hidden % LANES == 0
        and jax.default_backend() == "cpu"
        and build.load()
    )


def _require() -> None:
    if not build.load():
        raise RuntimeError(f"climml's native kernels are unavailable: {build.reason}")


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def lstm_forward(xw: jax.Array, w_rec: jax.Array, valid: jax.Array):
    """Run the LSTM over time from the zero state.

    Args:
      xw: ``(T, B, 4H)`` input projection plus both biases (gate blocks i, f, g, o).
      w_rec: ``(H, 4H)`` recurrent kernel.
      valid: ``(T, B)`` booleans, False at padded steps (state carried, gates unused).

    Returns:
      ``(hs, cs, acts)``: the states ``h``, ``c`` after each step ``(T, B, H)`` and the gate
      activations ``(T, B, 4H)`` the backward pass needs.
    """
    _require()
    steps, batch, _ = xw.shape
    hidden = w_rec.shape[0]
    call = jax.ffi.ffi_call(
        "climml_lstm_forward",
        (_f32(steps, batch, hidden), _f32(steps, batch, hidden), _f32(*xw.shape)),
        vmap_method="sequential",
    )
    return call(xw, w_rec, valid.astype(jnp.uint8))


def lstm_backward(acts, cs, w_rec, valid, d_hs=None, d_last=None) -> jax.Array:
    """Cotangent ``(T, B, 4H)`` of the pre-activations (``xw`` and ``h @ w_rec``).

    ``acts``, ``cs``, ``valid`` as from :func:`lstm_forward`; ``d_hs`` ``(T, B, H)`` is the
    cotangent of the per-step states and ``d_last`` ``(B, H)`` that of the final one; ``None``
    for either means zero (an unread output), and no zero array is built for it.
    """
    _require()
    empty = jnp.zeros((0,), jnp.float32)
    call = jax.ffi.ffi_call("climml_lstm_backward", _f32(*acts.shape), vmap_method="sequential")
    return call(
        acts,
        cs,
        w_rec.T,
        valid.astype(jnp.uint8),
        empty if d_hs is None else d_hs,
        empty if d_last is None else d_last,
    )
