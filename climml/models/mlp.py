"""Multilayer perceptron baseline: the whole input window flattened into one vector."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
from flax import nnx

from climml.models._activations import activation
from climml.models._dense import DenseHead
from climml.models.registry import register
from climml.types import IOSpec


@dataclass(frozen=True)
class MLPConfig:
    name: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    dropout: float = 0.0


class MLP(nnx.Module):
    """``(B, *input_shape) → (B, *output_shape)`` through dense layers."""

    def __init__(self, cfg: MLPConfig, spec: IOSpec, rngs: nnx.Rngs):
        act = activation(cfg.activation)
        features = math.prod(spec.input_shape)
        self.head = DenseHead(features, cfg.hidden, spec.output_shape, act, cfg.dropout, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(x.reshape(x.shape[0], -1))


@register("mlp", MLPConfig)
def build_mlp(cfg: MLPConfig, spec: IOSpec, rngs: nnx.Rngs) -> MLP:
    return MLP(cfg, spec, rngs)
