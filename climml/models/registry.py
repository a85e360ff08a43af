"""Model registry: maps a config's ``model.name`` to its hyperparameter dataclass and builder.

Each model family registers itself with :func:`register`::

    @dataclass(frozen=True)
    class CNNConfig:
        name: str = "cnn"
        filters: tuple[int, ...] = (32, 32)

    @register("cnn", CNNConfig)
    def build_cnn(cfg: CNNConfig, spec: IOSpec, rngs: nnx.Rngs) -> nnx.Module: ...

``FAMILIES`` names the module of every built-in model; a module is imported the first time one of
its names is looked up, so parsing a CNN config does not import the recurrent, U-Net or native
LSTM code (nor their JAX extensions). A new family is a file with a ``@register`` call plus its
line in ``FAMILIES``; code outside the package can also call ``register`` itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from flax import nnx

from climml.errors import ConfigError, expected
from climml.types import IOSpec

Builder = Callable[[Any, IOSpec, nnx.Rngs], nnx.Module]

_REGISTRY: dict[str, tuple[type, Builder]] = {}

# model name -> module whose ``@register`` call defines it (imported on first lookup)
FAMILIES: dict[str, str] = {
    "autoencoder": "climml.models.autoencoder",
    "cnn": "climml.models.cnn",
    "gru": "climml.models.rnn",
    "lstm": "climml.models.rnn",
    "mlp": "climml.models.mlp",
    "rnn": "climml.models.rnn",
    "temporal_cnn": "climml.models.temporal_cnn",
    "unet": "climml.models.unet",
}


def register(name: str, config_cls: type) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` with its config dataclass."""

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = (config_cls, builder)
        return builder

    return decorate


def _load(name: str) -> None:
    """Import the module that registers ``name``, if it is a built-in not registered yet."""
    if name not in _REGISTRY and name in FAMILIES:
        importlib.import_module(FAMILIES[name])


def _load_families() -> None:
    """Import every built-in family (for listings that need every config class)."""
    for name in FAMILIES:
        _load(name)


def names() -> list[str]:
    """Known model names (built-in and registered), sorted; imports no family."""
    return sorted(set(FAMILIES) | set(_REGISTRY))


def config_class(name: str) -> type:
    """The hyperparameter dataclass of model ``name`` (``ConfigError`` if unknown)."""
    _load(name)
    if name not in _REGISTRY:
        raise ConfigError(expected("model.name", f"one of {names()}", repr(name)))
    return _REGISTRY[name][0]


def build(cfg: Any, spec: IOSpec, rngs: nnx.Rngs) -> nnx.Module:
    """Build the model described by ``cfg`` (a registered config dataclass) for ``spec``."""
    config_class(cfg.name)
    return _REGISTRY[cfg.name][1](cfg, spec, rngs)
