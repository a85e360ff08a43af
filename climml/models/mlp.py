"""Multilayer perceptron baseline: the whole input window flattened into one vector."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
from flax import nnx

from climml.models._activations import activation
from climml.models.registry import IOSpec, register


@dataclass(frozen=True)
class MLPConfig:
    name: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    dropout: float = 0.0


class MLP(nnx.Module):
    """``(B, *input_shape) → (B, *output_shape)`` through dense layers."""

    def __init__(self, cfg: MLPConfig, spec: IOSpec, rngs: nnx.Rngs):
        self.act = activation(cfg.activation)
        width = math.prod(spec.input_shape)
        layers = []
        for units in cfg.hidden:
            layers.append(nnx.Linear(width, units, rngs=rngs))
            width = units
        self.layers = nnx.List(layers)
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.output_shape = spec.output_shape
        self.head = nnx.Linear(width, math.prod(spec.output_shape), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b = x.shape[0]
        x = x.reshape(b, -1)
        for layer in self.layers:
            x = self.dropout(self.act(layer(x)))
        return self.head(x).reshape(b, *self.output_shape)


@register("mlp", MLPConfig)
def build_mlp(cfg: MLPConfig, spec: IOSpec, rngs: nnx.Rngs) -> MLP:
    return MLP(cfg, spec, rngs)
