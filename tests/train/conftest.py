"""Small experiment configs shared by the training tests."""

import pytest
import yaml

from climml import config

SMALL = [
    "data.source_args={n_months: 360, seed: 1, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "data.batch_size=16",
    "data.gap=0",
    "train.epochs=3",
    "train.checkpoint_every=4",
    "train.patience=null",
    "output.progress=false",
]


def _small_config(*extra):
    """The quickstart experiment with a small MLP on a small grid."""
    raw = yaml.safe_load(open("configs/quickstart.yaml"))
    raw["model"] = {"name": "mlp", "hidden": [16], "dropout": 0.2}
    return config.from_dict(raw, SMALL + list(extra))


@pytest.fixture(scope="session")
def small_config():
    """``small_config(*overrides)``: the quickstart experiment shrunk, with a small MLP."""
    return _small_config
