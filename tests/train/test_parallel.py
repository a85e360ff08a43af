"""Data parallelism over 8 simulated CPU devices matches single-device training."""

import jax
import numpy as np
import pytest

from climml import pipeline
from climml.errors import ConfigError
from climml.train import parallel
from climml.train.loop import fit


def test_eight_devices_train_like_one(small_config):
    assert len(jax.local_devices()) == 8  # set by tests/conftest.py
    results = []
    for devices in (1, None):
        exp = pipeline.prepare(
            small_config(
                "train.epochs=2",
                "model.dropout=0.0",
                f"train.devices={'null' if devices is None else devices}",
            )
        )
        results.append(
            fit(
                pipeline.build_model(exp),
                exp.loader("train", training=True),
                exp.loader("val"),
                exp.cfg.train,
                seed=0,
                progress=False,
            )
        )
    one, many = results
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    leaf = jax.tree.leaves(many.params)[0]
    assert len(leaf.sharding.device_set) == 8  # parameters replicated on every device


def test_batch_must_split_evenly_over_devices():
    with pytest.raises(ConfigError, match="data.batch_size: expected a multiple of the 8"):
        parallel.data_mesh(None, batch_size=12)
    with pytest.raises(ConfigError, match="train.devices"):
        parallel.data_mesh(9, batch_size=16)
