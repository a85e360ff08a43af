"""Bootstrap intervals: determinism, vmap == loop, coverage, block bootstrap width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import climml.metrics as cm
from climml.errors import ConfigError, DataError


def test_same_key_same_interval_and_batched_equals_all_at_once():
    rng = np.random.default_rng(0)
    f, o = rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
    key = jax.random.key(1)

    def metric(a, b):
        return cm.rmse(a, b, axis=0)

    a = cm.bootstrap(metric, f, o, n=64, key=key)
    b = cm.bootstrap(metric, f, o, n=64, key=key, batch_size=16)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.shape == (3, 3)
    assert np.all(np.asarray(a[0]) <= np.asarray(a[2]))


def test_vmapped_resamples_equal_a_python_loop():
    x = jnp.arange(20.0)
    key = jax.random.key(2)
    got = cm.bootstrap(jnp.mean, x, n=8, key=key, percentiles=np.linspace(0, 100, 8))
    keys = jax.random.split(key, 8)
    loop = sorted(float(jnp.mean(x[cm.resample_indices(k, 20)])) for k in keys)
    # With 8 samples, percentiles at k/7 * 100 are exactly the order statistics.
    np.testing.assert_allclose(got, loop, rtol=1e-6)


def test_interval_of_the_mean_has_the_textbook_width():
    x = np.random.default_rng(3).normal(size=400).astype(np.float32)
    low, high = cm.bootstrap(jnp.mean, x, n=2000, key=jax.random.key(4), percentiles=(2.5, 97.5))
    np.testing.assert_allclose(float(high - low), 2 * 1.96 * x.std() / np.sqrt(400), rtol=0.15)


def test_block_bootstrap_widens_intervals_for_autocorrelated_series():
    rng = np.random.default_rng(5)
    x = np.zeros(600, np.float32)
    for t in range(1, 600):  # AR(1), phi = 0.9: the iid bootstrap is far too narrow
        x[t] = 0.9 * x[t - 1] + rng.normal()
    key = jax.random.key(6)
    iid = cm.bootstrap(jnp.mean, x, n=500, key=key, percentiles=(2.5, 97.5))
    blocks = cm.bootstrap(jnp.mean, x, n=500, key=key, block=30, percentiles=(2.5, 97.5))
    assert float(blocks[1] - blocks[0]) > 2.5 * float(iid[1] - iid[0])


def test_block_indices_are_runs_of_consecutive_samples():
    index = np.asarray(cm.resample_indices(jax.random.key(7), 23, block=5))
    assert index.shape == (23,) and index.min() >= 0 and index.max() < 23
    runs = index[:20].reshape(4, 5)
    np.testing.assert_array_equal(np.diff(runs, axis=1), 1)


def test_bad_arguments_raise_named_errors():
    key = jax.random.key(0)
    with pytest.raises(DataError, match="arrays"):
        cm.bootstrap(jnp.mean, np.ones(5), np.ones(6), key=key)
    with pytest.raises(ConfigError, match="block"):
        cm.bootstrap(jnp.mean, np.ones(5), key=key, block=6)
    with pytest.raises(ConfigError, match="n"):
        cm.bootstrap(jnp.mean, np.ones(5), key=key, n=0)
