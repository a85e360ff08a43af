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


# --------------------------------------------------------------------------- real: HadISST month


def test_hadisst_labels_follow_the_shipped_field():
    from climml.data.real.hadisst import ICE_SST, hadisst_field, hadisst_ice

    field = hadisst_field().values
    ds = hadisst_ice(3, seed=0)
    assert ds["label"].shape == (3, 180, 360)
    for t, shift in enumerate(ds["lon_shift"].values):
        labels = np.roll(ds["label"].values[t], -shift, axis=1)  # undo the rotation
        np.testing.assert_array_equal(labels == 2, np.isnan(field))  # land = missing SST
        np.testing.assert_array_equal(labels == 1, np.isclose(field, ICE_SST, atol=1e-3))
    frac = np.bincount(ds["label"].values.ravel(), minlength=3) / ds["label"].size
    np.testing.assert_allclose(frac, [0.5841, 0.0771, 0.3388], atol=1e-3)  # Aug 2012 globe


def test_hadisst_inputs_are_coarse_block_means():
    from climml.data.real.hadisst import hadisst_field, hadisst_ice

    ds = hadisst_ice(2, coarsen=4, noise=0.0, fraction_noise=0.0, seed=1)
    field = np.roll(hadisst_field().values, int(ds["lon_shift"].values[0]), axis=1)
    sst, frac = ds["sst"].values[0], ds["ocean_fraction"].values[0]
    block = (slice(40, 44), slice(100, 104))
    cells = field[block]
    np.testing.assert_allclose(frac[block], np.mean(~np.isnan(cells)))
    if np.any(~np.isnan(cells)):
        np.testing.assert_allclose(sst[block], np.nanmean(cells), rtol=1e-5)
    blocks = frac.reshape(45, 4, 90, 4)
    assert np.all(blocks == blocks[:, :1, :, :1])  # constant within every 4x4 block
    noisy = hadisst_ice(2, coarsen=4, seed=1)
    assert 0.45 < float(np.nanstd(noisy["sst"].values[0] - sst)) < 0.55  # 0.5 degC by default
    with pytest.raises(ConfigError, match="coarsen"):
        hadisst_ice(2, coarsen=7)
