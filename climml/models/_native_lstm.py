"""An LSTM layer whose recurrence runs in climml's C++ CPU kernel (:mod:`climml.native`).

Same equations, weights, masks and outputs (to float rounding) as the XLA path in
:mod:`climml.models._recurrence`, which picks this one when the kernel is asked for and
:func:`climml.native.lstm_supported`, and the same memory policy:

* a sequence whose gates fit the plan's keep limit runs forward once, keeping every step's gate
  activations, and backward once;
* a longer one keeps only the states ``h``, ``c`` of every step; the backward pass goes through
  chunks of ``chunk`` steps from the last, re-running each chunk's forward from its kept initial
  state to get its gates back, then its backward, and carries the state cotangent to the chunk
  before. The recomputation costs one more forward pass and saves ``T x B x 4H`` floats, which
  on CPU are fresh pages (page faults) on every call.

The kernel does the loops over time, the input projection and the input cotangent; XLA does the
weight gradients, each a single matmul over all the steps of a chunk.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from climml import native
from climml.models._chunks import chunked_scan, flat, shift


def _valid(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``(T, B)`` booleans from an optional ``(T, B, 1)`` mask."""
    return jnp.ones(x.shape[:2], bool) if mask is None else mask[..., 0]


def _run(x, params, mask, keep_gates: bool):
    w_in, b_in, w_rec, b_rec = params
    hs, cs, acts = native.lstm_forward(
        x, w_in, b_in + b_rec, w_rec, _valid(x, mask), keep_gates=keep_gates
    )
    ys = hs if mask is None else jnp.where(mask, hs, 0.0)
    return (ys, hs[-1]), (hs, cs, acts)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def native_lstm_layer(x: jax.Array, params: tuple, mask: jax.Array | None, chunk: int):
    """``(outputs (T, B, H), last_h (B, H))`` of one LSTM layer over time-major ``x`` ``(T, B, F)``.

    ``params`` = ``(w_in, b_in, w_rec, b_rec)``; ``mask`` ``(T, B, 1)`` booleans or ``None``;
    ``chunk``: steps per backward chunk (``>= T``: keep every step's gates, no recomputation).
    """
    return _run(x, params, mask, keep_gates=False)[0]


def _fwd(x, params, mask, chunk):
    # symbolic_zeros: inputs arrive wrapped (CustomVJPPrimal) with a ``perturbed`` flag; the
    # input cotangent is skipped when nothing differentiates with respect to x (the data).
    # (A residual must be an array or None, so the flag travels as "w_in or None".)
    wants_dx = x.perturbed
    x, params, mask = jax.tree.map(lambda p: p.value, (x, params, mask))
    outputs, (hs, cs, acts) = _run(x, params, mask, keep_gates=chunk >= x.shape[0])
    return outputs, (x, params, mask, hs, cs, acts, params[0] if wants_dx else None)


def _over_steps(a: jax.Array, d_z: jax.Array) -> jax.Array:
    """``sum_t a_t^T d_z_t`` for ``(T, B, I)`` and ``(T, B, J)``: one ``(I, J)`` matmul.

    On one device (time, batch) is flattened into the rows of a plain matmul, which runs the
    whole train step faster than contracting both axes (benchmarks/RESULTS.md). With several
    devices the batch may be sharded, and a flattened axis could not stay sharded (XLA would
    gather the whole batch), so both axes are contracted in place: each device sums its rows,
    one all-reduce follows.
    """
    if jax.device_count() > 1:
        return jnp.einsum("tbi,tbj->ij", a, d_z)
    return flat(a).T @ flat(d_z)


def _grads(x, h_prev, d_z):
    """``(d w_in, d b, d w_rec)`` over some steps: single matmuls over all of them."""
    return _over_steps(x, d_z), d_z.sum(axis=(0, 1)), _over_steps(h_prev, d_z)


def _bwd(chunk, residuals, cotangents):
    x, (w_in, b_in, w_rec, b_rec), mask, hs, cs, acts, w_in_if_dx = residuals
    # Unread outputs arrive as symbolic zeros: the kernel skips them instead of adding zeros.
    d_ys, d_last = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    wants_dx = w_in_if_dx is not None
    # The kernel computes d_x row by row beside d_z (cheaper than a separate (T*B, 4H) x (4H, F)
    # matmul) when F fits its 16-float vectors.
    in_kernel = wants_dx and w_in.shape[0] % native.LANES == 0
    w_in_kernel = w_in if in_kernel else None
    valid = _valid(x, mask)

    def run_chunk(carry, xs):
        d_h, d_c, grads = carry
        (x_c, valid_c, hs_c, cs_c, acts_c, d_ys_c), (h0, c0) = xs
        if acts_c is None:  # gates not kept: re-run this chunk's forward from its initial state
            acts_c = native.lstm_forward(x_c, w_in, b_in + b_rec, w_rec, valid_c, h0, c0)[2]
        d_z, d_x, d_h, d_c = native.lstm_backward(
            acts_c, cs_c, w_rec, valid_c, d_ys_c, d_h, w_in=w_in_kernel, c0=c0, d_c=d_c
        )
        h_prev = jnp.concatenate([h0[None], hs_c[:-1]])  # h entering each step
        grads = jax.tree.map(jnp.add, grads, _grads(x_c, h_prev, d_z))
        if wants_dx and not in_kernel:
            d_x = d_z @ w_in.T
        return (d_h, d_c, grads), d_x

    zero_state = jnp.zeros_like(hs[0])
    d_h = zero_state if d_last is None else d_last
    zero_grads = (jnp.zeros_like(w_in), jnp.zeros_like(b_in), jnp.zeros_like(w_rec))
    # The state entering each chunk (zeros before the first). Kept gates make one chunk of all
    # the steps; otherwise chunks run from the last, in a scan rather than a Python loop so that
    # XLA cannot hoist every chunk's recomputation to the start and keep all their gates alive.
    firsts = (shift(hs)[::chunk], shift(cs)[::chunk])
    (_, _, (d_w_in, d_b, d_w_rec)), d_x = chunked_scan(
        run_chunk,
        (d_h, zero_state, zero_grads),
        (x, valid, hs, cs, acts, d_ys),
        x.shape[0],
        chunk,
        reverse=True,
        firsts=firsts,
    )
    d_mask = None if mask is None else np.zeros(mask.shape, jax.dtypes.float0)
    return d_x, (d_w_in, d_b, d_w_rec, d_b), d_mask


native_lstm_layer.defvjp(_fwd, _bwd, symbolic_zeros=True)
