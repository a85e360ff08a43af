"""xarray wrappers equal the kernels, keep coordinates, align by name and stay lazy on dask."""

import functools
import operator

import numpy as np
import pytest
import xarray as xr

import climml.metrics as cm
from climml.errors import DataError


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    coords = {
        "time": np.arange(12),
        "lat": np.linspace(-60, 60, 5),
        "lon": np.arange(6) * 60.0,
        "label": ("lon", list("abcdef")),  # a non-dimension coordinate on a kept dim
    }
    dims = ("time", "lat", "lon")
    obs = xr.DataArray(rng.normal(size=(12, 5, 6)).astype(np.float32), dims=dims, coords=coords)
    fcst = obs + rng.normal(scale=0.5, size=obs.shape).astype(np.float32)
    fcst[0, 0, 0] = np.nan
    return fcst, obs


def _kernel_axis(da, dims):
    return tuple(da.get_axis_num(d) for d in dims)


@pytest.mark.parametrize("name", ["rmse", "mae", "bias", "correlation", "acc"])
def test_continuous_wrappers_equal_kernels(cube, name):
    f, o = cube
    got = getattr(cm.xr, name)(f, o, dim="time")
    want = getattr(cm, name)(f.values, o.values, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dims == ("lat", "lon")
    np.testing.assert_array_equal(got.lon, f.lon)
    assert list(got.label.values) == list("abcdef")


def test_latitude_weights_broadcast_by_name(cube):
    f, o = cube
    w = xr.DataArray(np.asarray(cm.latitude_weights(f.lat)), dims="lat", coords={"lat": f.lat})
    got = cm.xr.rmse(f, o, dim=("lat", "lon"), weights=w)
    want = cm.rmse(f.values, o.values, axis=(1, 2), weights=np.asarray(w)[:, None])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dims == ("time",)


def test_skipna_false_propagates_nan(cube):
    f, o = cube
    skipped = cm.xr.mae(f, o, dim="time")
    strict = cm.xr.mae(f, o, dim="time", skipna=False)
    assert np.isnan(strict[0, 0]) and not np.isnan(skipped[0, 0])
    np.testing.assert_allclose(strict[1:], skipped[1:])


def test_inner_join_on_misaligned_time(cube):
    f, o = cube
    got = cm.xr.rmse(f.isel(time=slice(2, None)), o, dim="time")
    np.testing.assert_allclose(
        got, cm.xr.rmse(f.isel(time=slice(2, None)), o.isel(time=slice(2, None)), dim="time")
    )


def test_dataset_and_dask_inputs(cube):
    f, o = cube
    ds_f, ds_o = xr.Dataset({"t2m": f, "z500": 2 * f}), xr.Dataset({"t2m": o, "z500": 2 * o})
    got = cm.xr.rmse(ds_f, ds_o, dim="time")
    np.testing.assert_allclose(got.z500, 2 * cm.xr.rmse(f, o, dim="time"), rtol=1e-6)
    lazy = cm.xr.rmse(f.chunk({"lat": 2}), o.chunk({"lat": 2}), dim="time")
    assert lazy.chunks is not None  # still a dask graph
    np.testing.assert_allclose(lazy.compute(), cm.xr.rmse(f, o, dim="time"), rtol=1e-6)
    with pytest.raises(DataError, match="z500"):
        cm.xr.rmse(ds_f, ds_o[["t2m"]], dim="time")


def test_statistics_of_dask_chunks_add_up_to_one_shot(cube):
    f, o = cube
    lazy_f, lazy_o = f.chunk({"time": 5}).data, o.chunk({"time": 5}).data
    blocks = zip(lazy_f.blocks, lazy_o.blocks, strict=True)
    total = functools.reduce(
        operator.add, (cm.error_sums(np.asarray(a), np.asarray(b), axis=0) for a, b in blocks)
    )
    assert lazy_f.numblocks[0] == 3
    np.testing.assert_allclose(total.rmse(), cm.xr.rmse(f, o, dim="time"), rtol=1e-6)


def test_crps_and_auc_wrappers(cube):
    f, o = cube
    rng = np.random.default_rng(1)
    ens = xr.concat([o + rng.normal(size=o.shape) for _ in range(7)], dim="member")
    got = cm.xr.crps_ensemble(ens, o, dim=("time", "lon"))
    per_point = cm.crps_ensemble(ens.values, o.values, ensemble_axis=0)
    np.testing.assert_allclose(got, np.nanmean(np.asarray(per_point), axis=(0, 2)), rtol=1e-5)
    assert got.dims == ("lat",)
    w = xr.DataArray(rng.random(7).astype(np.float32), dims="member")
    weighted = cm.xr.crps_ensemble(ens, o, dim=("time", "lon"), member_weights=w)
    member_w = np.broadcast_to(w.values[:, None, None, None], ens.shape)
    per_point = cm.crps_ensemble(ens.values, o.values, ensemble_axis=0, weights=member_w)
    np.testing.assert_allclose(weighted, np.nanmean(np.asarray(per_point), axis=(0, 2)), rtol=1e-5)
    auc = cm.xr.roc_auc(f, o > 0, dim="time")
    np.testing.assert_allclose(auc, cm.roc_auc(f.values, o.values > 0, axis=0), rtol=1e-6)


def test_contingency_dataset_and_scores(cube):
    f, o = cube
    table = cm.xr.contingency(f, o, [0.0, 1.0], dim=("time", "lat"))
    assert table.hits.dims == ("lon", "threshold") and table.hits.dtype == np.int32
    summed = table.sum("lon")
    kernel = cm.contingency(f.values, o.values, np.array([0.0, 1.0], np.float32))
    np.testing.assert_array_equal(summed.hits, kernel.hits)
    scores = cm.xr.categorical_scores(summed, scores=("csi", "hss"))
    np.testing.assert_allclose(scores.csi, kernel.csi(), rtol=1e-6)
    assert float(cm.xr.contingency(f, o, 0.5).threshold) == 0.5  # scalar threshold: no dim


def test_fss_and_psd_wrappers(cube):
    f, o = cube
    got = cm.xr.fss(f, o, 0.5, 3, dim=())
    np.testing.assert_allclose(got, cm.fss(f.values, o.values, 0.5, 3, axis=()), rtol=1e-6)
    spectrum = cm.xr.radial_psd(o.isel(lat=slice(0, 4), lon=slice(0, 4)))
    assert spectrum.dims == ("time", "wavenumber") and spectrum.sizes["wavenumber"] == 3


def test_unknown_dim_is_a_data_error(cube):
    f, o = cube
    with pytest.raises(DataError, match="dim"):
        cm.xr.rmse(f, o, dim="member")
