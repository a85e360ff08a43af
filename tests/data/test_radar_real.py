"""Real radar (pysteps-data layout): grid, units, missing data and values equal to pysteps'.

The data are not in the repository: the tests look for the shared copy next to the checkout
(``../shared/data/pysteps-data``) and skip, saying so, when it is absent.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from climml.data import load_source
from climml.data.real import radar as real_radar
from climml.data.real.radar import ENV_VAR, data_root, radar_fmi, radar_knmi, radar_mch
from climml.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pysteps-data"


@pytest.fixture
def pysteps_data(monkeypatch):
    """The pysteps-data folder, also set as $CLIMML_RADAR_DATA."""
    if not (SHARED / "radar" / "mch").is_dir():
        pytest.skip(f"radar data absent: no pysteps-data folder at {SHARED}")
    monkeypatch.setenv(ENV_VAR, str(SHARED))
    return SHARED


def test_mch_grid_units_events_and_time_axis(pysteps_data):
    ds = radar_mch()
    assert ds["rain_rate"].shape == (120, 640, 710) and ds["rain_rate"].attrs["units"] == "mm/h"
    assert ds["rain_rate"].dtype == np.float32
    # CCS4: 1 km pixels, x 255..965 km and y -160..480 km (LV03), rows north to south.
    np.testing.assert_array_equal(ds["x"], 255.5 + np.arange(710))
    np.testing.assert_array_equal(ds["y"], 479.5 - np.arange(640))
    assert ds["x"].attrs["units"] == "km"
    events, counts = np.unique(ds["event"], return_counts=True)
    np.testing.assert_array_equal(events, [20150515, 20160711, 20170131])
    np.testing.assert_array_equal(counts, [40, 40, 40])
    steps = np.diff(ds["time"].values)
    same = ds["event"].values[1:] == ds["event"].values[:-1]
    assert np.all(steps[same] == np.timedelta64(5, "m")) and np.all(
        steps[~same] > np.timedelta64(1, "D")
    )
    # AQC151351545: 2015, day 135 (15 May), 15:45.
    assert ds["time"].values[0] == np.datetime64("2015-05-15T15:45")


def test_mch_missing_is_nan_and_rain_is_plausible(pysteps_data):
    ds = radar_mch(events=[20160711])
    path = sorted((pysteps_data / "radar" / "mch" / "20160711").glob("AQC*.gif"))[20]
    frame = ds["rain_rate"].isel(time=20).values
    palette = np.asarray(Image.open(path))
    np.testing.assert_array_equal(np.isnan(frame), palette == 255)  # 255: no radar coverage
    assert 0.1 < np.isnan(frame).mean() < 0.6  # the composite covers Switzerland and around
    rain = frame[np.isfinite(frame)]
    assert rain.min() == 0.0 and 20.0 < rain.max() < 300.0  # a summer convective event
    assert 0.01 < (rain >= 0.1).mean() < 0.6


def test_mch_equals_pysteps_importer_then_to_rainrate(pysteps_data):
    pysteps = pytest.importorskip("pysteps")
    from pysteps.utils import conversion

    ds = radar_mch()
    paths = sorted((pysteps_data / "radar" / "mch").rglob("AQC*.gif"))
    for i in (0, 57, 119):
        precip, _, meta = pysteps.io.importers.import_mch_gif(
            str(paths[i]), product="AQC", unit="mm", accutime=5
        )
        rate, meta = conversion.to_rainrate(precip, meta)
        assert meta["unit"] == "mm/h"
        ours = ds["rain_rate"].isel(time=i).values
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(rate))
        np.testing.assert_allclose(ours, rate.astype(np.float32), rtol=1e-6, equal_nan=True)


def test_fmi_equals_pysteps_importer_then_to_rainrate(pysteps_data):
    pysteps = pytest.importorskip("pysteps")
    from pysteps.utils import conversion

    ds = radar_fmi()
    assert ds["rain_rate"].shape == (80, 1226, 760)
    np.testing.assert_array_equal(np.unique(ds["event"]), [20160928, 20170509])
    paths = sorted((pysteps_data / "radar" / "fmi" / "pgm").rglob("*.pgm.gz"))
    for i in (0, 45):
        dbz, _, meta = pysteps.io.importers.import_fmi_pgm(str(paths[i]), gzipped=True)
        rate, _ = conversion.to_rainrate(dbz, meta)
        ours = ds["rain_rate"].isel(time=i).values
        assert np.isnan(ours).any() and (ours == 0).any()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(rate))
        np.testing.assert_allclose(ours, rate.astype(np.float32), rtol=1e-5, equal_nan=True)


def test_crop_and_coarsen_cut_and_average_the_full_grid(pysteps_data):
    full = radar_mch(events=["20150515"]).isel(time=slice(10, 12)).load()
    part = radar_mch(events=["20150515"], crop=[300, 200, 64]).isel(time=slice(10, 12)).load()
    np.testing.assert_array_equal(part["rain_rate"], full["rain_rate"][:, 300:364, 200:264])
    np.testing.assert_array_equal(part["x"], full["x"][200:264])
    coarse = radar_mch(events=[20150515], crop=[300, 200, 64], coarsen=4).isel(time=slice(10, 12))
    blocks = part["rain_rate"].values.reshape(2, 16, 4, 16, 4).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_allclose(coarse["rain_rate"], blocks, rtol=1e-6)
    np.testing.assert_allclose(coarse["y"], part["y"].values.reshape(16, 4).mean(axis=1))
    centred = radar_mch(crop=256)
    assert centred.sizes["y"] == centred.sizes["x"] == 256
    assert float(centred["x"][0]) == 255.5 + (710 - 256) // 2


def test_named_source_reads_through_the_environment_variable(pysteps_data):
    ds = load_source("real.radar_mch", crop=32, coarsen=2, events=[20170131])
    assert ds.sizes == {"time": 40, "y": 16, "x": 16}
    assert pd.Timestamp(ds["time"].values[0]).strftime("%Y%m%d") == "20170131"


def test_root_argument_comes_first_then_the_environment(pysteps_data, monkeypatch, tmp_path):
    assert data_root(pysteps_data) == pysteps_data / "radar" / "mch"
    assert data_root() == pysteps_data / "radar" / "mch"  # from the environment variable
    with pytest.raises(DataError, match="data.source_args.root.*radar/mch"):
        data_root(tmp_path)  # an explicit root wins, even a wrong one
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=ENV_VAR):
        radar_mch()


def test_pysteps_settings_are_the_fallback(pysteps_data, monkeypatch):
    pysteps = pytest.importorskip("pysteps")
    monkeypatch.delenv(ENV_VAR)
    sources = pysteps.rcparams.data_sources
    monkeypatch.setitem(sources["mch"], "root_path", str(pysteps_data / "radar" / "mch"))
    assert data_root() == pysteps_data / "radar" / "mch"
    monkeypatch.setitem(sources["mch"], "root_path", "/nonexistent/radar/mch")
    with pytest.raises(DataError, match=ENV_VAR):
        data_root()


def test_unset_root_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(real_radar, "_pysteps_folder", lambda provider: None)
    with pytest.raises(DataError, match=f"data.source_args.root.*{ENV_VAR}"):
        radar_mch()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(crop=[0, 0, 1000]), "crop"),
        (dict(crop="big"), "crop"),
        (dict(coarsen=0), "coarsen"),
        (dict(events=[20990101]), "events"),
    ],
)
def test_bad_arguments_name_the_field(pysteps_data, kwargs, field):
    with pytest.raises((ConfigError, DataError), match=f"data.source_args.{field}"):
        radar_mch(**kwargs)


def test_mch_windows_stay_inside_one_event(pysteps_data):
    from climml.data import split_anchors

    ds = radar_mch(crop=16)
    anchors = split_anchors(
        ds.indexes["time"], {"all": ("2015-05-15", "2017-01-31")}, input_steps=4, max_lead=6
    )["all"]
    event = ds["event"].values
    assert np.all(event[anchors - 3] == event[anchors + 6])
    assert len(anchors) == 3 * (40 - 4 - 6 + 1)  # every window inside each 40-frame event


@pytest.fixture
def knmi_data(pysteps_data):
    """The KNMI folder of pysteps-data (h5py needed to read it)."""
    pytest.importorskip("h5py", reason="KNMI's HDF5 files need h5py (climml[radar])")
    folder = pysteps_data / "radar" / "KNMI"
    if not folder.is_dir():
        pytest.skip(f"KNMI radar data absent: no {folder}")
    return folder


def test_knmi_grid_units_missing_and_event_is_the_day(knmi_data):
    import h5py

    ds = radar_knmi()
    assert ds["rain_rate"].shape == (92, 765, 700) and ds["rain_rate"].attrs["units"] == "mm/h"
    assert ds["rain_rate"].dtype == np.float32
    # KNMI's stereographic grid: 1 km pixels, x 0..700 km, y -3650..-4415 km, rows north to south.
    np.testing.assert_array_equal(ds["x"], 0.5 + np.arange(700))
    np.testing.assert_array_equal(ds["y"], -3650.5 - np.arange(765))
    np.testing.assert_array_equal(ds["event"], np.full(92, 20100826))
    expected_times = pd.date_range("2010-08-26 00:00", periods=92, freq="5min")
    np.testing.assert_array_equal(ds["time"].values, expected_times.values)
    path = sorted(knmi_data.rglob("*.h5"))[45]
    with h5py.File(path, "r") as f:
        raw = f["image1/image_data"][()]
    frame = ds["rain_rate"].isel(time=45).values
    np.testing.assert_array_equal(np.isnan(frame), raw == 65535)
    assert 0.1 < np.isnan(frame).mean() < 0.9
    rain = frame[np.isfinite(frame)]
    # 0.01 mm in 5 minutes is the resolution: 0.12 mm/h steps.
    np.testing.assert_allclose(rain, np.round(rain / 0.12) * 0.12, atol=1e-5)
    assert rain.min() == 0.0 and 5.0 < rain.max() < 300.0 and 0.05 < (rain > 0).mean() < 0.95


def test_knmi_equals_pysteps_importer_then_to_rainrate(knmi_data):
    pysteps = pytest.importorskip("pysteps")
    from pysteps.utils import conversion

    ds = radar_knmi()
    paths = sorted(knmi_data.rglob("*.h5"))
    for i in (0, 45, 91):
        precip, _, meta = pysteps.io.importers.import_knmi_hdf5(
            str(paths[i]), qty="ACRR", accutime=5
        )
        rate, meta = conversion.to_rainrate(precip, meta)
        assert meta["unit"] == "mm/h" and meta["yorigin"] == "upper"
        ours = ds["rain_rate"].isel(time=i).values
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(rate))
        np.testing.assert_allclose(ours, rate.astype(np.float32), rtol=1e-6, equal_nan=True)
    # The same grid as pysteps' metadata (km): outer edges and pixel size.
    assert (meta["x1"], meta["x2"]) == (ds["x"].values[0] - 0.5, ds["x"].values[-1] + 0.5)
    assert (meta["y1"], meta["y2"]) == (ds["y"].values[-1] - 0.5, ds["y"].values[0] + 0.5)
    assert meta["xpixelsize"] == meta["ypixelsize"] == 1.0 and meta["cartesian_unit"] == "km"


def test_knmi_named_source_crops_and_coarsens(knmi_data):
    full = radar_knmi().isel(time=slice(40, 42)).load()
    ds = load_source("real.radar_knmi", crop=[360, 170, 64], coarsen=4, events=[20100826])
    assert ds.sizes == {"time": 92, "y": 16, "x": 16}
    part = full["rain_rate"].values[:, 360:424, 170:234].astype(np.float64)
    assert np.nanmax(part) > 1.0 and np.isnan(part).any()  # rain, and a missing pixel
    blocks = part.reshape(2, 16, 4, 16, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(ds["rain_rate"].isel(time=slice(40, 42)), blocks, rtol=1e-6)
    np.testing.assert_array_equal(ds["x"], 170 + 2.0 + 4 * np.arange(16))


def test_knmi_without_h5py_says_to_install_the_radar_extra(knmi_data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    with pytest.raises(ConfigError, match=r"real.radar_knmi.*climml\[radar\]"):
        radar_knmi()
