"""Normalizer: statistics equal NumPy's over the training range only, NaN-aware, and every
apply/invert path (numpy, xarray, after a save/load through netCDF or zarr) round-trips."""

import warnings

import numpy as np
import pytest
import xarray as xr

import climml.data as cd
from climml.errors import ConfigError, DataError

# NumPy's reference statistics warn on the all-NaN land cells; the normalizer must not.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Mean of empty slice:RuntimeWarning",
    "ignore:Degrees of freedom:RuntimeWarning",
)

TRAIN = ("1870-01", "1872-12")
MODES = [
    (("time",), False),
    (("time",), True),
    (("time", "lat", "lon"), False),
    (("time", "lat", "lon"), True),
]


@pytest.fixture(scope="module")
def ds():
    return cd.synthetic.enso(60, nlat=8, nlon=16, seed=2)


def _monthly_mean(values: np.ndarray, month: np.ndarray, axes: tuple) -> np.ndarray:
    return np.stack([np.nanmean(values[month == m], axis=axes) for m in range(1, 13)])


@pytest.mark.parametrize(("dims", "climatology"), MODES)
def test_apply_then_invert_returns_the_original(ds, dims, climatology):
    norm = cd.Normalizer.fit(ds, dims=dims, climatology=climatology, time_range=TRAIN)
    z = norm.apply(ds)
    assert z["sst"].dtype == np.float32 and z["sst"].dims == ds["sst"].dims
    for name in ("sst", "heat_content", "nino34"):
        back = norm.invert(z[name], name)
        xr.testing.assert_allclose(back, ds[name], rtol=1e-5, atol=1e-5)
        back_np = norm.invert(z[name].values, name, time=ds["time"].values)
        np.testing.assert_allclose(back_np, ds[name].values, rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.isnan(z["sst"].values), np.isnan(ds["sst"].values))  # land stays


@pytest.mark.parametrize(("dims", "climatology"), MODES)
def test_statistics_equal_numpy_over_the_training_range(ds, dims, climatology):
    norm = cd.Normalizer.fit(ds, dims=dims, climatology=climatology, time_range=TRAIN)
    train = ds.sel(time=slice(*TRAIN))
    month = train["time"].dt.month.values
    sst = train["sst"].values.astype(np.float64)
    axes = (0,) if dims == ("time",) else (0, 1, 2)
    if climatology:
        mean = _monthly_mean(sst, month, axes)
        anomalies = sst - (mean[month - 1] if axes == (0,) else mean[month - 1][:, None, None])
        std = np.nanstd(anomalies, axis=axes)
    else:
        mean, std = np.nanmean(sst, axis=axes), np.nanstd(sst, axis=axes)
    np.testing.assert_allclose(norm.mean["sst"].values, mean, rtol=1e-10)
    ocean = np.isfinite(std)
    np.testing.assert_allclose(norm.std["sst"].values[ocean], std[ocean], rtol=1e-10)
    z = norm.apply(train)["nino34"].values.astype(np.float64)
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0, rel=1e-5)


def test_values_outside_the_training_range_do_not_change_the_statistics(ds):
    norm = cd.Normalizer.fit(ds, climatology=True, time_range=TRAIN)
    later = ds.time > np.datetime64("1872-12-31")
    changed = ds.copy(deep=True)
    for name in ("sst", "heat_content", "nino34"):
        changed[name] = changed[name].where(~later, 1000.0)
    again = cd.Normalizer.fit(changed, climatology=True, time_range=TRAIN)
    xr.testing.assert_identical(again.to_dataset(), norm.to_dataset())
    whole = cd.Normalizer.fit(changed, climatology=True)  # the change is visible without the range
    assert not np.allclose(whole.std["nino34"].values, norm.std["nino34"].values)


def test_nan_aware_and_zero_spread_guarded():
    time = np.array(["2000-01", "2000-02", "2000-03", "2000-04"], dtype="datetime64[M]")
    values = np.array(
        [[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0], [2.0, np.nan, 5.0]]
    )
    ds = xr.Dataset({"v": (("time", "x"), values)}, coords={"time": time.astype("datetime64[ns]")})
    norm = cd.Normalizer.fit(ds)
    np.testing.assert_allclose(norm.mean["v"].values, [2.0, np.nan, 5.0])
    np.testing.assert_allclose(norm.std["v"].values, [np.sqrt(2 / 3), 1.0, 1.0])  # guards
    z = norm.apply(ds)["v"].values
    np.testing.assert_allclose(z[:, 2], 0.0)  # a constant maps to 0, not NaN or inf
    assert np.isnan(z[:, 1]).all() and np.isnan(z[2, 0])


def test_fitting_fields_with_land_is_silent(ds):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-NaN land cells must not warn
        cd.Normalizer.fit(ds.chunk({"time": 12}), climatology=True).apply(ds).compute()


def test_round_trip_through_to_dataset_netcdf_and_zarr(ds, tmp_path):
    norm = cd.Normalizer.fit(ds, climatology=True, time_range=TRAIN)
    z = norm.apply(ds)
    norm.to_dataset().to_netcdf(tmp_path / "norm.nc")
    norm.to_dataset().to_zarr(tmp_path / "norm.zarr", consolidated=False)
    copies = [
        cd.Normalizer.from_dataset(norm.to_dataset()),
        cd.Normalizer.from_dataset(xr.open_dataset(tmp_path / "norm.nc")),
        cd.Normalizer.from_dataset(xr.open_zarr(tmp_path / "norm.zarr", consolidated=False)),
    ]
    for copy in copies:
        assert copy.dims == norm.dims and copy.climatology
        assert sorted(copy.variables) == sorted(norm.variables)
        xr.testing.assert_allclose(copy.apply(ds)["sst"], z["sst"])
        xr.testing.assert_allclose(copy.invert(z["sst"], "sst"), ds["sst"], rtol=1e-5)


def test_lazy_dask_input_gives_the_same_statistics_and_lazy_output(ds):
    chunked = ds.chunk({"time": 7})
    norm = cd.Normalizer.fit(chunked, dims=("time",), climatology=True, time_range=TRAIN)
    eager = cd.Normalizer.fit(ds, dims=("time",), climatology=True, time_range=TRAIN)
    assert isinstance(norm.mean["sst"].data, np.ndarray)  # computed, not a dask graph
    xr.testing.assert_allclose(norm.to_dataset(), eager.to_dataset())
    z = norm.apply(chunked)
    assert z["sst"].chunks is not None  # still lazy
    xr.testing.assert_allclose(z["sst"].compute(), eager.apply(ds)["sst"])


def test_invert_without_mean_gives_physical_anomalies(ds):
    norm = cd.Normalizer.fit(ds, climatology=True, time_range=TRAIN)
    z = norm.apply(ds)["nino34"]
    anomaly = norm.invert(z, "nino34", add_mean=False)
    climatology = norm.mean["nino34"].sel(month=ds["time"].dt.month).drop_vars("month")
    xr.testing.assert_allclose(anomaly, (ds["nino34"] - climatology).astype(np.float32))


def test_invert_numpy_broadcasts_time_over_leading_axes(ds):
    """Forecasts (batch, lead, lat, lon) with a valid time per (batch, lead)."""
    norm = cd.Normalizer.fit(ds, climatology=True, time_range=TRAIN)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3, 8, 16)).astype(np.float32)
    valid = ds["time"].values[rng.integers(0, 60, size=(5, 3))]
    out = norm.invert(z, "sst", time=valid)
    mean, std = norm.mean["sst"].values, norm.std["sst"].values
    months = valid.astype("datetime64[M]").astype(int) % 12 + 1
    for b in range(5):
        for lead in range(3):
            want = z[b, lead] * std + mean[months[b, lead] - 1]
            np.testing.assert_allclose(out[b, lead], want, rtol=1e-6)
    assert out.dtype == np.float32


def test_errors_name_the_field(ds):
    with pytest.raises(ConfigError, match="data.normalize.dims"):
        cd.Normalizer.fit(ds, dims=("lat",))
    with pytest.raises(ConfigError, match="data.normalize.dims"):
        cd.Normalizer.fit(ds, dims=("time", "latitude"))
    with pytest.raises(ConfigError, match=r"time_range: expected all 12 calendar months"):
        cd.Normalizer.fit(ds, climatology=True, time_range=("1870-01", "1870-06"))
    with pytest.raises(ConfigError, match="time_range"):
        cd.Normalizer.fit(ds, time_range=("1990-01", "1991-01"))
    with pytest.raises(DataError, match="salinity: expected a data variable"):
        cd.Normalizer.fit(ds, variables=["salinity"])
    norm = cd.Normalizer.fit(ds, climatology=True, time_range=TRAIN)
    shifted = ds.assign_coords(lat=ds["lat"] + 1.0)
    with pytest.raises(DataError, match="sst coordinates"):
        norm.apply(shifted)
    with pytest.raises(DataError, match="variable: expected one of"):
        norm.invert(ds["sst"].values, "salinity")
    with pytest.raises(DataError, match="time: expected valid times"):
        norm.invert(ds["sst"].values, "sst")
    with pytest.raises(DataError, match="sst data shape"):
        norm.invert(np.zeros((4, 3, 3)), "sst", time=ds["time"].values[:4])
    with pytest.raises(DataError, match="normalizer: expected a dataset from"):
        cd.Normalizer.from_dataset(ds)
