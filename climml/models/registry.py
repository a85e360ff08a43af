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
    "nowcast_gan": "climml.models.nowcast_gan",
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


def build(
    model: str | Any, spec: IOSpec, rngs: nnx.Rngs | None = None, **hyperparameters: Any
) -> nnx.Module:
    """Build a model for ``spec``, named or described by its config dataclass.

    ``model`` is a registered name (``"cnn"``), with ``hyperparameters`` as keyword arguments
    (``filters=(8, 16)``; checked like the YAML ``model`` section, so a misspelt or mistyped one
    is a ``ConfigError`` naming it), or an instance of a family's config class
    (``CNNConfig(filters=(8, 16))``, as ``cfg.model`` is), to which keyword arguments apply as
    replacements. ``rngs`` seeds the parameters (and dropout); default ``nnx.Rngs(0)``.
    """
    from dataclasses import asdict, is_dataclass

    from climml.config import _convert  # the YAML converter: same checks, same messages

    if isinstance(model, str):
        raw = {"name": model, **hyperparameters}
    elif is_dataclass(model) and hasattr(model, "name"):
        raw = {**asdict(model), **hyperparameters}
    else:
        raise ConfigError(expected("model", "a model name or a model config dataclass", model))
    cfg = _convert(raw, config_class(str(raw["name"])), "model")
    return _REGISTRY[cfg.name][1](cfg, spec, rngs if rngs is not None else nnx.Rngs(0))


def configs() -> dict[str, type]:
    """Every registered model name and its config dataclass."""
    _load_families()
    return {name: _REGISTRY[name][0] for name in sorted(_REGISTRY)}
