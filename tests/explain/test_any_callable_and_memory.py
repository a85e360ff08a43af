"""Permutation importance of functions JAX cannot trace, and no memory kept across runs."""

import gc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from flax import nnx
from sklearn.linear_model import LinearRegression

import climml as cm
from climml import metrics
from climml.config import TrainConfig
from climml.data import WindowLoader
from climml.explain import permutation_importance
from climml.train import fit


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[:, 4] = x[:, 0] + 0.05 * rng.normal(size=n)  # a near copy of feature 0
    y = (2 * x[:, 0] + x[:, 1] + 0.5 * x[:, 3] + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


def test_numpy_predict_function_equals_the_traced_one_and_warns_once():
    x, y = _table()
    w = np.array([2.0, 1.0, 0.0, 0.5, 0.0], np.float32)
    kw = dict(key=jax.random.key(7), n_repeats=3, n_bootstrap=20)
    traced = permutation_importance(lambda a: a @ jnp.asarray(w), x, y, metrics.rmse, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = permutation_importance(lambda a: np.asarray(a) @ w, x, y, metrics.rmse, **kw)
    assert len(caught) == 1 and "TracerArrayConversionError" in str(caught[0].message)
    assert issubclass(caught[0].category, RuntimeWarning)
    for name, var in traced.data_vars.items():
        if var.dtype.kind in "US":
            assert (var.values == eager[name].values).all(), name
        else:
            np.testing.assert_allclose(var.values, eager[name].values, rtol=2e-5, err_msg=name)
    assert list(eager["singlepass_rank"].values[:2]) == [1, 2]  # features 0 and 1 matter most


def test_scikit_learn_predict_and_a_python_score():
    x, y = _table(seed=1)
    model = LinearRegression().fit(x[:, :4], y)  # the near copy left out of the fit

    def r2(pred, target):  # needs concrete values: float() of a NumPy reduction
        target = np.asarray(target)
        return float(1 - np.sum((pred - target) ** 2) / np.sum((target - target.mean()) ** 2))

    with pytest.warns(RuntimeWarning, match="cannot be traced"):
        ds = permutation_importance(
            model.predict,
            x[:, :4],
            y,
            r2,
            key=jax.random.key(0),
            higher_is_better=True,
            n_repeats=4,
        )
    # the drop in R² from permuting feature j alone is about 2 coef_j² var(x_j) / var(y)
    want = 2 * model.coef_**2 * x[:, :4].var(axis=0) / y.var()
    np.testing.assert_allclose(ds["singlepass_importance"].values, want, atol=0.08)
    assert list(ds["multipass_rank"].values) == [1.0, 2.0, 4.0, 3.0]


def _loaders(seed):
    rng = np.random.default_rng(seed)
    n = 240
    drive = rng.normal(size=n)
    y = np.roll(drive, 1) + 0.1 * rng.normal(size=n)
    time = pd.date_range("2000-01-01", periods=n, freq="D")
    ds = xr.Dataset({"a": ("time", drive), "b": ("time", rng.normal(size=n)), "y": ("time", y)})
    ds = ds.assign_coords(time=time).astype(np.float32)

    def loader(anchors):
        return WindowLoader(
            ds, inputs=["a", "b"], target="y", input_steps=3, leads=[1], anchors=anchors,
            batch_size=32, prefetch=0,
        )  # fmt: skip

    return loader(np.arange(2, 180)), loader(np.arange(180, 238))


def _train_and_explain(seed):
    """A tiny fit + permutation importance, nothing kept by the caller."""
    train, val = _loaders(seed)
    model = cm.models.build("mlp", train.spec, rngs=nnx.Rngs(seed), hidden=(8,))
    cfg = TrainConfig(epochs=3, lr=0.02, patience=None)
    fit(model, train, val, cfg, seed=seed, progress=False)
    batches = list(val.epoch(0))
    x = np.concatenate([b.x for b in batches])
    y = np.concatenate([b.y for b in batches])
    graphdef, state = nnx.split(model)
    ds = permutation_importance(
        lambda a: nnx.merge(graphdef, state)(a), x, y, metrics.rmse, key=jax.random.key(seed)
    )
    importance = ds["singlepass_importance"]
    return float(importance.sel(feature="feature_0") - importance.sel(feature="feature_1"))


def test_memory_stays_flat_over_train_and_explain_cycles():
    live = []
    for cycle in range(5):
        assert _train_and_explain(cycle) > 0  # input "a" drives the target, "b" is noise
        gc.collect()
        live.append(len(jax.live_arrays()))
    # A cache that held each run's predict function (and so its model's parameters) grew by
    # the model's arrays every cycle; after warm-up the count must not grow.
    assert live[4] <= live[1] + 2, live
