"""Baselines: AR(p) by closed-form least squares (direct multi-lead, per target point), the
seasonal climatology, and the model-versus-baseline comparison."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from statsmodels.tsa.ar_model import AutoReg

from climml.data import Normalizer, WindowLoader, split_anchors
from climml.data.real import nino12
from climml.errors import ConfigError
from climml.models.linear import (
    BASELINES,
    AutoRegressive,
    Climatology,
    Persistence,
    make_baseline,
    season_index,
)

N = 400  # months of synthetic series


def _ar2_series(n: int, seed: int) -> np.ndarray:
    """x_t = 0.3 + 0.6 x_{t-1} - 0.2 x_{t-2} + noise (a stationary AR(2))."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 0.3 + 0.6 * x[t - 1] - 0.2 * x[t - 2] + rng.normal()
    return x


def _dataset(values: np.ndarray) -> xr.Dataset:
    time = pd.date_range("1900-01-01", periods=values.shape[0], freq="MS")
    dims = ("time", "lat", "lon")[: values.ndim]
    return xr.Dataset({"y": (dims, values)}, coords={"time": time})


def _loader(ds, steps, leads, batch_size=64):
    anchors = np.arange(steps - 1, ds.sizes["time"] - max(leads))
    return WindowLoader(
        ds, inputs=["y"], target="y", input_steps=steps, leads=leads, anchors=anchors,
        batch_size=batch_size, prefetch=0,
    )  # fmt: skip


def _lagged(x: np.ndarray, order: int, lead: int, max_lead: int | None = None):
    """Design (1, x_t, ..., x_{t-p+1}) and targets x_{t+lead} for anchors t with a full window
    (the loader's anchors stop ``max_lead`` steps before the end)."""
    rows = range(order - 1, x.shape[0] - (max_lead or lead))
    design = np.array([[1.0, *x[t - order + 1 : t + 1][::-1]] for t in rows])
    return design, np.array([x[t + lead] for t in rows])


def test_lead_one_equals_statsmodels_autoreg():
    x = _ar2_series(N, seed=0)
    loader = _loader(_dataset(x), steps=2, leads=[1])
    ar = AutoRegressive(loader.spec, [1]).fit(loader)
    want = AutoReg(x, lags=2, trend="c").fit().params  # const, lag 1, lag 2
    np.testing.assert_allclose(ar.coef[0, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want[1:], [0.6, -0.2], atol=0.1)  # and it recovers the process


def test_direct_multi_lead_equals_least_squares_per_lead():
    x = _ar2_series(N, seed=1).astype(np.float32)
    leads = [1, 3, 6]
    loader = _loader(_dataset(x), steps=4, leads=leads, batch_size=50)  # padded last batch
    ar = AutoRegressive(loader.spec, leads, order=3).fit(loader)
    for i, lead in enumerate(leads):
        design, target = _lagged(x.astype(np.float64), 4, lead, max(leads))
        design = design[:, :4]  # intercept + 3 lags; samples still need 4 steps of history
        want, *_ = np.linalg.lstsq(design, target, rcond=None)
        np.testing.assert_allclose(ar.coef[0, i], want, rtol=1e-4, atol=1e-5, err_msg=f"{lead=}")
    batch = next(iter(loader))
    forecast = ar.predict(batch)
    assert forecast.shape == (50, 3) and forecast.dtype == np.float32


def test_missing_targets_are_left_out_of_the_fit():
    x = _ar2_series(N, seed=2)
    gappy = x.copy()
    gappy[100:140] = np.nan  # NaN targets have y_valid 0; their history reads as 0
    loader = _loader(_dataset(gappy), steps=2, leads=[1])
    ar = AutoRegressive(loader.spec, [1]).fit(loader)
    design, target = _lagged(np.nan_to_num(gappy), 2, 1)
    keep = np.isfinite(gappy[2:])  # target of row k is x[k + 2]
    want, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
    np.testing.assert_allclose(ar.coef[0, 0], want, rtol=1e-5, atol=1e-6)


def test_gridded_target_gets_coefficients_per_point():
    series = [_ar2_series(N, seed=s) for s in range(3)]
    field = np.stack([np.stack(series[:2], -1), np.stack([series[2], np.full(N, np.nan)], -1)], 1)
    loader = _loader(_dataset(field), steps=2, leads=[2])  # field: (time, lat=2, lon=2)
    ar = AutoRegressive(loader.spec, [2]).fit(loader)
    for point, x in zip([0, 1, 2], series, strict=True):
        want, *_ = np.linalg.lstsq(*_lagged(x, 2, 2), rcond=None)
        np.testing.assert_allclose(ar.coef[point, 0], want, rtol=1e-5, atol=1e-6)
    forecast = ar.predict(next(iter(loader)))
    assert forecast.shape == (64, 1, 2, 2)
    np.testing.assert_array_equal(forecast[:, 0, 1, 1], 0.0)  # no data there: climatology


def test_registered_and_checked():
    assert BASELINES["ar"] is AutoRegressive
    loader = _loader(_dataset(_ar2_series(50, seed=3)), steps=3, leads=[1])
    with pytest.raises(ConfigError, match="AutoRegressive.order"):
        AutoRegressive(loader.spec, [1], order=4)
    with pytest.raises(RuntimeError, match="fit"):
        AutoRegressive(loader.spec, [1]).predict(next(iter(loader)))


def test_order_from_the_baseline_name():
    """``ar<p>`` in ``eval.baselines`` fits AR(p) on a longer window; ``ar`` uses the window."""
    x = _ar2_series(N, seed=4)
    loader = _loader(_dataset(x), steps=6, leads=[1])
    ar2 = make_baseline("ar2", loader.spec, [1]).fit(loader)
    assert (ar2.name, ar2.order, ar2.coef.shape[-1]) == ("ar2", 2, 3)
    # The first anchor is step 5 (a full 6-step window), so the first target is x[6].
    want = AutoReg(x[4:], lags=2, trend="c").fit().params
    np.testing.assert_allclose(ar2.coef[0, 0], want, rtol=1e-5, atol=1e-6)
    assert make_baseline("ar", loader.spec, [1]).order == 6
    for bad in ("ar0", "ar7", "ar-1", "arx"):
        with pytest.raises(ConfigError, match=r"eval\.baselines.*ar<p> with 1 <= p <= 6"):
            make_baseline(bad, loader.spec, [1])


def test_ar_beats_persistence_on_nino12_in_the_2000s():
    """AR(12) fitted on 1950-1990 vs persistence at a 3-month lead, targets in 2001-2010."""
    ds = nino12()
    splits = {"train": ("1950-01", "1990-12"), "test": ("2001-01", "2010-12")}
    anchors = split_anchors(ds.indexes["time"], splits, input_steps=12, max_lead=3)
    norm = Normalizer.fit(ds, variables=["nino12_anom"], time_range=splits["train"])
    scaled = norm.apply(ds[["nino12_anom"]])

    def loader(split):
        return WindowLoader(
            scaled, inputs=["nino12_anom"], target="nino12_anom", input_steps=12, leads=[3],
            anchors=anchors[split], batch_size=64, prefetch=0,
        )  # fmt: skip

    ar = AutoRegressive(loader("train").spec, [3]).fit(loader("train"))
    persistence = Persistence(loader("train").spec, [3])
    batches = list(loader("test"))
    keep = np.concatenate([b.weight for b in batches]) > 0
    observed = np.concatenate([b.y[:, 0] for b in batches])[keep]
    scores = {}
    for name, model in [("ar", ar), ("persistence", persistence)]:
        forecast = np.concatenate([model.predict(b)[:, 0] for b in batches])[keep]
        rmse = np.sqrt(np.mean((forecast - observed) ** 2))
        scores[name] = (rmse, np.corrcoef(forecast, observed)[0, 1])
    assert scores["ar"][0] < 0.95 * scores["persistence"][0]
    assert scores["ar"][1] > scores["persistence"][1]


def _daily(n_years=4, seed=5):
    """Daily series from 2000 (a leap year): a seasonal cycle plus noise, with a gridded twin."""
    time = pd.date_range("2000-01-01", f"{1999 + n_years}-12-31", freq="D")
    doy = time.day_of_year.values
    rng = np.random.default_rng(seed)
    y = 3 * np.sin(2 * np.pi * doy / 365.25) + rng.normal(size=time.size)
    return xr.Dataset({"y": ("time", y.astype(np.float32))}, coords={"time": time})


def _pairs(loader, ds):
    """Every (valid date, target) pair of the loader's samples and leads."""
    valid = (loader.anchors[:, None] + np.asarray(loader.leads)[None, :]).ravel()
    return pd.DatetimeIndex(ds["time"].values[valid]), ds["y"].values[valid]


def test_day_of_year_climatology_equals_pandas_groupby():
    ds = _daily()
    leads = [1, 2]
    loader = _loader(ds, steps=3, leads=leads)
    time = ds["time"].values
    clim = Climatology(loader.spec, leads, time=time, window=1).fit(loader)
    dates, values = _pairs(loader, ds)
    want = pd.Series(values, index=[dates.month, dates.day]).groupby(level=[0, 1]).mean()
    got = clim.mean[:, 0]
    leap_year = pd.date_range("2000-01-01", "2000-12-31", freq="D")
    for slot, date in enumerate(leap_year):  # slot = day of a leap year, 29 Feb = 59
        np.testing.assert_allclose(got[slot], want[(date.month, date.day)], rtol=1e-5)
    assert season_index(time)[0] == "dayofyear"
    # 1 March is slot 60 in every year, leap or not; 29 February (slot 59) only in leap years
    days = np.array(["2000-02-29", "2000-03-01", "2001-02-28", "2001-03-01"], "datetime64[ns]")
    assert list(season_index(days)[1]) == [59, 60, 58, 60]
    batch = next(iter(loader))
    forecast = clim.predict(batch)
    valid = pd.DatetimeIndex(time[batch.anchor[:, None] + np.array(leads)].ravel())
    expect = [want[(d.month, d.day)] for d in valid]
    np.testing.assert_allclose(forecast.ravel(), expect, rtol=1e-5)


def test_smoothed_climatology_is_the_pooled_mean_of_neighbouring_days():
    ds = _daily(seed=6)
    loader = _loader(ds, steps=3, leads=[1])
    time = ds["time"].values
    clim = Climatology(loader.spec, [1], time=time, window=31).fit(loader)
    dates, values = _pairs(loader, ds)
    slot = season_index(time)[1][loader.anchors + 1]
    for centre in (0, 59, 200, 365):  # wraps around new year; 29 Feb borrows from its neighbours
        distance = np.abs(slot - centre)
        near = np.minimum(distance, 366 - distance) <= 15
        np.testing.assert_allclose(clim.mean[centre, 0], values[near].mean(), rtol=1e-5)
    # the smoothed cycle follows the sine closely; a constant would miss it by ~2.1
    truth = 3 * np.sin(2 * np.pi * (np.arange(366) + 1) / 365.25)
    assert np.sqrt(np.mean((clim.mean[:, 0] - truth) ** 2)) < 0.35


def test_monthly_climatology_by_calendar_month_and_constant_otherwise():
    x = _ar2_series(N, seed=7)
    ds = _dataset(x)
    loader = _loader(ds, steps=2, leads=[1, 3])
    time = ds["time"].values
    clim = Climatology(loader.spec, [1, 3], time=time, window=31).fit(loader)
    dates, values = _pairs(loader, ds)
    want = pd.Series(values).groupby(dates.month).mean().values
    np.testing.assert_allclose(clim.mean[:, 0], want, rtol=1e-5)
    assert clim.season == "month" and clim.window == 1  # no smoothing across months
    constant = Climatology(loader.spec, [1, 3]).fit(loader)  # no time coordinate: one mean
    np.testing.assert_allclose(constant.mean[:, 0], [values.mean()], rtol=1e-5)
    with pytest.raises(ConfigError, match="Climatology.window"):
        Climatology(loader.spec, [1], time=time, window=30)


def test_seattle_climatology_follows_the_seasons():
    """tcnn_daily's climatology: 4.07 °C RMSE on 2015 by day of year, 7.59 °C as one mean."""
    from climml import config, pipeline
    from climml.tasks._collect import collect

    cfg = config.load("configs/tcnn_daily.yaml")
    exp = pipeline.prepare(cfg)
    rmse = {}
    for name, time in (("seasonal", exp.time), ("constant", None)):
        clim = Climatology(exp.spec, cfg.data.leads, time=time).fit(exp.loader("train").epoch(0))
        out = collect(exp.loader("test"), {"c": clim.predict})
        error = exp.normalizer.invert(out["c"] - out["observed"], "temp_max", add_mean=False)
        rmse[name] = float(np.sqrt(np.mean(error**2)))
    assert rmse["seasonal"] == pytest.approx(4.07, abs=0.05)
    assert rmse["constant"] > 7.0
