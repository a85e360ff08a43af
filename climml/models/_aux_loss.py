"""Loss terms a model computes in its own forward pass (e.g. a VAE's KL divergence).

A model stores such a term in an :class:`AuxLoss` variable; the train step adds
:func:`aux_loss` of the model to the configured loss, so any model family can regularize itself
without the training code knowing about it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class AuxLoss(nnx.Variable):
    """A scalar loss term set by the model's last forward pass."""


def aux_loss(model: nnx.Module) -> jax.Array:
    """Sum of the model's :class:`AuxLoss` terms from its last forward pass (0 if none)."""
    terms = jax.tree.leaves(nnx.state(model, AuxLoss))
    return sum(terms, jnp.zeros(()))
