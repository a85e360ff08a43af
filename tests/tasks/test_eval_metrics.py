"""eval.metrics: typed specs with strict errors, every score wired through a task, and the
task-level aggregation (area-weighted, ACC per time then averaged) against float64 hand
computations."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from sklearn.metrics import roc_auc_score

import climml.metrics as cm
from climml import config, pipeline, tasks
from climml.errors import ConfigError
from climml.tasks import metric_specs, regression
from climml.tasks.metric_specs import BootstrapParams, FssParams, ThresholdParams


def test_entries_parse_into_typed_specs():
    specs = metric_specs.parse(
        [
            "rmse",
            {"acc": {"centered": True}},
            {"csi": {"thresholds": [0.5, 1]}},
            {"fss": {"scales": [1, 3], "thresholds": [1.0]}},
            {"bootstrap": {"n": 200, "ci": 0.9}},
        ]
    )
    assert [s.name for s in specs] == ["rmse", "acc", "csi", "fss", "bootstrap"]
    assert specs[1].params.centered is True
    assert specs[2].params == ThresholdParams(thresholds=(0.5, 1.0), op=">=")
    assert specs[3].params == FssParams(thresholds=(1.0,), scales=(1, 3))
    assert specs[4].params == BootstrapParams(n=200, ci=0.9)
    assert specs[4].params.percentiles() == pytest.approx((5.0, 95.0))
    assert specs[2].path == "eval.metrics[2]"


QUICKSTART, SEGMENTATION = "configs/quickstart.yaml", "configs/unet_extremes.yaml"


@pytest.mark.parametrize(
    ("path", "override", "message"),
    [
        (
            QUICKSTART,
            "eval.metrics=[rmse, acc, {csi: {threshlds: [0.5]}}]",
            "eval.metrics[2].csi.threshlds: unknown key (did you mean 'thresholds'?)",
        ),
        (
            QUICKSTART,
            "eval.metrics=[rmse, rmsee]",
            "eval.metrics[1]: unknown metric 'rmsee' (did you mean 'rmse'?)",
        ),
        (
            QUICKSTART,
            "eval.metrics=[csi]",
            "eval.metrics[0].csi.thresholds: expected a non-empty list, found []",
        ),
        (
            QUICKSTART,
            "eval.metrics=[{csi: {thresholds: [1], op: '=>'}}]",
            "eval.metrics[0].csi.op: expected one of ['>=', '>', '<=', '<'], found =>",
        ),
        (
            QUICKSTART,
            "eval.metrics=[{csi: {thresholds: oops}}]",
            "eval.metrics[0].csi.thresholds[0]: expected float, found 'oops'",
        ),
        (
            QUICKSTART,
            "eval.metrics=[rmse, {bootstrap: {ci: 1.5}}]",
            "eval.metrics[1].bootstrap.ci: expected in (0, 1), found 1.5",
        ),
        (
            QUICKSTART,
            "eval.metrics=[rmse, {fss: {thresholds: [1], scales: [0]}}]",
            "eval.metrics[1].fss.scales: expected positive ints, found [0]",
        ),
        (QUICKSTART, "eval.metrics=[rmse, rmse]", "eval.metrics[1]: 'rmse' is listed twice"),
        (
            QUICKSTART,
            "eval.metrics=[{rmse: {}, mae: {}}]",
            "eval.metrics[0]: expected a name or {name: {parameter: value}}",
        ),
        (
            QUICKSTART,
            "eval.metrics=[rmse, iou]",
            "eval.metrics[1]: 'iou' does not apply to task 'regression'",
        ),
        (
            QUICKSTART,
            "eval.metrics=[crps]",
            "eval.metrics[0]: 'crps' does not apply to task 'regression' (it needs ensemble",
        ),
        (QUICKSTART, "eval.area_weighting=area", "eval.area_weighting: expected one of"),
        (
            SEGMENTATION,
            "eval.metrics=[iou, {auc: {thresholds: [0.5]}}]",
            "eval.metrics[1].auc.thresholds: expected none for task 'segmentation'",
        ),
        (
            SEGMENTATION,
            "eval.metrics=[iou, {csi: {thresholds: [0.5]}}]",
            "eval.metrics[1]: 'csi' does not apply to task 'segmentation' (per class use iou",
        ),
    ],
)
def test_bad_entries_are_config_errors_naming_the_path(path, override, message):
    cfg = config.load(path, overrides=[override])
    with pytest.raises(ConfigError) as err:
        tasks.get(cfg.eval.task).check(cfg)
    assert str(err.value).startswith(message), str(err.value)


def test_fss_on_a_point_target_fails_before_training(tmp_path):
    cfg = config.load(QUICKSTART, overrides=["eval.metrics=[rmse, {fss: {thresholds: [1]}}]"])
    message = r"^eval.metrics\[1\].fss: needs a target on a 2-D grid; data.target 'nino34'"
    with pytest.raises(ConfigError, match=message + r" has dims \[\]"):
        pipeline.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_grid_weights_follow_eval_area_weighting():
    grid = xr.DataArray(
        np.zeros((2, 3, 4)), dims=("time", "lat", "lon"), coords={"lat": [-60.0, 0.0, 60.0]}
    )
    cfg = config.load(QUICKSTART, overrides=["eval.area_weighting=cos"])
    weights = metric_specs.grid_weights(cfg, grid)
    assert weights.shape == (3, 1)
    np.testing.assert_allclose(weights[:, 0], np.array([0.5, 1.0, 0.5]) / (2 / 3))
    assert metric_specs.grid_weights(cfg, grid.isel(lat=0, lon=0, drop=True)) is None  # a series
    none = config.load(QUICKSTART, overrides=["eval.area_weighting=none"])
    assert metric_specs.grid_weights(none, grid) is None
    with pytest.raises(ConfigError, match="^eval.area_weighting: expected 'none' for a target"):
        metric_specs.grid_weights(cfg, grid.rename(lat="y"))


# --------------------------------------------------------------------------- task aggregation


def _hand_weighted(values, w):
    """Weighted mean over the grid per time, NaN points left out: (N,)."""
    ww = np.broadcast_to(w, values.shape) * ~np.isnan(values)
    return np.nansum(ww * values, axis=(1, 2)) / ww.sum(axis=(1, 2))


@pytest.fixture
def fields():
    rng = np.random.default_rng(0)
    obs = rng.gamma(2.0, size=(30, 6, 8))
    fcst = obs + rng.normal(scale=0.8, size=obs.shape)
    obs[3, 2, 2] = np.nan
    lat = np.linspace(-75, 75, 6)
    w = np.cos(np.deg2rad(lat))[:, None]
    return fcst.astype(np.float32), obs.astype(np.float32), w


def _scores(entries, f, o, w, seed=0):
    specs = metric_specs.parse(entries)
    scorer = metric_specs.Scorer(regression.lead_scores(specs, f.ndim - 1, w), specs, seed)
    return scorer({"anomalies": (f, o), "values": (f, o)})


def test_gridded_scores_equal_hand_computations(fields):
    f, o, w = fields
    entries = [
        "rmse",
        "bias",
        "acc",
        {"csi": {"thresholds": [1.0, 2.0]}},
        {"auc": {"thresholds": [2.0]}},
    ]
    got = _scores(entries, f, o, w)
    f64, o64 = f.astype(np.float64), o.astype(np.float64)
    e = f64 - o64
    np.testing.assert_allclose(
        got["rmse"][""], np.sqrt(np.mean(_hand_weighted(e**2, w))), rtol=1e-5
    )
    np.testing.assert_allclose(got["bias"][""], np.mean(_hand_weighted(e, w)), rtol=1e-4)
    # ACC: uncentred, weighted over the grid at each time, then the mean over times
    fo = _hand_weighted(f64 * o64, w)
    ff = _hand_weighted(np.where(np.isnan(o64), np.nan, f64**2), w)
    oo = _hand_weighted(o64**2, w)
    np.testing.assert_allclose(got["acc"][""], np.mean(fo / np.sqrt(ff * oo)), rtol=1e-5)
    # CSI from the area-weighted contingency table of every time and point
    valid = ~np.isnan(o64)
    ww = np.broadcast_to(w, o.shape) * valid
    for t in (1.0, 2.0):
        fe, oe = f64 >= t, np.where(valid, o64, -np.inf) >= t
        hits, either = np.sum(ww * (fe & oe)), np.sum(ww * (fe | oe))
        np.testing.assert_allclose(got[f"csi@{t:g}"][""], hits / either, rtol=1e-5)
    want_auc = roc_auc_score(o64[valid] >= 2.0, f64[valid], sample_weight=ww[valid])
    np.testing.assert_allclose(got["auc@2"][""], want_auc, rtol=1e-5)
    flat = _scores(["rmse"], f, o, None)
    assert abs(flat["rmse"][""] - got["rmse"][""]) > 1e-4  # the weights matter here


def test_point_target_acc_is_pooled_over_times(fields):
    f, o, _ = fields
    f, o = f[:, 0, 0], o[:, 0, 0]
    got = _scores(["acc", "rmse"], f, o, None)
    f64, o64 = f.astype(np.float64), o.astype(np.float64)
    np.testing.assert_allclose(
        got["acc"][""], np.sum(f64 * o64) / np.sqrt(np.sum(f64**2) * np.sum(o64**2)), rtol=1e-5
    )
    np.testing.assert_allclose(got["rmse"][""], np.sqrt(np.mean((f64 - o64) ** 2)), rtol=1e-5)


def test_bootstrap_intervals_are_those_of_the_kernel(fields):
    f, o, w = fields
    got = _scores(["rmse", {"bootstrap": {"n": 50, "ci": 0.8, "block": 3, "seed": 7}}], f, o, w)
    assert list(got) == ["rmse", "rmse:p10", "rmse:p90"]

    def rmse(a, b):  # the task's RMSE: sqrt of the time mean of the weighted MSE
        return jnp.sqrt(jnp.nanmean(cm.error_sums(a, b, axis=(1, 2), weights=w).mse()))[None]

    want = cm.bootstrap(rmse, f, o, n=50, key=jax.random.key(7), block=3, percentiles=(10, 90))
    np.testing.assert_allclose(
        [got["rmse:p10"][""], got["rmse:p90"][""]], np.ravel(want), rtol=1e-5
    )
    assert got["rmse:p10"][""] < got["rmse"][""] < got["rmse:p90"][""]


# --------------------------------------------------------------------------- through a run

GRIDDED = [
    "data.source_args={n_times: 120, nlat: 16, nlon: 32, lat_max: 80.0, seed: 1}",
    "data.splits.train=['2000-01-01', '2000-01-20']",
    "data.splits.val=['2000-01-21', '2000-01-24']",
    "data.splits.test=['2000-01-25', '2000-01-30']",
    "data.gap=0",
    "model.filters=[4, 8]",
    "model.latent_dim=4",
    "train.epochs=1",
    "output.progress=false",
    "output.plots=false",
    "eval.area_weighting=cos",
]
EVERY_REGRESSION_METRIC = (
    "eval.metrics=[rmse, mae, bias, correlation, acc, {csi: {thresholds: [20, 30]}},"
    " {pod: {thresholds: [20]}}, {far: {thresholds: [20]}}, {pofd: {thresholds: [20]}},"
    " {ets: {thresholds: [20]}}, {hss: {thresholds: [20]}}, {frequency_bias: {thresholds: [20]}},"
    " {auc: {thresholds: [20]}}, {fss: {thresholds: [20], scales: [1, 3]}},"
    " {bootstrap: {n: 20, ci: 0.8}}]"
)


def test_every_regression_metric_runs_area_weighted_through_a_task(tmp_path):
    cfg = config.load("configs/autoencoder.yaml", overrides=[*GRIDDED, EVERY_REGRESSION_METRIC])
    pipeline.run(cfg, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    keys = ["rmse", "mae", "bias", "correlation", "acc", "csi@20", "csi@30", "pod@20", "far@20"]
    keys += ["pofd@20", "ets@20", "hss@20", "frequency_bias@20", "auc@20", "fss@20/1", "fss@20/3"]
    assert list(m["model"]) == [k + s for k in keys for s in ("", ":p10", ":p90")]
    assert {"model", "climatology"} <= set(m)
    assert all(set(v) == {"0"} for v in m["model"].values())
    # the scores are those of predictions.zarr, weighted by cos(latitude) (the check)
    ds = xr.open_zarr(tmp_path / "run" / "predictions.zarr").isel(lead=0).load()
    w = np.cos(np.deg2rad(ds.lat.values))[:, None]
    f, o = ds["model"].values.astype(np.float64), ds["observed"].values.astype(np.float64)
    want = np.sqrt(np.mean(_hand_weighted((f - o) ** 2, w)))
    np.testing.assert_allclose(m["model"]["rmse"]["0"], want, rtol=1e-4)
    unweighted = np.sqrt(np.nanmean((f - o) ** 2))
    assert abs(unweighted - want) > 1e-3 * want
    norm = xr.open_dataset(tmp_path / "run" / "normalizer.nc")
    fa, oa = f - norm["iwv_mean"].values, o - norm["iwv_mean"].values
    acc = _hand_weighted(fa * oa, w) / np.sqrt(_hand_weighted(fa**2, w) * _hand_weighted(oa**2, w))
    np.testing.assert_allclose(m["model"]["acc"]["0"], np.mean(acc), rtol=1e-4)
    ww = np.broadcast_to(w, o.shape)
    fe, oe = f >= 20, o >= 20
    csi = np.sum(ww * (fe & oe)) / np.sum(ww * (fe | oe))
    np.testing.assert_allclose(m["model"]["csi@20"]["0"], csi, rtol=1e-5)
    for key in keys:
        lo, hi = m["model"][key + ":p10"]["0"], m["model"][key + ":p90"]["0"]
        assert lo <= hi, key
    for key in ("csi@20", "pod@20", "far@20", "auc@20", "fss@20/1", "fss@20/3"):
        assert 0 <= m["model"][key]["0"] <= 1, key
