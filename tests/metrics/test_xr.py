"""xarray wrappers equal the kernels, keep coordinates, align by name and stay lazy on dask."""

import functools
import operator

import numpy as np
import pytest
import xarray as xr

import climml.metrics as cm
from climml.errors import ConfigError, DataError


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


def test_weights_broadcast_by_name(cube):
    f, o = cube
    w = xr.DataArray(np.arange(1.0, 6.0), dims="lat", coords={"lat": f.lat})
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
    got = cm.xr.crps_ensemble(ens, o, dim=("time", "lon"), weights=None)
    per_point = cm.crps_ensemble(ens.values, o.values, ensemble_axis=0)
    np.testing.assert_allclose(got, np.nanmean(np.asarray(per_point), axis=(0, 2)), rtol=1e-5)
    assert got.dims == ("lat",)
    w = xr.DataArray(rng.random(7).astype(np.float32), dims="member")
    weighted = cm.xr.crps_ensemble(ens, o, dim=("time", "lon"), member_weights=w, weights=None)
    member_w = np.broadcast_to(w.values[:, None, None, None], ens.shape)
    per_point = cm.crps_ensemble(ens.values, o.values, ensemble_axis=0, weights=member_w)
    np.testing.assert_allclose(weighted, np.nanmean(np.asarray(per_point), axis=(0, 2)), rtol=1e-5)
    auc = cm.xr.roc_auc(f, o > 0, dim="time", weights=None)
    np.testing.assert_allclose(auc, cm.roc_auc(f.values, o.values > 0, axis=0), rtol=1e-6)


def test_contingency_dataset_and_scores(cube):
    f, o = cube
    table = cm.xr.contingency(f, o, threshold=[0.0, 1.0], dim=("time", "lat"))
    assert table.hits.dims == ("lon", "threshold") and table.hits.dtype == np.int32
    summed = table.sum("lon")
    kernel = cm.contingency(f.values, o.values, threshold=np.array([0.0, 1.0], np.float32))
    np.testing.assert_array_equal(summed.hits, kernel.hits)
    scores = cm.xr.categorical_scores(summed, scores=("csi", "hss"))
    np.testing.assert_allclose(scores.csi, kernel.csi(), rtol=1e-6)
    assert float(cm.xr.contingency(f, o, threshold=0.5).threshold) == 0.5  # scalar: no dim


def test_fss_and_psd_wrappers(cube):
    f, o = cube
    got = cm.xr.fss(f, o, threshold=0.5, window=3, dim=())
    np.testing.assert_allclose(
        got, cm.fss(f.values, o.values, threshold=0.5, window=3, axis=()), rtol=1e-6
    )
    spectrum = cm.xr.radial_psd(o.isel(lat=slice(0, 4), lon=slice(0, 4)))
    assert spectrum.dims == ("time", "wavenumber") and spectrum.sizes["wavenumber"] == 3


def test_unknown_dim_is_a_data_error(cube):
    f, o = cube
    with pytest.raises(DataError, match="dim"):
        cm.xr.rmse(f, o, dim="member")


# --------------------------------------------------------------------------- area weighting


def _hand_weighted_mse(f, o, w):
    """Per-time weighted MSE over (lat, lon) in float64, NaN points left out: (time,)."""
    e = f.values.astype(np.float64) - o.values.astype(np.float64)
    ww = np.broadcast_to(w[:, None], e.shape[1:]) * ~np.isnan(e)
    return np.nansum(ww * e**2, axis=(1, 2)) / ww.sum(axis=(1, 2))


def test_area_weighted_rmse_equals_hand_cos_latitude(cube):
    f, o = cube
    cos = np.cos(np.deg2rad(f.lat.values.astype(np.float64)))
    got = cm.xr.rmse(f, o, dim=("lat", "lon"), weights="cos")
    np.testing.assert_allclose(got, np.sqrt(_hand_weighted_mse(f, o, cos)), rtol=1e-5)
    # the default is the exact band area: sin(upper) - sin(lower), bounds at midpoints
    edges = np.deg2rad(np.array([-75.0, -45.0, -15.0, 15.0, 45.0, 75.0]))
    band = np.diff(np.sin(edges))
    default = cm.xr.rmse(f, o, dim=("lat", "lon"))
    np.testing.assert_allclose(default, np.sqrt(_hand_weighted_mse(f, o, band)), rtol=1e-5)
    flat = cm.xr.rmse(f, o, dim=("lat", "lon"), weights="none")
    np.testing.assert_allclose(flat, np.sqrt(_hand_weighted_mse(f, o, np.ones(5))), rtol=1e-5)
    assert not np.allclose(flat, default, rtol=1e-3)  # the weighting changes the score
    # over every dim with no missing point: sqrt of the time mean of the weighted MSE (WB2)
    full = o.copy(data=np.where(np.isnan(f), o, f))
    np.testing.assert_allclose(
        cm.xr.rmse(full, o, weights="cos"),
        np.sqrt(np.mean(_hand_weighted_mse(full, o, cos))),
        rtol=1e-5,
    )


def test_cell_area_weights_are_sphere_fractions():
    lat = xr.DataArray(np.arange(-87.5, 90, 5.0), dims="lat")
    lat = lat.assign_coords(lat=lat)
    global_ = cm.xr.latitude_weights(lat, normalize=False)
    assert global_.dims == ("lat",) and global_.dtype == np.float64
    np.testing.assert_allclose(global_.sum(), 1.0, rtol=1e-12)  # the whole sphere
    lo, hi = np.deg2rad(lat.values - 2.5), np.deg2rad(lat.values + 2.5)
    np.testing.assert_allclose(global_, (np.sin(hi) - np.sin(lo)) / 2, rtol=1e-12)
    # WeatherBench 2 on a global grid: bounds at the midpoints and at +-90, mean 1
    wb2_bounds = np.deg2rad(np.concatenate([[-90.0], lat.values[:-1] + 2.5, [90.0]]))
    wb2 = np.diff(np.sin(wb2_bounds))
    np.testing.assert_allclose(cm.xr.latitude_weights(lat), wb2 / wb2.mean(), rtol=1e-12)
    # a band from 20S to 60N on a 10-degree grid covers (sin 60 + sin 20) / 2 of the sphere
    band = xr.Dataset(coords={"latitude": np.arange(-15.0, 56.0, 10.0)})
    fraction = cm.xr.latitude_weights(band, normalize=False)
    assert fraction.dims == ("latitude",)
    want = (np.sin(np.deg2rad(60)) + np.sin(np.deg2rad(20))) / 2
    np.testing.assert_allclose(fraction.sum(), want, rtol=1e-12)
    # CF bounds win over the spacing
    bounds = np.array([[-90.0, 0.0], [0.0, 30.0]])
    ds = xr.Dataset({"lat_bnds": (("lat", "nv"), bounds)}, coords={"lat": ("lat", [-45.0, 15.0])})
    ds.lat.attrs["bounds"] = "lat_bnds"
    np.testing.assert_allclose(cm.xr.latitude_weights(ds, normalize=False), [0.5, 0.25])
    bare = xr.DataArray(lat.values, dims="lat")  # latitudes without a coordinate
    np.testing.assert_array_equal(cm.xr.latitude_weights(bare, normalize=False), global_)
    cos = cm.xr.latitude_weights(lat, kind="cos")
    np.testing.assert_allclose(cos, np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(lat)).mean())
    with pytest.raises(DataError, match="latitude"):
        cm.xr.latitude_weights(xr.DataArray(np.zeros((2, 3)), dims=("y", "x")))
    with pytest.raises(ConfigError, match="kind"):
        cm.xr.latitude_weights(lat, kind="area")


def test_acc_per_time_then_mean_equals_hand_computation(cube):
    f, o = cube
    clim = o.mean("time") * 0.5
    got = cm.xr.acc(f, o, clim, dim=("lat", "lon"), weights="cos").mean("time")
    fa = f.values.astype(np.float64) - clim.values
    oa = o.values.astype(np.float64) - clim.values
    w = np.cos(np.deg2rad(f.lat.values))[:, None] * ~np.isnan(fa)
    fa, oa = np.nan_to_num(fa), oa
    per_time = (w * fa * oa).sum((1, 2)) / np.sqrt(
        (w * fa**2).sum((1, 2)) * (w * oa**2).sum((1, 2))
    )
    np.testing.assert_allclose(got, per_time.mean(), rtol=1e-5)


# --------------------------------------------------------------------------- alignment


def test_misaligned_coordinates_raise_naming_the_dim(cube):
    f, o = cube
    shifted = o.assign_coords(lon=o.lon - 180.0)  # -180..120 against 0..300
    with pytest.raises(DataError, match=r"lon: forecast 0\.\.300 \(6 values\) vs observed -180"):
        cm.xr.rmse(f, shifted)
    later = o.assign_coords(time=o.time + 20)
    with pytest.raises(DataError, match="time: forecast 0..11"):
        cm.xr.acc(f, later, dim=("lat", "lon"))
    with pytest.raises(DataError, match="^time: no shared coordinate values"):
        cm.xr.rmse(f, later, align="inner")  # an opted-in join still never scores nothing
    with pytest.raises(DataError, match="lat: forecast"):
        cm.xr.crps_ensemble(f.expand_dims(member=3), o.assign_coords(lat=o.lat + 1))
    with pytest.raises(DataError, match="lon: forecast has 6 points, observed has 5"):
        cm.xr.mae(f.drop_vars(["lon", "label"]), o.isel(lon=slice(5)).drop_vars(["lon", "label"]))
    with pytest.raises(ConfigError, match="align"):
        cm.xr.rmse(f, o, align="outer")
    with pytest.raises(TypeError):
        cm.xr.rmse(f, o, "time")  # options are keyword-only


def test_inner_and_override_alignment_are_opt_in(cube):
    f, o = cube
    got = cm.xr.rmse(f.isel(time=slice(2, None)), o, dim="time", align="inner")
    want = cm.xr.rmse(f.isel(time=slice(2, None)), o.isel(time=slice(2, None)), dim="time")
    np.testing.assert_allclose(got, want)
    relabelled = o.assign_coords(lon=o.lon - 180.0)
    got = cm.xr.rmse(f, relabelled, dim="time", align="override")
    np.testing.assert_allclose(got, cm.xr.rmse(f, o, dim="time"))
    np.testing.assert_array_equal(got.lon, f.lon)


def test_probability_and_label_ranges_name_the_argument(cube):
    f, o = cube
    with pytest.raises(DataError, match="^probability: expected probabilities in \\[0, 1\\]"):
        cm.xr.brier_score(f, o > 0)
    with pytest.raises(DataError, match="^observed: expected 0/1"):
        cm.xr.brier_score(abs(f) / 10, o)
    with pytest.raises(DataError, match="^labels: expected 0/1"):
        cm.xr.roc_auc(f, o)
    p = (abs(f) / float(abs(f).max())).fillna(0.5)
    got = cm.xr.brier_score(p, (o > 0).astype(float), dim="time")
    want = cm.brier_score(p.values, (o.values > 0).astype(float), axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --------------------------------------------------------------------------- ensembles, categories


def test_crps_on_member_chunked_dask_equals_in_memory(cube):
    f, o = cube
    rng = np.random.default_rng(2)
    ens = xr.concat([o + rng.normal(size=o.shape) for _ in range(6)], dim="member")
    lazy = cm.xr.crps_ensemble(
        ens.chunk({"member": 2, "time": 4}), o.chunk({"time": 4}), dim=("lat", "lon")
    )
    assert lazy.chunks is not None
    eager = cm.xr.crps_ensemble(ens, o, dim=("lat", "lon"))
    np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6)
    fair = cm.xr.crps_ensemble(ens.chunk({"member": 3}), o, fair=True, weights="cos")
    np.testing.assert_allclose(
        fair, cm.xr.crps_ensemble(ens, o, fair=True, weights="cos"), rtol=1e-6
    )


@pytest.mark.parametrize("name", ["csi", "pod", "far", "pofd", "frequency_bias", "ets", "hss"])
def test_categorical_wrappers_equal_kernels(cube, name):
    f, o = cube
    thresholds = np.array([0.0, 0.5], np.float32)
    got = getattr(cm.xr, name)(f, o, threshold=thresholds, dim=("time", "lon"), weights=None)
    table = cm.contingency(f.values, o.values, threshold=thresholds, axis=(0, 2))
    np.testing.assert_allclose(got.transpose("threshold", "lat"), getattr(table, name)(), rtol=1e-6)
    # area-weighted by default: the score of the latitude-weighted table
    weighted = getattr(cm.xr, name)(f, o, threshold=0.5)
    w = np.asarray(cm.xr.latitude_weights(o))[None, :, None]
    want = getattr(cm.contingency(f.values, o.values, threshold=0.5, weights=w), name)()
    np.testing.assert_allclose(weighted, want, rtol=1e-5)
    assert float(weighted.threshold) == 0.5
