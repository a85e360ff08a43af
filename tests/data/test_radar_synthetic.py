"""Synthetic radar: layout, wet fraction, spectral slope and advection match the parameters."""

import numpy as np
import pandas as pd
import pytest

from climml.data import load_source
from climml.data.synthetic.radar import STEP_MINUTES, radar
from climml.errors import ConfigError
from climml.metrics import radial_psd


def _dbr_slope(rain, threshold, rings=(2, 32)):
    """Fitted log-log slope of the frame-averaged radial spectrum (climml.metrics.radial_psd)
    of 10 log10 R with dry pixels at the threshold, over the given rings."""
    dbr = 10 * np.log10(np.maximum(rain.astype(np.float64), threshold))
    k, psd = radial_psd(dbr)
    power = np.asarray(psd).mean(axis=0)
    lo, hi = rings
    return np.polyfit(np.log(np.asarray(k)[lo : hi + 1]), np.log(power[lo : hi + 1]), 1)[0]


def test_layout_units_events_and_time_gaps():
    ds = radar(events=3, frames=10, size=32, spacing="6h", start="2020-07-01T10:00", seed=0)
    assert ds["rain_rate"].dims == ("time", "y", "x") and ds["rain_rate"].shape == (30, 32, 32)
    assert ds["rain_rate"].attrs["units"] == "mm/h" and ds["y"].attrs["units"] == "km"
    np.testing.assert_array_equal(ds["x"], np.arange(32) + 0.5)
    np.testing.assert_array_equal(ds["event"], np.repeat([0, 1, 2], 10))
    steps = np.diff(ds["time"].values) / pd.Timedelta(minutes=1)
    gap = 6 * 60 - 9 * STEP_MINUTES  # next start 6 h later, after 9 steps of 5 min
    np.testing.assert_array_equal(steps, [5] * 9 + [gap] + [5] * 9 + [gap] + [5] * 9)
    assert float(ds["rain_rate"].min()) == 0.0 and np.isfinite(ds["rain_rate"]).all()
    assert load_source("synthetic.radar", events=1, frames=2, size=16).sizes["time"] == 2


def test_same_seed_same_data_other_seed_other_data():
    a, b = radar(events=2, frames=4, size=32, seed=3), radar(events=2, frames=4, size=32, seed=3)
    np.testing.assert_array_equal(a["rain_rate"], b["rain_rate"])
    c = radar(events=2, frames=4, size=32, seed=4)
    assert not np.array_equal(a["rain_rate"], c["rain_rate"])


@pytest.mark.parametrize("wet_fraction", [0.05, 0.15, 0.4])
def test_every_frame_has_the_wet_fraction(wet_fraction):
    ds = radar(events=2, frames=6, size=64, wet_fraction=wet_fraction, seed=1)
    rain = ds["rain_rate"].values
    wet = (rain >= ds["rain_rate"].attrs["threshold"]).mean(axis=(1, 2))
    # The cut is the frame's own quantile: off by at most the one pixel at the quantile.
    np.testing.assert_allclose(wet, wet_fraction, atol=1.5 / 64**2)
    assert np.array_equal(rain > 0, rain >= 0.1)  # rain is 0 or at least the threshold


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_log_rain_spectrum_has_slope_beta(beta):
    # Nearly all pixels wet: dBR is the Gaussian field itself, so its slope is beta up to the
    # estimation error of 24 frames (measured within 0.05; tolerance 0.12).
    ds = radar(events=3, frames=8, size=128, beta=beta, wet_fraction=0.999, seed=2)
    assert abs(-_dbr_slope(ds["rain_rate"].values, 0.1) - beta) < 0.12


@pytest.mark.parametrize("beta", [2.0, 2.5, 3.0])
def test_intermittent_rain_keeps_the_slope_within_the_dry_cut_flattening(beta):
    # With 85% dry pixels dBR is the Gaussian field clipped at its 85% quantile; the clip adds
    # flat-topped areas whose edges flatten the spectrum slightly (measured 0.2-0.3 shallower).
    ds = radar(events=3, frames=8, size=128, beta=beta, wet_fraction=0.15, seed=2)
    slope = -_dbr_slope(ds["rain_rate"].values, 0.1)
    assert beta - 0.45 < slope < beta + 0.05
    steeper = radar(events=3, frames=8, size=128, beta=beta + 0.5, wet_fraction=0.15, seed=2)
    assert -_dbr_slope(steeper["rain_rate"].values, 0.1) > slope + 0.3


def _origin(patch, frame, guess, reach):
    """Top-left (row, col) in ``frame`` where ``patch`` correlates best, searched within
    ``reach`` pixels of ``guess``; and that correlation."""
    h = patch.shape[0]
    best, where = -np.inf, None
    for r in range(guess[0] - reach, guess[0] + reach + 1):
        for c in range(guess[1] - reach, guess[1] + reach + 1):
            if 0 <= r <= frame.shape[0] - h and 0 <= c <= frame.shape[1] - h:
                corr = np.corrcoef(patch.ravel(), frame[r : r + h, c : c + h].ravel())[0, 1]
                if corr > best:
                    best, where = corr, np.array([r, c])
    return where, best


def _back_trajectory(u, v, point, steps):
    """Where the air at ``point`` (row, col) of frame ``steps`` was at frame 0: Euler steps
    back through the stored wind (km/h, 1 km pixels), independent of the generator's code."""
    dt = STEP_MINUTES / 60.0
    p = np.array(point, float)
    for s in range(steps, 0, -1):
        r, c = np.clip(np.rint(p).astype(int), 0, u.shape[-1] - 1)
        p = p - dt * np.array([v[s, r, c], u[s, r, c]])
    return p


@pytest.mark.parametrize("variability", [0.0, 0.3])
def test_advection_moves_the_rain_as_the_wind_says(variability):
    # Long-lived, mostly wet features, so the pattern is recognisable an hour (12 frames) later.
    ds = radar(
        events=3,
        frames=13,
        size=96,
        wet_fraction=0.9,
        speed=30.0,
        lifetime=1e4,
        wind_variability=variability,
        seed=5,
    )
    half = 12  # a 24 km patch around the centre of the last frame
    checked = 0
    for e in range(3):
        one = ds.where(ds["event"] == e, drop=True)
        dbr = np.log10(np.maximum(one["rain_rate"].values, 0.1))
        u, v = one["u"].values, one["v"].values
        centre = 48 - half
        start = _back_trajectory(u, v, (48, 48), 12) - half  # expected top-left at frame 0
        if not (0 <= start.min() and start.max() <= 96 - 2 * half - 1):
            continue  # the air came from outside the frame
        patch = dbr[12, centre : centre + 2 * half, centre : centre + 2 * half]
        found, corr = _origin(patch, dbr[0], np.rint(start).astype(int), reach=4)
        assert corr > 0.8  # the same rain, slightly deformed where the wind varies
        # Integer search against a real-valued start: within 0.5 px plus the Euler error and
        # the spread of the wind over the patch when it varies (< 1 px in an hour).
        assert np.abs(found - start).max() <= (0.5 if variability == 0 else 1.0), (found, start)
        checked += 1
    assert checked >= 2


def test_growth_and_decay_change_the_rain_in_the_moving_frame():
    # Short lifetimes decorrelate the pattern along the trajectory; long ones keep it.
    kw = dict(events=1, frames=13, size=64, wet_fraction=0.4, speed=0.0, seed=6)
    short, long = radar(lifetime=10.0, **kw), radar(lifetime=1e4, **kw)

    def corr(ds):
        d = np.log10(np.maximum(ds["rain_rate"].values, 0.1))
        return np.corrcoef(d[0].ravel(), d[12].ravel())[0, 1]

    assert corr(long) > 0.95 and corr(short) < 0.6
    # The event's intensity peaks mid-life: wet pixels are heavier there than at the ends.
    rain = long["rain_rate"].values
    mean_wet = [frame[frame > 0].mean() for frame in rain]
    assert mean_wet[6] > 1.2 * max(mean_wet[0], mean_wet[12])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(wet_fraction=1.0), "wet_fraction"),
        (dict(beta=-1.0), "beta"),
        (dict(size=4), "size"),
        (dict(frames=40, spacing="2h"), "spacing"),
        (dict(speed=-1.0), "speed"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"data.source_args.{field}"):
        radar(**kwargs)
