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


# ----------------------------------------------------------------- segmentation / classification
# pred: logits (B, L, *grid, K), class axis last; batch["y"]: class ids (B, L, *grid).


def _class_weights(cfg: TrainConfig, num_classes: int) -> jax.Array:
    """``train.class_weights`` as a (K,) array (all ones when unset)."""
    if cfg.class_weights is None:
        return jnp.ones(num_classes)
    if len(cfg.class_weights) != num_classes:
        want = f"{num_classes} weights (one per class)"
        raise ConfigError(expected("train.class_weights", want, len(cfg.class_weights)))
    return jnp.asarray(cfg.class_weights, jnp.float32)


def _onehot_targets(pred: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """One-hot targets (B, L, *grid, K); invalid points get class 0 (their weight is 0 anyway)."""
    labels = jnp.where(batch["y_valid"] > 0, batch["y"], 0).astype(jnp.int32)
    return jax.nn.one_hot(labels, pred.shape[-1], dtype=pred.dtype)


def cross_entropy(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Pixel softmax cross-entropy, weighted by ``train.class_weights`` of each pixel's true class.

    ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over valid points, the convention of PyTorch's
    ``CrossEntropyLoss(weight=w)``: up-weighting a rare class (cyclones, < 1% of pixels) makes
    its errors count as if it were more frequent.
    """
    onehot = _onehot_targets(pred, batch)
    per_point = -jnp.sum(onehot * jax.nn.log_softmax(pred, axis=-1), axis=-1)
    class_w = onehot @ _class_weights(cfg, pred.shape[-1])
    return _weighted_mean(per_point, class_w * _point_weights(batch))


def _soft_overlaps(pred, batch, cfg) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Per-class (K,) soft intersection, sum of probabilities, sum of targets; class weights."""
    probs = jax.nn.softmax(pred, axis=-1)
    onehot = _onehot_targets(pred, batch)
    w = _point_weights(batch)[..., None]
    axes = tuple(range(pred.ndim - 1))
    inter = jnp.sum(w * probs * onehot, axis=axes)
    cw = _class_weights(cfg, pred.shape[-1])
    return inter, jnp.sum(w * probs, axis=axes), jnp.sum(w * onehot, axis=axes), cw


SMOOTH = 1.0  # added to numerator and denominator: an absent class predicted absent scores 1


def jaccard(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Soft Jaccard (IoU) loss: 1 - class-weighted mean of ``(I + s) / (P + T - I + s)``.

    ``I = sum p t``, ``P = sum p``, ``T = sum t`` over all valid points of the batch, per class,
    with softmax probabilities ``p`` and one-hot targets ``t`` (Rahman & Wang 2016).
    """
    inter, p, t, cw = _soft_overlaps(pred, batch, cfg)
    iou = (inter + SMOOTH) / (p + t - inter + SMOOTH)
    return 1.0 - jnp.sum(cw * iou) / jnp.sum(cw)


def dice(pred: jax.Array, batch: Mapping[str, jax.Array], cfg: TrainConfig) -> jax.Array:
    """Soft Dice loss: 1 - class-weighted mean of ``(2 I + s) / (P + T + s)`` (Milletari 2016)."""
    inter, p, t, cw = _soft_overlaps(pred, batch, cfg)
    score = (2.0 * inter + SMOOTH) / (p + t + SMOOTH)
    return 1.0 - jnp.sum(cw * score) / jnp.sum(cw)


LOSSES: dict[str, LossFn] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "cross_entropy": cross_entropy,
    "jaccard": jaccard,
    "dice": dice,
}


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
