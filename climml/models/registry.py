"""Model registry: maps a config's ``model.name`` to its hyperparameter dataclass and builder.

Each model family registers itself with :func:`register`::

    @dataclass(frozen=True)
    class CNNConfig:
        name: str = "cnn"
        filters: tuple[int, ...] = (32, 32)

    @register("cnn", CNNConfig)
    def build_cnn(cfg: CNNConfig, spec: IOSpec, rngs: nnx.Rngs) -> nnx.Module: ...

Every family module in ``climml/models/`` is imported on first use, so adding a file with a
``@register`` call is all it takes to make a model available to configs and the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from flax import nnx

from climml.errors import ConfigError, expected
from climml.types import IOSpec

Builder = Callable[[Any, IOSpec, nnx.Rngs], nnx.Module]

_REGISTRY: dict[str, tuple[type, Builder]] = {}
_LOADED = False


def register(name: str, config_cls: type) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` with its config dataclass."""

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = (config_cls, builder)
        return builder

    return decorate


def _load_families() -> None:
    """Import every module of ``climml.models`` once so that their ``@register`` calls run."""
    global _LOADED
    if _LOADED:
        return
    import climml.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"climml.models.{info.name}")
    _LOADED = True


def names() -> list[str]:
    """Registered model names, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def config_class(name: str) -> type:
    """The hyperparameter dataclass of model ``name`` (``ConfigError`` if unknown)."""
    _load_families()
    if name not in _REGISTRY:
        raise ConfigError(expected("model.name", f"one of {names()}", repr(name)))
    return _REGISTRY[name][0]


def build(cfg: Any, spec: IOSpec, rngs: nnx.Rngs) -> nnx.Module:
    """Build the model described by ``cfg`` (a registered config dataclass) for ``spec``."""
    config_class(cfg.name)
    return _REGISTRY[cfg.name][1](cfg, spec, rngs)
