"""Optax optimizer chains built from ``TrainConfig``: schedule, clipping, algorithm.

The peak learning rate and the weight decay are injected hyperparameters
(``optax.inject_hyperparams``): they live in the optimizer state as arrays rather than in the
compiled update, so that one compiled step serves members with different values (a vmapped
sweep, ``climml.sweep``) and a single run alike. The schedule's shape multiplies the peak rate.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from climml.config import TrainConfig
from climml.errors import ConfigError, expected

INJECTED = ("lr", "weight_decay")  # TrainConfig fields held in the optimizer state


def schedule_shape(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule over ``total_steps`` steps for a peak rate of 1."""
    total = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(1.0)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, decay_steps=total)
    if cfg.schedule == "warmup_cosine":
        warmup = min(cfg.warmup_steps, total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, decay_steps=total)
    if cfg.schedule == "exponential":
        return optax.exponential_decay(1.0, cfg.decay_steps, cfg.decay_rate)
    raise ConfigError(
        expected("train.schedule", "constant, cosine, warmup_cosine or exponential", cfg.schedule)
    )


def learning_rate(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule over ``total_steps`` optimizer steps."""
    if cfg.lr <= 0:
        raise ConfigError(expected("train.lr", "a positive number", cfg.lr))
    shape = schedule_shape(cfg, total_steps)
    return lambda count: cfg.lr * shape(count)


def build_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """Gradient clipping (if ``clip_norm``) followed by the configured optimizer, with the peak
    learning rate and weight decay injected (see ``set_hyperparams``)."""
    learning_rate(cfg, total_steps)  # checks train.lr
    shape = schedule_shape(cfg, total_steps)
    algorithms = {
        "adam": lambda lr, wd: optax.adam(lr),
        "adamw": lambda lr, wd: optax.adamw(lr, weight_decay=wd),
        "sgd": lambda lr, wd: optax.sgd(lr, momentum=cfg.momentum or None),
        "rmsprop": lambda lr, wd: optax.rmsprop(lr, momentum=cfg.momentum or None),
    }
    if cfg.optimizer not in algorithms:
        raise ConfigError(
            expected("train.optimizer", f"one of {sorted(algorithms)}", cfg.optimizer)
        )
    if cfg.clip_norm is not None and cfg.clip_norm <= 0:
        raise ConfigError(expected("train.clip_norm", "a positive number or null", cfg.clip_norm))

    def chain(lr: Any, weight_decay: Any) -> optax.GradientTransformation:
        parts = [] if cfg.clip_norm is None else [optax.clip_by_global_norm(cfg.clip_norm)]
        parts.append(algorithms[cfg.optimizer](lambda count: lr * shape(count), weight_decay))
        return optax.chain(*parts)

    return optax.inject_hyperparams(chain)(lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """``opt_state`` of ``build_optimizer`` with the injected ``lr`` / ``weight_decay`` replaced
    (scalars; traced values inside ``jax.vmap`` give each member its own)."""
    unknown = sorted(set(values) - set(INJECTED))
    if unknown:
        raise ConfigError(expected("hyperparameter", f"one of {list(INJECTED)}", unknown))
    hyper = dict(opt_state.hyperparams)
    for name, value in values.items():
        hyper[name] = jnp.asarray(value, jnp.asarray(hyper[name]).dtype)
    return opt_state._replace(hyperparams=hyper)
