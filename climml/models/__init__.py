"""Model families (Flax NNX) and the registry that builds them from configs.

``build("cnn", spec, rngs=nnx.Rngs(0), filters=(8, 16))`` or ``build(CNNConfig(...), spec)``;
``names()`` lists the registered families, ``configs()`` their config classes.
"""

import importlib
from typing import Any

from climml.models.registry import IOSpec, build, config_class, configs, names, register

# Config classes import their family on first access, so that parsing a config (which imports
# this package) loads only the family it names, not the U-Net or the native LSTM kernel.
_CONFIG_MODULES = {
    "AutoencoderConfig": "climml.models.autoencoder",
    "CNNConfig": "climml.models.cnn",
    "GRUConfig": "climml.models.rnn",
    "LSTMConfig": "climml.models.rnn",
    "MLPConfig": "climml.models.mlp",
    "NowcastGANConfig": "climml.models.nowcast_gan",
    "RecurrentConfig": "climml.models.rnn",
    "TemporalCNNConfig": "climml.models.temporal_cnn",
    "UNetConfig": "climml.models.unet",
}


def __getattr__(name: str) -> Any:
    if name in _CONFIG_MODULES:
        return getattr(importlib.import_module(_CONFIG_MODULES[name]), name)
    raise AttributeError(f"module 'climml.models' has no attribute {name!r}")


__all__ = [
    "AutoencoderConfig",
    "CNNConfig",
    "GRUConfig",
    "IOSpec",
    "LSTMConfig",
    "MLPConfig",
    "NowcastGANConfig",
    "RecurrentConfig",
    "TemporalCNNConfig",
    "UNetConfig",
    "build",
    "config_class",
    "configs",
    "names",
    "register",
]
