"""Average/max pooling of fields against NumPy float64 windows, NaN windows, errors, jit."""

import jax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import climml.metrics as cm
from climml.errors import ConfigError, DataError


def _reference(x, size, stride, kind):
    """float64 pooling by explicit windows: (..., H', W', size, size) reduced."""
    windows = sliding_window_view(np.asarray(x, np.float64), (size, size), axis=(-2, -1))
    windows = windows[..., ::stride, ::stride, :, :]
    return windows.mean(axis=(-2, -1)) if kind == "avg" else windows.max(axis=(-2, -1))


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(("size", "stride"), [(1, None), (2, None), (4, None), (3, 1), (4, 2)])
def test_pool_matches_numpy_windows(kind, size, stride):
    x = np.random.default_rng(size).gamma(0.5, 2.0, size=(2, 3, 13, 10)).astype(np.float32)
    got = cm.pool(x, size=size, kind=kind, stride=stride)
    want = _reference(x, size, size if stride is None else stride, kind)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_non_overlapping_pooling_is_a_block_reduction():
    x = np.arange(32.0).reshape(2, 4, 4)
    blocks = x.reshape(2, 2, 2, 2, 2).swapaxes(2, 3)  # (n, block row, block col, 2, 2)
    np.testing.assert_array_equal(cm.pool(x, size=2, kind="max"), blocks.max(axis=(-2, -1)))
    np.testing.assert_array_equal(cm.pool(x, size=2, kind="avg"), blocks.mean(axis=(-2, -1)))


def test_a_window_holding_nan_is_nan_and_others_are_untouched():
    x = np.ones((8, 8), np.float32)
    x[1, 6] = np.nan
    for kind in ("avg", "max"):
        pooled = np.asarray(cm.pool(x, size=4, kind=kind))
        assert np.isnan(pooled[0, 1]) and np.isfinite(np.delete(pooled.ravel(), 1)).all()
        np.testing.assert_array_equal(np.delete(pooled.ravel(), 1), 1.0)


def test_jit_equals_eager():
    x = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    jitted = jax.jit(cm.pool, static_argnames=("size", "kind", "stride"))
    for kind in ("avg", "max"):
        np.testing.assert_array_equal(
            jitted(x, size=4, kind=kind, stride=2), cm.pool(x, size=4, kind=kind, stride=2)
        )


def test_bad_arguments_name_the_field():
    x = np.zeros((4, 4))
    with pytest.raises(ConfigError, match="kind"):
        cm.pool(x, size=2, kind="mean")
    with pytest.raises(ConfigError, match="size"):
        cm.pool(x, size=0)
    with pytest.raises(ConfigError, match="stride"):
        cm.pool(x, size=2, stride=1.5)
    with pytest.raises(DataError, match="H, W >= 8"):
        cm.pool(x, size=8)


def test_xarray_pool_keeps_dims_and_centres_the_coordinates():
    import xarray as xr

    x = np.random.default_rng(1).random((2, 8, 12)).astype(np.float32)
    field = xr.DataArray(
        x,
        dims=("time", "y", "x"),
        coords={"time": [10, 20], "y": np.arange(8.0), "x": np.arange(12.0) * 2},
    )
    pooled = cm.xr.pool(field.transpose("y", "time", "x"), size=4, kind="max")
    assert pooled.dims == ("y", "time", "x") and pooled.sizes == {"y": 2, "time": 2, "x": 3}
    np.testing.assert_array_equal(pooled["y"], [1.5, 5.5])
    np.testing.assert_array_equal(pooled["x"], [3.0, 11.0, 19.0])
    np.testing.assert_array_equal(pooled["time"], [10, 20])
    np.testing.assert_allclose(pooled.transpose("time", "y", "x"), _reference(x, 4, 4, "max"))
    with pytest.raises(DataError, match="spatial_dims"):
        cm.xr.pool(field, size=2, spatial_dims=("lat", "lon"))
