"""How a recurrent layer runs over time and how it is differentiated (backpropagation through time).

The cells are pure elementwise functions of one time step, ``cell(carry, xw, hw)``, where
``xw = x_t @ w_in + b_in`` is the input projection and ``hw = h @ w_rec + b_rec`` the recurrent
one. Equations (gate blocks ordered as in PyTorch and cuDNN, both biases kept, so weights map one
to one)::

    rnn   h' = tanh(xw + hw)
    lstm  i, f, g, o = split(xw + hw)          (Hochreiter & Schmidhuber 1997; Gers et al. 2000)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
          h' = sigmoid(o) * tanh(c')
    gru   r_x, z_x, n_x = split(xw);  r_h, z_h, n_h = split(hw)    (Cho et al. 2014, "reset after")
          r = sigmoid(r_x + r_h);  z = sigmoid(z_x + z_h);  n = tanh(n_x + r * n_h)
          h' = (1 - z) * n + z * h

:func:`scan_cell` runs a cell with ``jax.lax.scan`` under a custom VJP built like cuDNN's:

* the input projection of many steps is one matmul outside the loop, so the loop holds only the
  recurrent matmul and the gate arithmetic;
* the forward pass keeps each step's *pre-activations* (``xw + hw``), so the reverse loop needs
  one matmul per step (``d hw @ w_rec.T``) and no recomputation;
* the weight gradients are single matmuls over many steps, not one per step;
* the LSTM's step backward is derived by hand (:func:`lstm_backprop`); other cells use autodiff
  of their elementwise step.

Memory decides one thing. Kept pre-activations cost ``T x B x G*H`` floats; past
:data:`KEEP_BYTES` the sequence is processed in chunks of steps instead, and the backward pass
recomputes a chunk's pre-activations with two batched matmuls from the states kept at each step.
On CPU this is faster as well as smaller: XLA:CPU allocates a program's temporaries afresh on every
call, and tens of megabytes of fresh pages cost more in page faults than the recomputation
(benchmarks/RESULTS.md).

Opt-in (``CLIMML_NATIVE=1``, ``train.native_lstm: true`` or :func:`climml.native.enabled`), a
float32 LSTM layer whose hidden size is a multiple of 16 runs on CPU in climml's C++ kernel instead
(:mod:`climml.models._native_lstm`, ``climml/native/lstm_cpu.cc``), under the same plan (keep, or
chunks recomputed in the backward pass): same equations and gradients, but each step is one fused
pass per tile of batch rows, with the rows split across XLA's threads. XLA:CPU runs a scan body
one small op at a time on one core, which the kernel avoids (figures in
benchmarks/RESULTS.md). The XLA path here is the default because it gives the same numbers on
every machine; the kernel's differ from it by float rounding (~1e-6).

Sequences of different lengths are padded to a common ``T`` and described by a mask: at a padded
step the state is carried unchanged and the output is zero, so padding never changes what the
model predicts. A reversed scan (the backward direction of a bidirectional layer) starts from the
zero state at each sequence's own last step for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from climml import native
from climml.models._chunks import chunked_scan, flat, shift
from climml.models._native_lstm import native_lstm_layer

Carry = tuple[jax.Array, ...]
"""Recurrent state: ``(h,)`` for rnn and gru, ``(h, c)`` for lstm; each ``(B, H)``."""

KEEP_BYTES = 4 * 2**20
"""Largest pre-activation buffer (bytes) per layer kept from the forward for the backward pass.

Set for CPU: glibc hands blocks over 32 MB back to the kernel, so a train step whose temporaries
pass that pays page faults on every call. A 2-layer LSTM (batch 64, 64 units) keeping 8 MB per
layer at 128 steps ran slower than chunking (figures in benchmarks/RESULTS.md)."""

CHUNK_BYTES = 2 * 2**20
"""Size (bytes) of one chunk's pre-activations when they are recomputed instead of kept."""


def _gate_activations(z: jax.Array, tanh_blocks: tuple[bool, ...]) -> jax.Array:
    """Sigmoid or tanh on each of the equal column blocks of ``z`` ``(B, G*H)``, in one pass.

    Uses ``sigmoid(z) = 0.5 * tanh(z / 2) + 0.5`` so that every block is one ``tanh`` of the whole
    contiguous array: on XLA:CPU this runs several times faster than a ``logistic`` per gate
    slice (``exp`` and a division on strided slices do not vectorize as well).
    """
    hidden = z.shape[-1] // len(tanh_blocks)
    # NumPy, not jnp: a literal per-column constant lets XLA vectorize the fused loop.
    scale = np.repeat(np.array([1.0 if t else 0.5 for t in tanh_blocks], z.dtype), hidden)
    shift = 1.0 - scale  # 0.5 for sigmoid blocks, 0 for tanh blocks
    return jnp.tanh(z * scale) * scale + shift


def rnn_cell(carry: Carry, xw: jax.Array, hw: jax.Array):
    """Elman step. ``xw``: ``(B, H)`` projected input; ``hw``: ``(B, H)`` = ``h @ W + b``.

    Returns ``((h,), h)`` with the new ``h`` of shape ``(B, H)``.
    """
    h = jnp.tanh(xw + hw)
    return (h,), h


def _gate_derivatives(a: jax.Array, tanh_blocks: tuple[bool, ...]) -> jax.Array:
    """Derivative of each block's activation, from the activations ``a`` ``(B, G*H)``.

    ``sigmoid' = a (1 - a)`` and ``tanh' = (1 - a)(1 + a)``: one expression ``(1 - a)(a + k)``
    with a per-column constant ``k``, so the whole array is one vectorized pass.
    """
    hidden = a.shape[-1] // len(tanh_blocks)
    k = np.repeat(np.array([1.0 if t else 0.0 for t in tanh_blocks], a.dtype), hidden)
    return (1.0 - a) * (a + k)


LSTM_BLOCKS = (False, False, True, False)  # i, f, g, o: tanh on g only


def lstm_cell(carry: Carry, xw: jax.Array, hw: jax.Array):
    """LSTM step. ``xw``, ``hw``: ``(B, 4H)`` input and recurrent projections (blocks i, f, g, o).

    Returns ``((h, c), h)`` with the new ``h`` and ``c`` of shape ``(B, H)``.
    """
    _, c = carry
    i, f, g, o = jnp.split(_gate_activations(xw + hw, LSTM_BLOCKS), 4, axis=-1)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), h


def lstm_backprop(prev: Carry, new: Carry, pre: tuple[jax.Array], d_new: Carry):
    """Hand-derived LSTM step backward (the cotangent of ``h`` inside the recurrent matmul aside).

    ``prev``, ``new``: the ``(h, c)`` entering and leaving the step; ``pre``: ``(xw + hw,)``;
    ``d_new``: cotangents of the new ``(h, c)``. Returns ``(d_prev, d_pre)``. Written on the
    whole ``(B, 4H)`` gate array so that XLA emits a few loops per step instead of one per gate,
    which on CPU costs less than the arithmetic it saves.
    """
    (_, c_prev), (_, c), (z,) = prev, new, pre
    a = _gate_activations(z, LSTM_BLOCKS)
    i, f, g, o = jnp.split(a, 4, axis=-1)
    d_h, d_c = d_new
    tanh_c = jnp.tanh(c)
    d_c = d_c + d_h * o * (1.0 - tanh_c * tanh_c)
    d_a = jnp.concatenate([d_c * g, d_c * c_prev, d_c * i, d_h * tanh_c], axis=-1)
    return (jnp.zeros_like(d_h), d_c * f), (d_a * _gate_derivatives(a, LSTM_BLOCKS),)


def gru_cell(carry: Carry, xw: jax.Array, hw: jax.Array):
    """GRU step. ``xw``, ``hw``: ``(B, 3H)`` input and recurrent projections (blocks r, z, n).

    The recurrent bias stays inside the reset product (``r * (h W_n + b_n)``), as in cuDNN.
    Returns ``((h,), h)`` with the new ``h`` of shape ``(B, H)``.
    """
    (h,) = carry
    # The n block of this activation is unused: one whole-array pass beats slicing first.
    r, z, _ = jnp.split(_gate_activations(xw + hw, (False, False, False)), 3, axis=-1)
    n = jnp.tanh(jnp.split(xw, 3, axis=-1)[2] + r * jnp.split(hw, 3, axis=-1)[2])
    h = (1.0 - z) * n + z * h
    return (h,), h


@dataclass(frozen=True)
class CellKind:
    """A cell's elementwise step ``(carry, xw, hw) -> (carry, h)``, gate blocks, carried arrays."""

    step: Callable
    gates: int
    carries: int
    additive: bool  # xw and hw enter only as xw + hw, so their cotangents are equal
    backprop: Callable | None = None  # hand-derived step backward; None: autodiff of ``step``


CELLS: dict[str, CellKind] = {
    "rnn": CellKind(rnn_cell, gates=1, carries=1, additive=True),
    "lstm": CellKind(lstm_cell, gates=4, carries=2, additive=True, backprop=lstm_backprop),
    "gru": CellKind(gru_cell, gates=3, carries=1, additive=False),
}


def _gated(kind: CellKind, carry: Carry, xw_t, hw_t, valid_t):
    """One elementwise cell step; at a padded step (``valid_t`` False) the state is kept."""
    new, out = kind.step(carry, xw_t, hw_t)
    if valid_t is None:
        return new, out
    # The sequence has ended (or, scanning in reverse, not yet begun): nothing may change.
    new = tuple(jnp.where(valid_t, n, o) for n, o in zip(new, carry, strict=True))
    return new, jnp.where(valid_t, out, 0.0)


Pre = tuple[jax.Array, ...]
"""A step's pre-activations: ``(xw + hw,)`` for additive cells, ``(xw, hw)`` for gru."""


def _pre(kind: CellKind, xw: jax.Array, hw: jax.Array) -> Pre:
    """What a step keeps of its projections ``xw``, ``hw`` ``(B, G*H)``."""
    return (xw + hw,) if kind.additive else (xw, hw)


def _step(kind: CellKind, carry: Carry, pre: Pre, valid_t):
    """The cell step from pre-activations (an additive cell needs only their sum)."""
    xw, hw = (pre[0], 0.0) if kind.additive else pre
    return _gated(kind, carry, xw, hw, valid_t)


def _backprop(kind: CellKind, prev: Carry, new: Carry, pre: Pre, d_new: Carry, valid_t):
    """``(d_prev, d_pre)`` of one step, the recurrent matmul's share of ``d_prev[0]`` aside.

    Every cell outputs its new ``h``, so the output's cotangent is already in ``d_new[0]``. At a
    padded step the state passed through unchanged and the pre-activations did not matter.
    """
    if kind.backprop is not None:
        d_prev, d_pre = kind.backprop(prev, new, pre, d_new)
    else:
        _, vjp = jax.vjp(lambda c, p: _step(kind, c, p, None)[0], prev, pre)
        d_prev, d_pre = vjp(d_new)
    if valid_t is None:
        return d_prev, d_pre
    d_prev = tuple(jnp.where(valid_t, d, n) for d, n in zip(d_prev, d_new, strict=True))
    return d_prev, tuple(jnp.where(valid_t, d, 0.0) for d in d_pre)


@dataclass(frozen=True)
class Plan:
    """How a sequence is processed: ``chunk`` steps at a time; ``keep`` pre-activations or not."""

    chunk: int
    keep: bool


def plan_for(kind: CellKind, steps: int, batch: int, hidden: int, itemsize: int) -> Plan:
    """Keep pre-activations while they fit :data:`KEEP_BYTES`, else chunk and recompute."""
    per_step = batch * kind.gates * hidden * itemsize * (1 if kind.additive else 2)
    if steps * per_step <= KEEP_BYTES:
        return Plan(steps, keep=True)
    chunk = max(1, CHUNK_BYTES // per_step)
    # A chunk length dividing ``steps`` avoids a second, shorter loop for the remainder.
    divisor = next((c for c in range(chunk, chunk // 2, -1) if steps % c == 0), chunk)
    return Plan(min(divisor, steps), keep=False)


def _forward(cell: str, plan: Plan, unroll: int, x, params, valid):
    """Run the layer. Returns ``(last carry, (carry after each step, pre or None))``."""
    kind = CELLS[cell]
    w_in, b_in, w_rec, b_rec = params

    def run_chunk(carry, xs):
        (x_c, valid_c), _ = xs
        # One matmul for the chunk's input projection; the input bias is added inside the loop,
        # because a separate pass over the large projection costs more than the loop on CPU.
        xw = x_c @ w_in

        def step(carry, inputs):
            xw_t, valid_t = inputs
            pre = _pre(kind, xw_t + b_in, carry[0] @ w_rec + b_rec)  # the loop's only matmul
            new, _ = _step(kind, carry, pre, valid_t)
            # The states double as outputs (masked once after the loop) and residuals.
            return new, (new, pre if plan.keep else None)

        return jax.lax.scan(step, carry, (xw, valid_c), unroll=unroll)

    init = (jnp.zeros((x.shape[1], w_rec.shape[0]), x.dtype),) * kind.carries
    return chunked_scan(run_chunk, init, (x, valid), x.shape[0], plan.chunk)


def _outputs(h: jax.Array, valid) -> jax.Array:
    """A layer's outputs: its states ``h`` ``(T, B, H)``, zero at padded steps."""
    return h if valid is None else jnp.where(valid, h, 0.0)


def _backward(cell: str, plan: Plan, unroll: int, residuals, cotangents):
    """Backpropagation through time, one chunk at a time from the last.

    The reverse loop carries the state cotangent and does one ``(B, G*H) @ (G*H, H)`` matmul
    per step; the chunk's weight gradients ``sum_t x_t^T d xw_t`` and ``sum_t h_{t-1}^T d hw_t``
    and its input cotangent ``d xw @ w_in.T`` are single matmuls over the chunk's steps.
    """
    x, params, valid, states, pre = residuals
    w_in, b_in, w_rec, b_rec = params
    d_ys, d_last = cotangents
    kind = CELLS[cell]
    w_rec_t, w_in_t = w_rec.T, w_in.T

    def step(d_carry, inputs):
        prev_t, new_t, pre_t, valid_t, d_out_t = inputs
        if d_out_t is not None:  # the output is the new h (zero at padded steps)
            d_out_t = d_out_t if valid_t is None else jnp.where(valid_t, d_out_t, 0.0)
            d_carry = (d_carry[0] + d_out_t, *d_carry[1:])
        d_prev, d_pre = _backprop(kind, prev_t, new_t, pre_t, d_carry, valid_t)
        # For an additive cell d xw == d hw, so only one (T, B, G*H) cotangent is stored.
        return (d_prev[0] + d_pre[-1] @ w_rec_t, *d_prev[1:]), d_pre

    def run_chunk(acc, xs):
        d_carry, grads = acc
        (x_c, valid_c, states_c, pre_c, d_ys_c), first = xs
        # The state entering each step, built per chunk so that no shifted copy of the whole
        # sequence's states is ever allocated.
        prev_c = tuple(
            jnp.concatenate([f[None], s[:-1]]) for f, s in zip(first, states_c, strict=True)
        )
        if pre_c is None:  # recompute with two batched matmuls; no loop needed
            pre_c = _pre(kind, x_c @ w_in + b_in, prev_c[0] @ w_rec + b_rec)
        inputs = (prev_c, states_c, pre_c, valid_c, d_ys_c)
        d_carry, d_pre = jax.lax.scan(step, d_carry, inputs, reverse=True, unroll=unroll)
        d_xw, d_hw = d_pre[0], d_pre[-1]
        chunk_grads = (
            flat(x_c).T @ flat(d_xw),
            d_xw.sum(axis=(0, 1)),
            flat(prev_c[0]).T @ flat(d_hw),
            d_hw.sum(axis=(0, 1)),
        )
        grads = jax.tree.map(jnp.add, grads, chunk_grads)
        return (d_carry, grads), d_xw @ w_in_t

    zero_state = jnp.zeros_like(states[0][0])
    d_init = (zero_state if d_last is None else d_last, *(zero_state,) * (kind.carries - 1))
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    xs = (x, valid, states, pre, d_ys)
    firsts = tuple(shift(s)[:: plan.chunk] for s in states)  # XLA slices before shifting
    (_, grads), d_x = chunked_scan(
        run_chunk, (d_init, zero_grads), xs, x.shape[0], plan.chunk, reverse=True, firsts=firsts
    )
    d_valid = None if valid is None else np.zeros(valid.shape, jax.dtypes.float0)
    return (d_x, grads, d_valid)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _layer(cell: str, plan: Plan, unroll: int, x, params, valid):
    last, (states, _) = _forward(cell, plan, unroll, x, params, valid)
    return _outputs(states[0], valid), last[0]


def _layer_fwd(cell, plan, unroll, x, params, valid):
    # symbolic_zeros: inputs arrive wrapped (CustomVJPPrimal) with a ``perturbed`` flag.
    x, params, valid = jax.tree.map(lambda p: p.value, (x, params, valid))
    last, (states, pre) = _forward(cell, plan, unroll, x, params, valid)
    return (_outputs(states[0], valid), last[0]), (x, params, valid, states, pre)


def _layer_bwd(cell, plan, unroll, residuals, cotangents):
    # An output nobody reads (the sequence under a many-to-one head, or the final state under a
    # many-to-many one) has a symbolic zero cotangent: None here, so no zero buffer is built.
    d_ys, d_last = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    return _backward(cell, plan, unroll, residuals, (d_ys, d_last))


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)


def scan_cell(
    cell: str,
    x: jax.Array,
    w_in: jax.Array,
    b_in: jax.Array,
    w_rec: jax.Array,
    b_rec: jax.Array,
    mask: jax.Array | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    plan: Plan | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Run one recurrent layer over time from the zero state.

    Reverse-mode differentiable through a custom VJP (see :func:`_backward`); forward-mode
    (``jax.jvp``) is not supported.

    Args:
      cell: a key of :data:`CELLS`.
      x: ``(T, B, F)`` inputs, time-major.
      w_in, b_in: ``(F, G*H)`` input kernel and ``(G*H,)`` bias.
      w_rec, b_rec: ``(H, G*H)`` recurrent kernel and ``(G*H,)`` bias.
      mask: optional ``(T, B, 1)`` booleans, False at padded steps.
      reverse: scan from the last step to the first (the backward direction).
      unroll: steps per loop iteration (trades compile time for loop overhead).
      plan: chunking and memory policy; default :func:`plan_for` the shapes.

    Returns:
      ``(outputs (T, B, H), last_h (B, H))``; ``last_h`` is the state after the last valid step
      (after step 0 when ``reverse``).
    """
    kind = CELLS[cell]
    steps, batch = x.shape[:2]
    if plan is None:
        plan = plan_for(kind, steps, batch, w_rec.shape[0], jnp.dtype(x.dtype).itemsize)
    if reverse:  # a reversed sequence through the forward machinery, then flipped back
        x = jnp.flip(x, 0)
        mask = None if mask is None else jnp.flip(mask, 0)
    params = (w_in, b_in, w_rec, b_rec)
    if cell == "lstm" and native.lstm_supported(x.dtype, w_rec.shape[0]):
        ys, last = native_lstm_layer(x, params, mask, plan.chunk if not plan.keep else steps)
    else:
        ys, last = _layer(cell, plan, unroll, x, params, mask)
    return (jnp.flip(ys, 0) if reverse else ys), last
