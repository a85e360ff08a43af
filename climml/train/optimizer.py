"""Optax optimizer chains built from ``TrainConfig``: schedule, clipping, algorithm."""

from __future__ import annotations

import optax

from climml.config import TrainConfig
from climml.errors import ConfigError, expected


def learning_rate(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule over ``total_steps`` optimizer steps."""
    if cfg.lr <= 0:
        raise ConfigError(expected("train.lr", "a positive number", cfg.lr))
    total = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, decay_steps=total)
    if cfg.schedule == "warmup_cosine":
        warmup = min(cfg.warmup_steps, total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, decay_steps=total)
    if cfg.schedule == "exponential":
        return optax.exponential_decay(cfg.lr, cfg.decay_steps, cfg.decay_rate)
    raise ConfigError(
        expected("train.schedule", "constant, cosine, warmup_cosine or exponential", cfg.schedule)
    )


def build_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """Gradient clipping (if ``clip_norm``) followed by the configured optimizer."""
    lr = learning_rate(cfg, total_steps)
    algorithms = {
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: optax.sgd(lr, momentum=cfg.momentum or None),
        "rmsprop": lambda: optax.rmsprop(lr, momentum=cfg.momentum or None),
    }
    if cfg.optimizer not in algorithms:
        raise ConfigError(
            expected("train.optimizer", f"one of {sorted(algorithms)}", cfg.optimizer)
        )
    parts = []
    if cfg.clip_norm is not None:
        if cfg.clip_norm <= 0:
            raise ConfigError(
                expected("train.clip_norm", "a positive number or null", cfg.clip_norm)
            )
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(algorithms[cfg.optimizer]())
    return optax.chain(*parts)
