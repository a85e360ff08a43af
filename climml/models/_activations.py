"""Activation functions selectable by name from configs."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from climml.errors import ConfigError, expected

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
}


def activation(name: str, field: str = "model.activation") -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (ConfigError naming ``field`` if unknown)."""
    if name not in ACTIVATIONS:
        raise ConfigError(expected(field, f"one of {sorted(ACTIVATIONS)}", repr(name)))
    return ACTIVATIONS[name]
