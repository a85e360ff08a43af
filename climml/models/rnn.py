"""Recurrent networks: vanilla RNN, LSTM and GRU cells unrolled with ``jax.lax.scan``.

The cells are pure elementwise functions of one time step, ``cell(carry, xw, hw)``. The input
projection ``xw = x @ w_in`` is computed for *all* steps in one matmul before the scan (it does
not depend on the recurrent state), so the scan body holds only the recurrent matmul
``hw = h @ w_rec + b_rec`` and the gate arithmetic. Equations (gate blocks ordered as in PyTorch
and cuDNN, both biases kept, so weights map one to one)::

    rnn   h' = tanh(xw + hw)
    lstm  i, f, g, o = split(xw + hw)          (Hochreiter & Schmidhuber 1997; Gers et al. 2000)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
          h' = sigmoid(o) * tanh(c')
    gru   r_x, z_x, n_x = split(xw);  r_h, z_h, n_h = split(hw)    (Cho et al. 2014, "reset after")
          r = sigmoid(r_x + r_h);  z = sigmoid(z_x + z_h);  n = tanh(n_x + r * n_h)
          h' = (1 - z) * n + z * h

Backpropagation through time is a custom VJP that mirrors the forward structure: the reverse
scan does one matmul per step and the weight gradients are single matmuls over all steps.

The LSTM forget-gate bias starts at 1 (Jozefowicz et al. 2015), so early in training the cell
state is carried rather than forgotten, which keeps gradients alive through long sequences.

Sequences of different lengths are padded to a common ``T`` and described by ``lengths``: at a
padded step the state is carried unchanged and the output is zero, so padding never changes what
the model predicts. The backward direction of a bidirectional layer starts from the zero state at
each sequence's own last step for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models.registry import IOSpec, register

Carry = tuple[jax.Array, ...]
"""Recurrent state: ``(h,)`` for rnn and gru, ``(h, c)`` for lstm; each ``(B, H)``."""


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


def lstm_cell(carry: Carry, xw: jax.Array, hw: jax.Array):
    """LSTM step. ``xw``, ``hw``: ``(B, 4H)`` input and recurrent projections (blocks i, f, g, o).

    Returns ``((h, c), h)`` with the new ``h`` and ``c`` of shape ``(B, H)``.
    """
    _, c = carry
    i, f, g, o = jnp.split(_gate_activations(xw + hw, (False, False, True, False)), 4, axis=-1)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), h


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


CELLS: dict[str, CellKind] = {
    "rnn": CellKind(rnn_cell, gates=1, carries=1, additive=True),
    "lstm": CellKind(lstm_cell, gates=4, carries=2, additive=True),
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


def _zero_carry(kind: CellKind, xw: jax.Array, w_rec: jax.Array) -> Carry:
    return (jnp.zeros((xw.shape[1], w_rec.shape[0]), xw.dtype),) * kind.carries


def _scan(cell, reverse, unroll, xw, b_in, w_rec, b_rec, valid, *, keep: bool):
    """Forward scan; with ``keep`` also returns the carry entering each step (the residual)."""
    kind = CELLS[cell]

    def step(carry, inputs):
        xw_t, valid_t = inputs
        hw_t = carry[0] @ w_rec + b_rec  # the only matmul inside the loop
        new, out = _gated(kind, carry, xw_t + b_in, hw_t, valid_t)
        return new, ((out, carry) if keep else out)

    init = _zero_carry(kind, xw, w_rec)
    return jax.lax.scan(step, init, (xw, valid), reverse=reverse, unroll=unroll)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan_layer(cell, reverse, unroll, xw, b_in, w_rec, b_rec, valid):
    last, ys = _scan(cell, reverse, unroll, xw, b_in, w_rec, b_rec, valid, keep=False)
    return ys, last[0]


def _scan_layer_fwd(cell, reverse, unroll, xw, b_in, w_rec, b_rec, valid):
    last, (ys, prev) = _scan(cell, reverse, unroll, xw, b_in, w_rec, b_rec, valid, keep=True)
    return (ys, last[0]), (xw, b_in, w_rec, b_rec, valid, prev)


def _scan_layer_bwd(cell, reverse, unroll, residuals, cotangents):
    """Backpropagation through time with the weight gradients hoisted out of the loop.

    The reverse scan carries only the state cotangent (one ``(B, G*H) @ (G*H, H)`` matmul per
    step) and emits each step's ``d hw``; the recurrent kernel's gradient ``sum_t h_{t-1}^T d hw_t``
    is then a single matmul over all steps, as cuDNN does, instead of one per step. Only the
    state entering each step is stored; ``hw`` and the gates are recomputed from it.
    """
    xw, b_in, w_rec, b_rec, valid, prev = residuals
    d_ys, d_last = cotangents
    kind = CELLS[cell]
    w_rec_t = w_rec.T

    def step(d_carry, inputs):
        prev_t, xw_t, valid_t, d_out_t = inputs
        # Recomputing hw_t costs one small matmul; storing it would need a (T, B, G*H) buffer
        # per layer, and measured no faster on CPU (benchmarks/RESULTS.md).
        hw_t = prev_t[0] @ w_rec + b_rec
        xw_t = xw_t + b_in
        if kind.additive:  # d xw_t == d hw_t: differentiate (and store) only one of them
            _, vjp = jax.vjp(lambda c, b: _gated(kind, c, xw_t, b, valid_t), prev_t, hw_t)
            d_prev, d_hw_t = vjp((d_carry, d_out_t))
            d_xw_t = None
        else:
            _, vjp = jax.vjp(lambda c, a, b: _gated(kind, c, a, b, valid_t), prev_t, xw_t, hw_t)
            d_prev, d_xw_t, d_hw_t = vjp((d_carry, d_out_t))
        return (d_prev[0] + d_hw_t @ w_rec_t, *d_prev[1:]), (d_xw_t, d_hw_t)

    d_init = (d_last, *(jnp.zeros_like(d_last) for _ in range(kind.carries - 1)))
    inputs = (prev, xw, valid, d_ys)
    _, (d_xw, d_hw) = jax.lax.scan(step, d_init, inputs, reverse=not reverse, unroll=unroll)
    hidden, width = w_rec.shape
    # sum_t h_{t-1}^T d hw_t as one (H, T*B) @ (T*B, G*H) matmul.
    d_w_rec = (d_hw.reshape(-1, width).T @ prev[0].reshape(-1, hidden)).T
    d_xw = d_hw if kind.additive else d_xw
    d_valid = None if valid is None else np.zeros(valid.shape, jax.dtypes.float0)
    return d_xw, d_xw.sum(axis=(0, 1)), d_w_rec, d_hw.sum(axis=(0, 1)), d_valid


_scan_layer.defvjp(_scan_layer_fwd, _scan_layer_bwd)


def scan_cell(
    cell: str,
    xw: jax.Array,
    b_in: jax.Array,
    w_rec: jax.Array,
    b_rec: jax.Array,
    mask: jax.Array | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """Run ``cell`` over time with ``lax.scan``, from the zero state.

    Reverse-mode differentiable through a custom VJP (see :func:`_scan_layer_bwd`); forward-mode
    (``jax.jvp``) is not supported.

    Args:
      cell: a key of :data:`CELLS`.
      xw: ``(T, B, G*H)`` input projection ``x @ w_in`` of every step (time-major).
      b_in: ``(G*H,)`` input bias, added inside the loop: a separate pass over the large ``xw``
        costs more memory traffic than the whole scan on CPU.
      w_rec, b_rec: ``(H, G*H)`` recurrent kernel and ``(G*H,)`` bias.
      mask: optional ``(T, B, 1)`` booleans, False at padded steps.
      reverse: scan from the last step to the first (the backward direction).
      unroll: steps per scan iteration (trades compile time for loop overhead).

    Returns:
      ``(outputs (T, B, H), last_h (B, H))``; ``last_h`` is the state after the last valid step
      (after step 0 when ``reverse``).
    """
    return _scan_layer(cell, reverse, unroll, xw, b_in, w_rec, b_rec, mask)


class RecurrentLayer(nnx.Module):
    """One direction of one recurrent layer: input projection plus a scanned cell.

    Initialization follows Keras: Glorot-uniform input kernel, orthogonal recurrent kernel, zero
    biases except the LSTM forget gate (1).
    """

    def __init__(self, cell: str, in_features: int, hidden: int, *, unroll: int, rngs: nnx.Rngs):
        gates = CELLS[cell].gates
        self.cell = cell
        self.unroll = unroll
        self.w_in = nnx.Param(
            nnx.initializers.glorot_uniform()(rngs.params(), (in_features, gates * hidden))
        )
        self.w_rec = nnx.Param(
            nnx.initializers.orthogonal()(rngs.params(), (hidden, gates * hidden))
        )
        b_in = jnp.zeros((gates * hidden,))
        if cell == "lstm":
            b_in = b_in.at[hidden : 2 * hidden].set(1.0)
        self.b_in = nnx.Param(b_in)
        self.b_rec = nnx.Param(jnp.zeros((gates * hidden,)))

    def __call__(self, x: jax.Array, mask: jax.Array | None, *, reverse: bool = False):
        """``x``: ``(T, B, F)`` time-major; returns ``(outputs (T, B, H), last_h (B, H))``."""
        xw = x @ self.w_in[...]  # every step's input projection in one matmul
        w_rec, b_rec = self.w_rec[...], self.b_rec[...]
        return scan_cell(
            self.cell, xw, self.b_in[...], w_rec, b_rec, mask, reverse=reverse, unroll=self.unroll
        )


def _step_mask(lengths: jax.Array | None, batch: int, steps: int) -> jax.Array | None:
    """``(T, B, 1)`` booleans, True where step ``t < lengths[b]``; ``None`` when no lengths."""
    if lengths is None:
        return None
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        found = f"{lengths.dtype}{lengths.shape}"
        raise DataError(expected("lengths", f"integer array of shape ({batch},)", found))
    return (jnp.arange(steps)[:, None] < lengths[None, :])[..., None]


class RNN(nnx.Module):
    """Stacked, optionally bidirectional recurrent network with a dense head.

    Input ``x``: ``(B, T, *spatial, C)``; everything after the time axis is flattened into
    ``F`` features per step. With ``head="many_to_one"`` the dense head reads the final state
    (forward state after the last valid step, concatenated with the backward state at step 0 when
    bidirectional) and returns ``(B, *out_shape)``. With ``head="many_to_many"`` it reads every
    step and returns ``(B, T, *out_shape[1:])`` (zeros-in at padded steps).
    """

    def __init__(
        self,
        cell: str,
        in_features: int,
        hidden: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        bidirectional: bool = False,
        head: str = "many_to_one",
        unroll: int = 1,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.head_kind = head
        self.out_shape = tuple(out_shape)
        directions = 2 if bidirectional else 1
        forward, backward = [], []
        width = in_features
        for size in hidden:
            forward.append(RecurrentLayer(cell, width, size, unroll=unroll, rngs=rngs))
            if bidirectional:
                backward.append(RecurrentLayer(cell, width, size, unroll=unroll, rngs=rngs))
            width = directions * size
        self.forward = nnx.List(forward)
        self.backward = nnx.List(backward)
        per_step = self.out_shape if head == "many_to_one" else self.out_shape[1:]
        self.head = nnx.Linear(width, math.prod(per_step), rngs=rngs)

    def encode(self, x: jax.Array, lengths: jax.Array | None = None):
        """Recurrent features. ``x``: ``(B, T, *rest)``; ``lengths``: optional ``(B,)`` ints.

        Returns ``(outputs (B, T, D*H), last (B, D*H))`` of the top layer, ``D`` directions.
        """
        if x.ndim < 3 or math.prod(x.shape[2:]) != self.in_features:
            raise DataError(
                expected("x", f"(batch, steps, ...) with {self.in_features} features", x.shape)
            )
        steps = x.shape[1]
        seq = jnp.swapaxes(x.reshape(x.shape[0], steps, -1), 0, 1)  # time-major for the scan
        mask = _step_mask(lengths, x.shape[0], steps)
        last = None
        for i, fwd in enumerate(self.forward):
            seq_f, last_f = fwd(seq, mask)
            if not self.backward:
                seq, last = seq_f, last_f
                continue
            seq_b, last_b = self.backward[i](seq, mask, reverse=True)
            seq = jnp.concatenate([seq_f, seq_b], axis=-1)
            last = jnp.concatenate([last_f, last_b], axis=-1)
        return jnp.swapaxes(seq, 0, 1), last

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """Forecast from ``x`` ``(B, T, *rest)``; see the class docstring for output shapes."""
        outputs, last = self.encode(x, lengths)
        if self.head_kind == "many_to_one":
            return self.head(last).reshape(x.shape[0], *self.out_shape)
        return self.head(outputs).reshape(*outputs.shape[:2], *self.out_shape[1:])


HEADS = ("many_to_one", "many_to_many")


@dataclass(frozen=True)
class RecurrentConfig:
    """Hyperparameters of the recurrent family; ``name`` picks the cell (rnn, lstm or gru).

    hidden: state size of each stacked layer, bottom first.
    bidirectional: add a reversed scan per layer and concatenate both directions.
    head: ``many_to_one`` (final state -> output_shape) or ``many_to_many`` (every step; needs
        ``output_shape[0] == input_steps``).
    unroll: scan steps per loop iteration (speed knob; results are identical).
    """

    name: str = "rnn"
    hidden: tuple[int, ...] = (64,)
    bidirectional: bool = False
    head: str = "many_to_one"
    unroll: int = 1


@dataclass(frozen=True)
class LSTMConfig(RecurrentConfig):
    name: str = "lstm"


@dataclass(frozen=True)
class GRUConfig(RecurrentConfig):
    name: str = "gru"


def _check(cfg: RecurrentConfig, spec: IOSpec) -> None:
    """Raise ``ConfigError`` naming the first field of ``cfg`` that cannot build for ``spec``."""
    if cfg.name not in CELLS:
        raise ConfigError(expected("model.name", f"one of {sorted(CELLS)}", repr(cfg.name)))
    if not cfg.hidden or any(not isinstance(h, int) or h < 1 for h in cfg.hidden):
        raise ConfigError(
            expected("model.hidden", "non-empty tuple of positive ints", repr(cfg.hidden))
        )
    if cfg.head not in HEADS:
        raise ConfigError(expected("model.head", f"one of {list(HEADS)}", repr(cfg.head)))
    if not isinstance(cfg.unroll, int) or cfg.unroll < 1:
        raise ConfigError(expected("model.unroll", "positive int", repr(cfg.unroll)))
    if len(spec.input_shape) < 2:
        raise ConfigError(expected("input_shape", "(steps, ..., channels)", spec.input_shape))
    if cfg.head == "many_to_many" and spec.output_shape[:1] != spec.input_shape[:1]:
        raise ConfigError(
            expected(
                "model.head",
                "output steps == input steps for many_to_many",
                f"{spec.output_shape[:1]} vs {spec.input_shape[:1]}",
            )
        )


@register("rnn", RecurrentConfig)
@register("lstm", LSTMConfig)
@register("gru", GRUConfig)
def build_rnn(cfg: RecurrentConfig, spec: IOSpec, rngs: nnx.Rngs) -> RNN:
    """Build the recurrent net of ``cfg`` mapping ``spec.input_shape`` to ``spec.output_shape``."""
    _check(cfg, spec)
    return RNN(
        cfg.name,
        math.prod(spec.input_shape[1:]),
        tuple(cfg.hidden),
        spec.output_shape,
        bidirectional=cfg.bidirectional,
        head=cfg.head,
        unroll=cfg.unroll,
        rngs=rngs,
    )
