"""Real series shipped in dependencies: Niño 1+2 SST (statsmodels) and Seattle weather (vega)."""

import socket
import urllib.request

import numpy as np
import pandas as pd
import pytest

from climml.data import WindowLoader, load_source
from climml.data.real import nino12, seattle_weather
from climml.data.real.seattle import WEATHER_TYPES
from climml.errors import DataError


def test_nino12_is_the_statsmodels_table_on_a_monthly_axis():
    from statsmodels.datasets import elnino

    table = elnino.load_pandas().data
    ds = nino12()
    assert ds.sizes["time"] == 732
    np.testing.assert_array_equal(
        ds.time.values, pd.date_range("1950-01-01", "2010-12-01", freq="MS").values
    )
    assert float(ds.nino12.sel(time="1950-03-01")) == table["MAR"].iloc[0]
    assert float(ds.nino12.sel(time="2010-12-01")) == table["DEC"].iloc[-1]
    assert ds.nino12.attrs["units"] == "degC" and "public domain" in ds.attrs["license"]


def test_nino12_anomaly_and_seasonal_features():
    ds = nino12(base_period=("1951-01", "1980-12"))
    base = ds.nino12_anom.sel(time=slice("1951-01", "1980-12"))
    np.testing.assert_allclose(base.groupby("time.month").mean(), 0.0, atol=1e-9)
    # The 1997-98 El Nino: Nino 1+2 more than 3 degC above normal at its December 1997 peak.
    assert float(ds.nino12_anom.sel(time="1997-12-01")) > 3.0
    month = ds.time.dt.month.values
    np.testing.assert_allclose(ds.month_sin, np.sin(2 * np.pi * (month - 1) / 12), atol=1e-12)
    np.testing.assert_allclose(ds.month_sin**2 + ds.month_cos**2, 1.0, atol=1e-12)


def test_nino12_rejects_a_base_period_outside_the_record():
    with pytest.raises(DataError, match="base_period"):
        nino12(base_period=("1900-01", "1920-12"))


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")


def test_seattle_weather_loads_the_bundled_file_without_network(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    ds = seattle_weather()
    assert ds.sizes["time"] == 1461  # 2012-01-01 .. 2015-12-31, every day
    np.testing.assert_array_equal(np.diff(ds.time.values), np.timedelta64(1, "D"))
    assert float(ds.precipitation.isel(time=1)) == 10.9  # 2012-01-02 in the CSV
    assert ds.temp_max.attrs["units"] == "degC"
    names = np.array(ds.weather.attrs["flag_meanings"].split())[ds.weather.values]
    assert list(names[:3]) == ["drizzle", "rain", "rain"]
    assert set(names) == set(WEATHER_TYPES)
    assert bool((ds.temp_min <= ds.temp_max).all())


def test_seattle_weather_refuses_to_download(monkeypatch):
    from vega_datasets.core import LocalDataLoader

    monkeypatch.setattr(LocalDataLoader, "_datasets", {})  # as if the file were not bundled
    with pytest.raises(DataError, match="bundled local file"):
        seattle_weather()


def test_sources_feed_the_window_loader_as_feature_channels():
    ds = load_source("real.seattle_weather")
    inputs = ["precipitation", "temp_max", "temp_min", "wind", "doy_sin", "doy_cos"]
    loader = WindowLoader(
        ds, inputs=inputs, target="temp_max", input_steps=14, leads=[1, 2],
        anchors=np.arange(13, 100), batch_size=8, prefetch=0,
    )  # fmt: skip
    assert loader.spec.input_shape == (14, 6) and loader.spec.output_shape == (2,)
    batch = next(iter(loader))
    # Channel 1 of the window is temp_max; its last step is the anchor's value.
    np.testing.assert_allclose(batch.x[0, -1, 1], ds.temp_max.values[13], rtol=1e-6)
    np.testing.assert_allclose(batch.y[0], ds.temp_max.values[[14, 15]], rtol=1e-6)
    assert load_source("real.nino12").sizes["time"] == 732
