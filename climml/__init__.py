"""climml: a JAX/Flax toolkit for climate machine learning.

Example::

    import climml as cm

    ds = cm.data.synthetic.enso(n_months=600, seed=0)
    cfg = cm.config.load("configs/quickstart.yaml", overrides=["train.epochs=2"])
    result = cm.run(cfg, workdir="runs/quick")

    # or step by step, with the model in hand
    exp = cm.pipeline.prepare(cfg)
    model = cm.models.build("cnn", exp.spec, rngs=nnx.Rngs(0), filters=(8, 16))
    cm.train.fit(model, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0)
    forecasts = cm.predict(model, exp, split="test")  # xr.Dataset (time, lead, ...)
"""

import importlib
from typing import Any

from climml.errors import CheckpointError, ClimmlError, ConfigError, DataError

_SUBPACKAGES = ("config", "data", "errors", "explain", "metrics", "models", "pipeline", "train")


def __getattr__(name: str) -> Any:
    """Subpackages and ``run`` import on first access: ``import climml.config`` (parsing a
    config) then does not pay for JAX, Flax and every model family."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"climml.{name}")
    if name == "run":
        from climml.pipeline import run

        return run
    if name == "predict":
        from climml.pipeline import forecast

        return forecast
    raise AttributeError(f"module 'climml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CheckpointError",
    "ClimmlError",
    "ConfigError",
    "DataError",
    "config",
    "data",
    "errors",
    "explain",
    "metrics",
    "models",
    "pipeline",
    "predict",
    "run",
    "train",
]
__version__ = "0.1.0"
