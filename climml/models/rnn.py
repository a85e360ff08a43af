"""Recurrent networks: vanilla RNN, LSTM and GRU cells unrolled with ``jax.lax.scan``.

The cells are pure functions of one time step. What a cell sees of the input, ``xw = x @ w_in +
b_in``, is computed for *all* steps in one matmul before the scan (the input projection does not
depend on the recurrent state), so the scan body holds only the recurrent matmul ``h @ w_rec`` and
elementwise gate arithmetic. Equations (gate blocks ordered as in PyTorch and cuDNN, so weights map
one to one)::

    rnn   h' = tanh(xw + h W + b)
    lstm  i, f, g, o = split(xw + h W + b)     (Hochreiter & Schmidhuber 1997; Gers et al. 2000)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
          h' = sigmoid(o) * tanh(c')
    gru   r, z, n_x = split(xw);  r_h, z_h, n_h = split(h W + b)   (Cho et al. 2014, "reset after")
          r = sigmoid(r + r_h);  z = sigmoid(z + z_h);  n = tanh(n_x + r * n_h)
          h' = (1 - z) * n + z * h

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

import jax
import jax.numpy as jnp
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models.registry import IOSpec, register

Carry = tuple[jax.Array, ...]
"""Recurrent state: ``(h,)`` for rnn and gru, ``(h, c)`` for lstm; each ``(B, H)``."""


def rnn_cell(carry: Carry, xw: jax.Array, w_rec: jax.Array, b_rec: jax.Array):
    """Elman step. ``xw``: ``(B, H)`` projected input; ``w_rec``: ``(H, H)``; ``b_rec``: ``(H,)``.

    Returns ``(new_carry, h)`` with ``h`` of shape ``(B, H)``.
    """
    (h,) = carry
    h = jnp.tanh(xw + h @ w_rec + b_rec)
    return (h,), h


def lstm_cell(carry: Carry, xw: jax.Array, w_rec: jax.Array, b_rec: jax.Array):
    """LSTM step. ``xw``: ``(B, 4H)`` projected input (blocks i, f, g, o); ``w_rec``: ``(H, 4H)``.

    Returns ``((h, c), h)`` with ``h`` and ``c`` of shape ``(B, H)``.
    """
    h, c = carry
    i, f, g, o = jnp.split(xw + h @ w_rec + b_rec, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def gru_cell(carry: Carry, xw: jax.Array, w_rec: jax.Array, b_rec: jax.Array):
    """GRU step. ``xw``: ``(B, 3H)`` projected input (blocks r, z, n); ``w_rec``: ``(H, 3H)``.

    The recurrent bias stays inside the reset product (``r * (h W_n + b_n)``), as in cuDNN.
    Returns ``((h,), h)`` with ``h`` of shape ``(B, H)``.
    """
    (h,) = carry
    r_x, z_x, n_x = jnp.split(xw, 3, axis=-1)
    r_h, z_h, n_h = jnp.split(h @ w_rec + b_rec, 3, axis=-1)
    r = jax.nn.sigmoid(r_x + r_h)
    z = jax.nn.sigmoid(z_x + z_h)
    n = jnp.tanh(n_x + r * n_h)
    h = (1.0 - z) * n + z * h
    return (h,), h


@dataclass(frozen=True)
class CellKind:
    """A cell function with its number of gate blocks and carried arrays."""

    step: Callable
    gates: int
    carries: int


CELLS: dict[str, CellKind] = {
    "rnn": CellKind(rnn_cell, gates=1, carries=1),
    "lstm": CellKind(lstm_cell, gates=4, carries=2),
    "gru": CellKind(gru_cell, gates=3, carries=1),
}


def scan_cell(
    cell: str,
    xw: jax.Array,
    w_rec: jax.Array,
    b_rec: jax.Array,
    mask: jax.Array | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """Run ``cell`` over time with ``lax.scan``, from the zero state.

    Args:
      cell: a key of :data:`CELLS`.
      xw: ``(T, B, G*H)`` input projection of every step (time-major).
      w_rec, b_rec: ``(H, G*H)`` recurrent kernel and ``(G*H,)`` bias.
      mask: optional ``(T, B, 1)`` booleans, False at padded steps.
      reverse: scan from the last step to the first (the backward direction).
      unroll: steps per scan iteration (trades compile time for loop overhead).

    Returns:
      ``(outputs (T, B, H), last_h (B, H))``; ``last_h`` is the state after the last valid step
      (after step 0 when ``reverse``).
    """
    kind = CELLS[cell]
    hidden = w_rec.shape[0]
    zeros = jnp.zeros((xw.shape[1], hidden), xw.dtype)
    init = (zeros,) * kind.carries

    if mask is None:

        def step(carry, xw_t):
            return kind.step(carry, xw_t, w_rec, b_rec)

        carry, ys = jax.lax.scan(step, init, xw, reverse=reverse, unroll=unroll)
        return ys, carry[0]

    def masked_step(carry, inputs):
        xw_t, valid = inputs
        new, h = kind.step(carry, xw_t, w_rec, b_rec)
        # A padded step keeps the state: the sequence has ended (or, reversed, not yet begun).
        new = tuple(jnp.where(valid, n, o) for n, o in zip(new, carry, strict=True))
        return new, jnp.where(valid, h, 0.0)

    carry, ys = jax.lax.scan(masked_step, init, (xw, mask), reverse=reverse, unroll=unroll)
    return ys, carry[0]


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
        xw = x @ self.w_in[...] + self.b_in[...]  # every step's input projection in one matmul
        return scan_cell(
            self.cell,
            xw,
            self.w_rec[...],
            self.b_rec[...],
            mask,
            reverse=reverse,
            unroll=self.unroll,
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
