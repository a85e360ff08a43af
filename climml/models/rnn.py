"""Recurrent networks: stacked, optionally bidirectional RNN, LSTM and GRU with a dense head.

The cells, their equations and how a layer runs over time and is differentiated live in
:mod:`climml.models._recurrence`; this module builds networks from them.

The LSTM forget-gate bias starts at 1 (Jozefowicz et al. 2015), so early in training the cell
state is carried rather than forgotten, which keeps gradients alive through long sequences.

Sequences of different lengths are padded to a common ``T`` and described by ``lengths``: at a
padded step the state is carried unchanged and the output is zero, so padding never changes what
the model predicts. The backward direction of a bidirectional layer starts from the zero state at
each sequence's own last step for the same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models._recurrence import CELLS, scan_cell
from climml.models.registry import register
from climml.types import IOSpec


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
        weights = (self.w_in[...], self.b_in[...], self.w_rec[...], self.b_rec[...])
        return scan_cell(self.cell, x, *weights, mask, reverse=reverse, unroll=self.unroll)


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
