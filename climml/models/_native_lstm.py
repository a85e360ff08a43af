"""An LSTM layer whose recurrence runs in climml's C++ CPU kernel (:mod:`climml.native`).

Same equations, weights, masks and outputs as the XLA path in :mod:`climml.models._recurrence`
(which picks this one when :func:`climml.native.lstm_supported`), differentiated the same way:
the kernel does the two loops over time, XLA does everything that is one matmul over all steps
(the input projection, the weight gradients and the input cotangent).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from climml import native


def _flat(a: jax.Array) -> jax.Array:
    """``(T, B, K)`` -> ``(T*B, K)``: many steps as the rows of one matmul."""
    return a.reshape(-1, a.shape[-1])


def _valid(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``(T, B)`` booleans from an optional ``(T, B, 1)`` mask."""
    return jnp.ones(x.shape[:2], bool) if mask is None else mask[..., 0]


def _run(x, params, mask):
    w_in, b_in, w_rec, b_rec = params
    hs, cs, acts = native.lstm_forward(x, w_in, b_in + b_rec, w_rec, _valid(x, mask))
    ys = hs if mask is None else jnp.where(mask, hs, 0.0)
    return (ys, hs[-1]), (hs, cs, acts)


@jax.custom_vjp
def native_lstm_layer(x: jax.Array, params: tuple, mask: jax.Array | None):
    """``(outputs (T, B, H), last_h (B, H))`` of one LSTM layer over time-major ``x`` ``(T, B, F)``.

    ``params`` = ``(w_in, b_in, w_rec, b_rec)``; ``mask`` ``(T, B, 1)`` booleans or ``None``.
    """
    return _run(x, params, mask)[0]


def _fwd(x, params, mask):
    # symbolic_zeros: inputs arrive wrapped (CustomVJPPrimal) with a ``perturbed`` flag; the
    # input cotangent is skipped when nothing differentiates with respect to x (the data).
    # (A residual must be an array or None, so the flag travels as "w_in or None".)
    wants_dx = x.perturbed
    x, params, mask = jax.tree.map(lambda p: p.value, (x, params, mask))
    outputs, (hs, cs, acts) = _run(x, params, mask)
    return outputs, (x, params, mask, hs, cs, acts, params[0] if wants_dx else None)


def _input_cotangent(d_x, d_z, w_in, wants_dx: bool):
    """``d_z @ w_in.T`` unless the kernel made it already or nobody wants it (then ``None``)."""
    if not wants_dx or d_x is not None:
        return d_x
    return d_z @ w_in.T


def _bwd(residuals, cotangents):
    x, (w_in, _, w_rec, _), mask, hs, cs, acts, w_in_if_dx = residuals
    wants_dx = w_in_if_dx is not None
    # Unread outputs arrive as symbolic zeros: the kernel skips them instead of adding zeros.
    d_ys, d_last = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    # The kernel computes d_x row by row beside d_z (cheaper than a separate (T*B, 4H) x (4H, F)
    # matmul) when F fits its 16-float vectors.
    in_kernel = wants_dx and w_in.shape[0] % native.LANES == 0
    d_z, d_x = native.lstm_backward(
        acts, cs, w_rec, _valid(x, mask), d_ys, d_last, w_in if in_kernel else None
    )
    d_b = d_z.sum(axis=(0, 1))
    grads = (
        _flat(x).T @ _flat(d_z),
        d_b,
        _flat(hs[:-1]).T @ _flat(d_z[1:]),  # h entering step t is hs[t - 1]; zero at t = 0
        d_b,
    )
    d_mask = None if mask is None else np.zeros(mask.shape, jax.dtypes.float0)
    return _input_cotangent(d_x, d_z, w_in, wants_dx), grads, d_mask


native_lstm_layer.defvjp(_fwd, _bwd, symbolic_zeros=True)
