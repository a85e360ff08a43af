"""The dense part shared by the CNN and the MLP: hidden layers, dropout, a linear output."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
from flax import nnx


class DenseHead(nnx.Module):
    """``(B, features) → (B, *output_shape)``: ``[linear → act → dropout] × n → linear``."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        output_shape: tuple[int, ...],
        act: Callable[[jax.Array], jax.Array],
        dropout: float,
        rngs: nnx.Rngs,
    ):
        layers = []
        for units in hidden:
            layers.append(nnx.Linear(in_features, units, rngs=rngs))
            in_features = units
        self.layers = nnx.List(layers)
        self.act = act
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.output_shape = output_shape
        self.out = nnx.Linear(in_features, math.prod(output_shape), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = self.dropout(self.act(layer(x)))
        return self.out(x).reshape(x.shape[0], *self.output_shape)
