"""Radar preprocessing: rain transforms, event-aware windows and splits, rain-biased crops."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

from climml.data import Normalizer, WindowLoader, split_anchors
from climml.data.rain import RainCrop, RainTransform, rain_transform
from climml.data.splits import time_breaks
from climml.data.synthetic.radar import radar
from climml.errors import ConfigError, DataError

RATES = np.array([0.0, 0.0, 0.05, 0.1, 0.37, 1.0, 12.5, 180.0, np.nan])


@pytest.fixture(scope="module")
def events():
    """4 events of 16 frames, one a day (12:00 to 13:15), 32 x 32 km."""
    return radar(events=4, frames=16, size=32, spacing="1D", start="2021-06-01T12:00", seed=0)


def test_dbr_is_pysteps_db_transform_and_inverts_exactly_outside_the_dry_gap():
    t = RainTransform("dbr", 0.1)
    dbr = t.forward(RATES)
    wet = RATES >= 0.1
    np.testing.assert_allclose(dbr[wet], 10 * np.log10(RATES[wet]), rtol=1e-12)
    assert np.all(dbr[RATES < 0.1] == -15.0)  # 5 dB below 10 log10(0.1) = -10 dBR
    assert np.isnan(dbr[-1])
    back = t.inverse(dbr)
    expect = np.where(RATES < 0.1, 0.0, RATES)  # 0.05 mm/h is under the threshold: lost
    np.testing.assert_allclose(back, expect, rtol=1e-12, equal_nan=True)
    transformation = pytest.importorskip("pysteps.utils.transformation")
    ref, meta = transformation.dB_transform(RATES[:-1].copy(), threshold=0.1)
    np.testing.assert_allclose(dbr[:-1], ref, rtol=1e-12)
    assert meta["zerovalue"] == t.zero_value


def test_log_inverts_every_rate_and_keeps_xarray_lazy():
    t = rain_transform("log", 0.1)
    np.testing.assert_allclose(t.forward(RATES), np.log(RATES + 0.1), rtol=1e-12)
    np.testing.assert_allclose(t.inverse(t.forward(RATES)), RATES, rtol=1e-12, atol=1e-15)
    lazy = xr.DataArray(RATES, dims="n").chunk(3)
    for name in ("log", "dbr"):
        t = rain_transform(name)
        out = t.forward(lazy)
        assert out.chunks is not None  # still dask
        np.testing.assert_allclose(out.values, t.forward(RATES), equal_nan=True)
        np.testing.assert_allclose(t.inverse(out).values, t.inverse(t.forward(RATES)))
    assert rain_transform("none") is None
    with pytest.raises(ConfigError, match="data.transform"):
        rain_transform("sqrt")
    with pytest.raises(ConfigError, match="data.transform_threshold"):
        rain_transform("dbr", 0.0)


def test_normalizer_standardizes_the_transformed_rain_and_inverts_to_mm_per_hour(events):
    t = RainTransform("dbr", 0.1)
    norm = Normalizer.fit(
        events,
        variables=["rain_rate"],
        dims=("time", "y", "x"),
        transform=t,
        time_range=("2021-06-01", "2021-06-02"),
    )
    train = events.sel(time=slice("2021-06-01", "2021-06-02"))
    dbr = t.forward(train["rain_rate"].values.astype(np.float64))
    np.testing.assert_allclose(float(norm.mean["rain_rate"]), dbr.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(norm.std["rain_rate"]), dbr.std(), rtol=1e-5)
    z = norm.apply(events[["rain_rate"]])["rain_rate"]
    np.testing.assert_allclose(
        z.sel(time=train.time).values, (dbr - dbr.mean()) / dbr.std(), rtol=1e-4, atol=1e-5
    )
    # Rain is 0 or >= the threshold, so the round trip is exact (to float32).
    back = norm.invert(z.values, "rain_rate")
    np.testing.assert_allclose(back, events["rain_rate"].values, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="data.transform.*u in km/h"):
        Normalizer.fit(events, variables=["rain_rate", "u"], transform=t)
    restored = Normalizer.from_dataset(norm.to_dataset())
    assert restored.transform == t
    np.testing.assert_allclose(restored.invert(z, "rain_rate").values, back, rtol=1e-6)


def test_windows_never_span_the_gap_between_events(events):
    breaks = time_breaks(events.indexes["time"])
    assert breaks.sum() == 3 and np.all(np.flatnonzero(breaks) == [15, 31, 47])
    anchors = split_anchors(
        events.indexes["time"], {"all": ("2021-06-01", "2021-06-04")}, input_steps=4, max_lead=6
    )["all"]
    event = events["event"].values
    assert np.all(event[anchors - 3] == event[anchors + 6])  # first input, last target
    # Every window that fits inside an event, and no other: 16 - 4 - 6 + 1 = 7 per event.
    assert len(anchors) == 4 * 7
    # Without the check, 3 windows per event boundary would straddle the gap:
    straddling = [a for a in range(3, 64 - 6) if event[a - 3] != event[a + 6]]
    assert len(straddling) == 3 * 9 and not set(straddling) & set(anchors)
    # A monthly axis (28-31 day steps) has no breaks.
    months = xr.date_range("1950-01-01", periods=30, freq="MS")
    assert not time_breaks(months).any()


def test_split_by_event_day_through_date_ranges(events):
    splits = {
        "train": ("2021-06-01", "2021-06-02"),
        "val": ("2021-06-03", "2021-06-03"),
        "test": ("2021-06-04", "2021-06-04"),
    }
    anchors = split_anchors(events.indexes["time"], splits, input_steps=2, max_lead=3)
    event = events["event"].values
    assert set(event[anchors["train"]]) == {0, 1}
    assert set(event[anchors["val"]]) == {2} and set(event[anchors["test"]]) == {3}
    for a in anchors.values():
        assert np.all(event[a - 1] == event[a + 3])
    assert len(anchors["train"]) == 2 * (16 - 2 - 3 + 1)
    # A window longer than an event (8 + 12 > 16 steps) fits in no split.
    with pytest.raises(ConfigError, match="data.splits.train.*without a time break"):
        split_anchors(events.indexes["time"], splits, input_steps=8, max_lead=12)


def _loader(ds, crop=None, seed=0, **kw):
    anchors = split_anchors(
        ds.indexes["time"], {"all": ("2021-06-01", "2021-06-30")}, input_steps=2, max_lead=2
    )["all"]
    return WindowLoader(
        ds,
        inputs=["rain_rate"],
        target="rain_rate",
        input_steps=2,
        leads=[1, 2],
        anchors=anchors,
        batch_size=16,
        shuffle=True,
        seed=seed,
        mask_channel=False,
        prefetch=0,
        crop=crop,
        **kw,
    )


def _wet_fraction(batches):
    return float(np.mean([(b.y[b.weight > 0] > 0).mean() for b in batches]))


def test_rain_biased_crops_hold_more_rain_than_uniform_ones():
    # Sparse rain (5% of the pixels) on 64 x 64, crops of 16 x 16.
    ds = radar(
        events=6,
        frames=12,
        size=64,
        wet_fraction=0.05,
        spacing="1D",
        start="2021-06-01T12:00",
        seed=1,
    )
    full = _wet_fraction(_loader(ds).epoch(0))
    uniform = _wet_fraction(_loader(ds, RainCrop(16, 0.0)).epoch(0))
    biased = _wet_fraction(_loader(ds, RainCrop(16, 1.0)).epoch(0))
    half = _wet_fraction(_loader(ds, RainCrop(16, 0.5)).epoch(0))
    # Uniform crops estimate the field's wet fraction (within sampling noise of 150 crops);
    # proportional-to-rain crops hold far more; half-biased ones lie between.
    assert abs(uniform - full) < 0.02
    assert biased > 2 * full and uniform < half < biased


def test_crops_cut_one_region_of_inputs_and_targets_reproducibly(events):
    crop = RainCrop(12, 0.7)
    loader = _loader(events, crop)
    assert loader.spec.input_shape == (2, 12, 12, 1) and loader.spec.output_shape == (2, 12, 12)
    first = list(loader.epoch(1))
    again = list(_loader(events, crop).epoch(1))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
    other = list(_loader(events, crop).epoch(2))
    assert any(not np.array_equal(a.x, b.x) for a, b in zip(first, other, strict=True))
    full = {
        b.anchor[i]: (b.x[i], b.y[i])
        for b in _loader(events).epoch(1)
        for i in range(len(b.anchor))
        if b.weight[i] > 0
    }
    for batch in first:
        # The input (rain_rate itself) and the target history are the same crop.
        np.testing.assert_array_equal(batch.x[..., 0], batch.target_history)
        for i in np.flatnonzero(batch.weight > 0):
            x_full, y_full = full[batch.anchor[i]]
            # Find the crop in the full window: the target must come from the same corner.
            hits = [
                (r, c)
                for r in range(21)
                for c in range(21)
                if np.array_equal(x_full[:, r : r + 12, c : c + 12, 0], batch.x[i, ..., 0])
            ]
            assert any(
                np.array_equal(y_full[:, r : r + 12, c : c + 12], batch.y[i]) for r, c in hits
            )


def test_crop_errors_name_the_field(events):
    with pytest.raises(ConfigError, match="data.crop.size"):
        _loader(events, RainCrop(33))
    with pytest.raises(ConfigError, match="data.crop.rain_bias"):
        RainCrop(8, 1.5)
    with pytest.raises(ConfigError, match="data.crop.size"):
        RainCrop(0)


@pytest.mark.slow
def test_config_transform_and_crop_reach_the_pipeline(tmp_path):
    from climml import config, pipeline

    cfg = config.from_dict(
        {
            "model": {"name": "cnn"},
            "data": {
                "source": "synthetic.radar",
                "source_args": {"events": 3, "frames": 12, "size": 32},
                "inputs": ["rain_rate"],
                "target": "rain_rate",
                "input_steps": 2,
                "leads": [1, 2],
                "splits": {
                    "train": ["2021-06-01", "2021-06-01"],
                    "val": ["2021-06-02", "2021-06-02"],
                    "test": ["2021-06-03", "2021-06-03"],
                },
                "normalize": {"dims": ["time", "y", "x"]},
                "transform": "dbr",
                "crop": {"size": 16, "rain_bias": 1.0},
                "batch_size": 4,
            },
            "eval": {"area_weighting": "none"},
        }
    )
    exp = pipeline.prepare(cfg)
    assert exp.normalizer.transform == RainTransform("dbr", 0.1)
    batch = next(iter(exp.loader("train", training=True)))
    assert batch.x.shape[2:4] == (16, 16)
    assert next(iter(exp.loader("val"))).x.shape[2:4] == (32, 32)
    with pytest.raises(ConfigError, match="data.transform"):
        pipeline.prepare(
            dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, transform="x"))
        )
