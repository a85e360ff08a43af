"""climml: a JAX/Flax toolkit for climate machine learning.

Example::

    import climml as cm

    ds = cm.data.synthetic.enso(n_months=600, seed=0)
    cfg = cm.config.load("configs/quickstart.yaml", overrides=["train.epochs=2"])
    result = cm.run(cfg, workdir="runs/quick")
"""

from climml import config, data, errors, explain, metrics, models
from climml.errors import CheckpointError, ClimmlError, ConfigError, DataError
from climml.pipeline import run

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
    "run",
]
__version__ = "0.1.0"
