"""The synthetic ENSO dataset has the structure that makes it a meaningful forecasting test:
land, a seasonal cycle, interannual (2-7 yr) ENSO, and heat content that leads Nino3.4."""

import numpy as np
import pytest
import scipy.signal
import xarray as xr

import climml.data as cd
from climml.errors import ConfigError


@pytest.fixture(scope="module")
def ds():
    return cd.synthetic.enso(600, nlat=12, nlon=24, seed=0)


def _anomaly(series: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Departure from each calendar month's mean."""
    out = series.astype(np.float64).copy()
    for m in range(1, 13):
        out[month == m] -= out[month == m].mean()
    return out


def _indices(ds):
    month = ds["time"].dt.month.values
    nino = _anomaly(ds["nino34"].values, month)
    equatorial = ds["heat_content"].sel(lat=slice(-5, 5)).mean(("lat", "lon")).values
    return month, nino, _anomaly(equatorial, month)


def test_same_seed_same_data_other_seed_other_data():
    a = cd.synthetic.enso(48, nlat=8, nlon=16, seed=7)
    xr.testing.assert_identical(a, cd.synthetic.enso(48, nlat=8, nlon=16, seed=7))
    other = cd.synthetic.enso(48, nlat=8, nlon=16, seed=8)
    assert not np.allclose(a["nino34"].values, other["nino34"].values)


def test_layout_units_and_monthly_time(ds):
    assert ds["sst"].dims == ("time", "lat", "lon") == ds["heat_content"].dims
    assert ds["nino34"].dims == ("time",)
    assert ds.sizes == {"time": 600, "lat": 12, "lon": 24}
    for name in ("sst", "heat_content", "nino34"):
        assert ds[name].dtype == np.float32
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    time = ds.indexes["time"]
    assert str(time[0])[:7] == "1870-01" and (time.day == 1).all()
    assert (np.diff(time.year * 12 + time.month) == 1).all()  # consecutive months
    assert -30 < ds["lat"].min() and ds["lat"].max() < 30
    assert 120 < ds["lon"].min() and ds["lon"].max() < 280  # 0-360 convention


def test_land_is_nan_in_both_fields_and_constant_in_time(ds):
    land = ds["sst"].isnull()
    assert (land == land.isel(time=0)).all()  # same cells every month
    assert (land == ds["heat_content"].isnull()).all()
    fraction = float(land.isel(time=0).mean())
    assert 0.05 < fraction < 0.4
    # The Americas are land at the eastern edge of the northern subtropics; the Nino3.4 box is sea.
    assert bool(land.isel(time=0).sel(lat=20, lon=275, method="nearest"))
    box = ds["sst"].sel(lat=slice(-5, 5), lon=slice(190, 240))
    assert np.isfinite(box.values).all() and np.isfinite(ds["nino34"].values).all()


def test_nino34_is_the_area_weighted_box_mean_of_sst(ds):
    box = ds["sst"].sel(lat=slice(-5, 5), lon=slice(190, 240)).astype(np.float64)
    weights = np.cos(np.deg2rad(box["lat"]))
    expected = box.weighted(weights).mean(("lat", "lon"))
    np.testing.assert_allclose(ds["nino34"].values, expected.values, rtol=1e-6)


def test_seasonal_cycle_has_opposite_hemispheric_summers(ds):
    clim = ds["sst"].groupby("time.month").mean()
    north = clim.sel(lat=25, method="nearest").mean("lon")
    south = clim.sel(lat=-25, method="nearest").mean("lon")
    summer_minus_winter_north = float(
        north.sel(month=[8, 9]).mean() - north.sel(month=[2, 3]).mean()
    )
    summer_minus_winter_south = float(
        south.sel(month=[2, 3]).mean() - south.sel(month=[8, 9]).mean()
    )
    assert summer_minus_winter_north > 2.0  # degC
    assert summer_minus_winter_south > 2.0


def test_enso_variance_peaks_in_the_2_to_7_year_band(ds):
    _, nino, _ = _indices(ds)
    freq, power = scipy.signal.welch(nino, fs=12.0, nperseg=240)  # cycles per year
    peak_period = 1.0 / freq[np.argmax(power)]
    assert 2.0 <= peak_period <= 7.0
    band = (freq >= 1 / 7) & (freq <= 1 / 2)
    assert power[band].sum() / power[freq > 0].sum() > 0.5
    assert 0.5 < nino.std() < 1.5  # degC, like the observed index


def test_heat_content_leads_nino34_by_several_months(ds):
    _, nino, heat = _indices(ds)
    lags = np.arange(25)
    corr = np.array([np.corrcoef(heat[: len(heat) - k], nino[k:])[0, 1] for k in lags])
    best = lags[np.argmax(corr)]
    assert 4 <= best <= 14
    assert corr.max() > 0.4 and corr.max() > corr[0] + 0.3


def test_six_month_lead_is_predictable_beyond_persistence(ds):
    """A linear forecast from (Nino3.4, heat content) beats persistence out of sample."""
    _, nino, heat = _indices(ds)
    lead, split = 6, 400
    features = np.column_stack([nino[:-lead], heat[:-lead], np.ones(len(nino) - lead)])
    future = nino[lead:]
    beta = np.linalg.lstsq(features[:split], future[:split], rcond=None)[0]
    skill = np.corrcoef(features[split:] @ beta, future[split:])[0, 1]
    persistence = np.corrcoef(nino[:-lead][split:], future[split:])[0, 1]
    assert skill > 0.5 and skill > persistence + 0.2


def test_events_peak_in_boreal_winter():
    long = cd.synthetic.enso(1200, nlat=8, nlon=16, seed=1)
    month, nino, _ = _indices(long)
    winter = np.std(nino[np.isin(month, [11, 12, 1])])
    spring = np.std(nino[np.isin(month, [4, 5, 6])])
    assert winter > 1.1 * spring


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n_months": 10}, "n_months"), ({"nlat": 4}, "nlat"), ({"nlon": 2.5}, "nlon")],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"data\.source_args\.{field}: expected"):
        cd.synthetic.enso(**kwargs)
