"""Synthetic extreme weather: structure, imbalance, and labels that follow from the fields."""

import numpy as np
import pytest

from climml.data.synthetic import weather
from climml.data.synthetic.weather import detect, extreme_weather
from climml.errors import ConfigError

KW = dict(nlat=32, nlon=64, lat_max=60.0)


@pytest.fixture(scope="module")
def ds():
    return extreme_weather(32, seed=0, **KW)


def test_variables_dims_units_and_classes(ds):
    assert set(ds.data_vars) == {"iwv", "u850", "v850", "slp", "label"}
    for name in ds.data_vars:
        assert ds[name].dims == ("time", "lat", "lon")
    assert ds["label"].dtype == np.int8
    assert set(np.unique(ds["label"])) <= {0, 1, 2}
    assert ds["slp"].attrs["units"] == "hPa" and ds["iwv"].attrs["units"] == "kg m-2"
    assert float(ds["iwv"].min()) >= 0.0  # vapour is never negative
    # moist tropics, dry high latitudes
    zonal = ds["iwv"].mean(("time", "lon"))
    assert float(zonal.sel(lat=0, method="nearest")) > 3 * float(zonal.isel(lat=0))


def test_realistic_class_imbalance(ds):
    frac = np.bincount(ds["label"].values.ravel(), minlength=3) / ds["label"].size
    assert 0 < frac[1] < 0.01  # tropical cyclones: under 1% of the pixels
    assert 0.002 < frac[2] < 0.10  # atmospheric rivers: a few percent


def test_labels_are_detected_from_the_fields(ds):
    lat, lon = ds["lat"].values, ds["lon"].values
    clim = weather._climatology(np.meshgrid(lat, lon, indexing="ij")[0])["iwv"]
    for t in range(ds.sizes["time"]):
        fields = {v: ds[v].values[t].astype(np.float64) for v in ("iwv", "u850", "v850", "slp")}
        np.testing.assert_array_equal(detect(fields, lat, lon, clim), ds["label"].values[t])


def test_cyclone_pixels_are_deep_lows_with_strong_cyclonic_winds(ds):
    cyc = ds["label"].values == 1
    speed = np.hypot(ds["u850"].values, ds["v850"].values)
    assert np.all(speed[cyc] >= weather.TC_WIND) and np.all(ds["slp"].values[cyc] <= weather.TC_SLP)
    lat = np.broadcast_to(ds["lat"].values[None, :, None], cyc.shape)
    north, south = cyc & (lat > 0), cyc & (lat < 0)
    vort = np.stack(
        [
            weather._relative_vorticity(
                ds["u850"].values[t], ds["v850"].values[t], ds["lat"].values, ds["lon"].values
            )
            for t in range(ds.sizes["time"])
        ]
    )
    assert np.all(vort[north] > 0) and np.all(vort[south] < 0)  # anticlockwise in the north
    ivt = ds["iwv"].values * speed
    assert np.all(ivt[ds["label"].values == 2] >= weather.AR_IVT)


def test_without_events_there_is_nothing_to_label():
    calm = extreme_weather(8, seed=0, cyclones=0.0, rivers=0.0, **KW)
    assert np.mean(calm["label"].values != 0) < 1e-3


def test_seeded_and_reproducible():
    a, b = extreme_weather(4, seed=3, **KW), extreme_weather(4, seed=3, **KW)
    c = extreme_weather(4, seed=4, **KW)
    np.testing.assert_array_equal(a["iwv"], b["iwv"])
    assert not np.array_equal(a["iwv"], c["iwv"])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_times": 0}, "n_times"),
        ({"nlat": 4}, "nlat"),
        ({"cyclones": -1.0}, "cyclones"),
        ({"lat_max": 30.0}, "lat_max"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        extreme_weather(**kwargs)
