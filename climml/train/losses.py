"""Training losses, selectable by name and combinable with weights.

Every loss has the signature ``fn(pred, batch, cfg) -> scalar`` where ``batch`` is the dict of
device arrays the train step sees (``x``, ``y``, ``y_valid``, ``weight``): padded samples
(``weight == 0``) and missing targets (``y_valid == 0``) contribute nothing, so fixed batch shapes
never bias the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from climml.config import TrainConfig
from climml.errors import ConfigError, expected

LossFn = Callable[[jax.Array, Mapping[str, jax.Array], TrainConfig], jax.Array]


def _point_weights(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Per-element weights of ``y``: sample weight times target validity."""
    w = batch["weight"].reshape((-1,) + (1,) * (batch["y"].ndim - 1))
    return w * batch["y_valid"]


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def mse(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Mean squared error over valid target elements."""
    return _weighted_mean(jnp.square(pred - batch["y"]), _point_weights(batch))


def mae(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Mean absolute error over valid target elements."""
    return _weighted_mean(jnp.abs(pred - batch["y"]), _point_weights(batch))


def huber(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Huber loss with threshold ``train.huber_delta`` (quadratic inside, linear outside)."""
    values = optax.huber_loss(pred, batch["y"], delta=cfg.huber_delta)
    return _weighted_mean(values, _point_weights(batch))


LOSSES: dict[str, LossFn] = {"mse": mse, "mae": mae, "huber": huber}


def loss_terms(cfg: TrainConfig) -> dict[str, float]:
    """``train.loss`` as ``{name: weight}``, checked against the registry."""
    terms = {cfg.loss: 1.0} if isinstance(cfg.loss, str) else dict(cfg.loss)
    if not terms:
        raise ConfigError(expected("train.loss", "a loss name or {name: weight}", "{}"))
    for name in terms:
        if name not in LOSSES:
            raise ConfigError(expected("train.loss", f"names from {sorted(LOSSES)}", repr(name)))
    return terms


def make_loss(cfg: TrainConfig) -> Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]:
    """The (weighted sum of) configured losses as ``loss(pred, batch) -> scalar``."""
    terms = loss_terms(cfg)

    def loss(pred: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
        return sum(w * LOSSES[name](pred, batch, cfg) for name, w in terms.items())

    return loss
