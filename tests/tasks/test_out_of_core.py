"""Out-of-core regression evaluation (``eval.out_of_core``): forecasts streamed chunk by chunk
into predictions.zarr, scores reduced from it as per-chunk sufficient statistics, ratio last;
equal to the in-memory scores, on threads and on a LocalCluster, in bounded memory."""

import dataclasses
import shutil
import subprocess
import sys

import distributed
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed.utils import key_split

from climml import config, pipeline
from climml import metrics as cm_metrics
from climml.data import Normalizer, cluster
from climml.errors import ConfigError
from climml.tasks import metric_specs, out_of_core

# two single-threaded workers inside the test process, as in tests/data/test_cluster.py
LOCAL = "data.dask={scheduler: local, n_workers: 2, threads_per_worker: 1, processes: false}"
METRICS = {
    "nino34": "eval.metrics=[rmse, mae, bias, {acc: {centered: true}}, correlation,"
    " {csi: {thresholds: [27.0, 27.5]}}, {hss: {thresholds: [27.0]}}]",
    "sst": "eval.metrics=[rmse, mae, bias, acc, correlation, {pod: {thresholds: [27.0]}},"
    " {fss: {thresholds: [27.0], scales: [1, 3]}}]",
}


def _overrides(tiny_quickstart, target, *extra):
    return [*tiny_quickstart, f"data.target={target}", METRICS[target],
            "eval.explain.enabled=false", "output.plots=false", "data.dask.scheduler=threads",
            *extra]  # fmt: skip


@pytest.fixture(scope="module", params=["nino34", "sst"])
def in_memory(request, tmp_path_factory, tiny_quickstart):
    """A tiny trained run scored in memory: (target, workdir, metrics, predictions)."""
    target = request.param
    workdir = tmp_path_factory.mktemp(f"ooc_{target}") / "run"
    cfg = config.load("configs/quickstart.yaml", _overrides(tiny_quickstart, target,
                                                            "eval.out_of_core=false"))  # fmt: skip
    result = pipeline.run(cfg, workdir)
    predictions = xr.open_zarr(workdir / "predictions.zarr").load()
    return target, workdir, result.metrics, predictions


def _assert_same_scores(got, want):
    assert set(got) == set(want)
    for predictor in ("model", "persistence", "climatology"):
        assert set(got[predictor]) == set(want[predictor])
        for metric, by_lead in want[predictor].items():
            assert set(got[predictor][metric]) == set(by_lead)
            for lead, value in by_lead.items():
                if value is None:  # NaN in metrics.json (a one-member ensemble's fair CRPS)
                    assert got[predictor][metric][lead] is None, f"{predictor} {metric} {lead}"
                    continue
                # float32 rounding of forecasts stored in physical units: anomalies near 0
                # (the climatology's) differ by ~1e-6 absolute
                np.testing.assert_allclose(
                    got[predictor][metric][lead],
                    value,
                    rtol=2e-5,
                    atol=1e-5,
                    err_msg=f"{predictor} {metric} {lead}",
                )
    assert got["model_beats"] == want["model_beats"]


def test_out_of_core_scores_equal_the_in_memory_scores(in_memory, tiny_quickstart, tmp_path):
    target, workdir, want, predictions = in_memory
    # a budget of 100 kB: chunks of one batch, so the test split streams in several chunks
    extra = ["eval.out_of_core=true", "eval.memory_budget_gb=0.0001"]
    cfg = config.load("configs/quickstart.yaml", _overrides(tiny_quickstart, target, *extra))
    exp = pipeline.prepare(cfg)
    assert out_of_core.enabled(exp)
    assert out_of_core.chunk_steps(exp, 3) == cfg.data.batch_size
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    shutil.rmtree(run / "predictions.zarr")
    got = pipeline.evaluate(cfg, run, exp)
    _assert_same_scores(got, want)
    # the store is the in-memory predictions, written chunk by chunk
    store = xr.open_zarr(run / "predictions.zarr")
    assert len(store["model"].chunks[0]) == -(-store.sizes["time"] // cfg.data.batch_size) > 2
    xr.testing.assert_allclose(store.load(), predictions, rtol=1e-6, atol=1e-6)
    assert store["model"].attrs == predictions["model"].attrs
    assert store["model"].encoding["dtype"] == np.float32  # as the in-memory store
    # without save_predictions the store is scratch, removed after scoring
    quiet = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, save_predictions=False))
    shutil.rmtree(run / "predictions.zarr")
    again = pipeline.evaluate(quiet, run, dataclasses.replace(exp, cfg=quiet))
    _assert_same_scores(again, want)
    assert not (run / "predictions.zarr").exists() and not (run / out_of_core.SCRATCH).exists()


def test_out_of_core_scores_on_a_local_cluster_equal_the_threaded_ones(
    in_memory, tiny_quickstart, tmp_path
):
    target, workdir, want, _ = in_memory
    extra = ["eval.out_of_core=true", "eval.memory_budget_gb=0.0002", LOCAL]
    cfg = config.load("configs/quickstart.yaml", _overrides(tiny_quickstart, target, *extra))
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    client = cluster.client(cfg.data.dask)  # started once: evaluate reuses it
    with distributed.get_task_stream(client) as tasks:
        got = pipeline.evaluate(cfg, run)
    keys = {key_split(record["key"]) for record in tasks.data}
    assert {"chunk_statistics", "merge"} <= keys  # the workers reduced the chunks
    _assert_same_scores(got, want)


ENSEMBLE = {
    "nino34": "eval.metrics=[rmse, mae, {acc: {centered: true}}, {csi: {thresholds: [27.0]}},"
    " crps]",
    "sst": "eval.metrics=[rmse, mae, acc, {pod: {thresholds: [27.0]}},"
    " {fss: {thresholds: [27.0], scales: [3]}}, {crps: {fair: true}}]",
}


@pytest.mark.parametrize("target", ["nino34", "sst"])
def test_an_ensemble_out_of_core_equals_the_in_memory_run(target, tiny_quickstart, tmp_path):
    """A 3-member ensemble of a point and a gridded target: the members stream into the store
    with a ``member`` dimension, and metrics.json (the ensemble mean's scores, CRPS, spread,
    spread/skill, rank histograms; the baselines' one-member CRPS) is the in-memory one."""
    members = ["train.ensemble_members=3", "train.epochs=1", ENSEMBLE[target]]
    base = _overrides(tiny_quickstart, target, *members)
    cfg = config.load("configs/quickstart.yaml", [*base, "eval.out_of_core=false"])
    want = pipeline.run(cfg, tmp_path / "memory").metrics
    predictions = xr.open_zarr(tmp_path / "memory" / "predictions.zarr").load()
    extra = ["eval.out_of_core=true", "eval.memory_budget_gb=0.0001", "output.plots=true"]
    cfg = config.load("configs/quickstart.yaml", [*base, *extra])
    run = tmp_path / "streamed"
    shutil.copytree(tmp_path / "memory", run)
    shutil.rmtree(run / "predictions.zarr")
    got = pipeline.evaluate(cfg, run)
    scores = ["rmse", "mae", "acc", "csi@27"] if target == "nino34" else [
        "rmse", "mae", "acc", "pod@27", "fss@27/3"]  # fmt: skip
    assert list(want["model"]) == [*scores, "crps", "spread", "spread_skill", "rank_histogram"]
    for predictor in ("model", "persistence", "climatology"):
        assert list(got[predictor]) == list(want[predictor])
        ranks = want[predictor].pop("rank_histogram", None)
        if ranks is not None:  # M + 1 = 4 frequencies per lead, summing to one
            streamed = got[predictor].pop("rank_histogram")
            for lead, frequencies in ranks.items():
                assert len(frequencies) == 4
                # a member tied with the observation to float32 rounding (the in-memory
                # anomalies round otherwise) moves one of ~3e4 points to the next rank
                np.testing.assert_allclose(streamed[lead], frequencies, rtol=2e-5, atol=1e-4)
                np.testing.assert_allclose(sum(streamed[lead]), 1, rtol=1e-6)
    # the baselines' CRPS is that of a one-member ensemble: their MAE (fair: none, NaN)
    crps, mae = (list(got["persistence"][k].values()) for k in ("crps", "mae"))
    if target == "nino34":
        np.testing.assert_allclose(crps, mae, rtol=1e-6)
    else:
        assert crps == [None] * 3
    _assert_same_scores(got, want)
    store = xr.open_zarr(run / "predictions.zarr")
    grid = () if target == "nino34" else ("lat", "lon")
    assert store["model"].dims == ("time", "member", "lead", *grid)
    assert store["persistence"].dims == ("time", "lead", *grid)
    assert store["model"].encoding["dtype"] == store["observed"].encoding["dtype"] == np.float32
    assert len(store["model"].chunks[0]) > 2  # streamed in several chunks
    xr.testing.assert_allclose(store.load(), predictions, rtol=1e-6, atol=1e-6)
    assert (run / "rank_histogram.png").is_file()  # drawn from the streamed counts


def test_auto_streams_only_a_split_larger_than_the_budget(tiny_quickstart):
    base = _overrides(tiny_quickstart, "sst")
    exp = pipeline.prepare(config.load("configs/quickstart.yaml", base))
    assert exp.cfg.eval.out_of_core == "auto"
    size = out_of_core.forecast_bytes(exp, 3)  # model, 2 baselines, observations
    assert size == len(exp.anchors["test"]) * 4 * 4 * 3 * 12 * 24
    small = dataclasses.replace(exp.cfg.eval, memory_budget_gb=0.9 * size / 2**30)
    large = dataclasses.replace(exp.cfg.eval, memory_budget_gb=1.1 * size / 2**30)
    assert out_of_core.enabled(dataclasses.replace(exp, cfg=_with_eval(exp.cfg, small)))
    assert not out_of_core.enabled(dataclasses.replace(exp, cfg=_with_eval(exp.cfg, large)))
    # auto with a score that has no out-of-core statistics stays in memory
    auc = dataclasses.replace(small, metrics=("rmse", {"auc": {"thresholds": [27.0]}}))
    assert not out_of_core.enabled(dataclasses.replace(exp, cfg=_with_eval(exp.cfg, auc)))


def _with_eval(cfg, eval_cfg):
    return dataclasses.replace(cfg, eval=eval_cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.out_of_core=sometimes"], "eval.out_of_core: expected true, false or auto, found"
         " 'sometimes'"),
        (["eval.out_of_core=1"], "eval.out_of_core: expected true, false or auto, found '1'"),
        (["eval.out_of_core=true", "eval.metrics=[rmse, {auc: {thresholds: [27]}}]"],
         r"expected false or auto, found true; eval.metrics\[1\] 'auc': an exact ROC area"),
        (["eval.out_of_core=true", "eval.metrics=[rmse, {bootstrap: {n: 10}}]"],
         r"found true; eval.metrics\[1\] 'bootstrap': resamples need every sample"),
    ],
)  # fmt: skip
def test_bad_out_of_core_settings_are_config_errors(overrides, message):
    cfg = config.load("configs/quickstart.yaml", overrides)
    with pytest.raises(ConfigError, match=message):
        out_of_core.check(cfg)


def test_an_ensemble_streams_and_crps_needs_one():
    cfg = config.load("configs/quickstart.yaml", ["eval.out_of_core=true",
                                                  "train.ensemble_members=2"])  # fmt: skip
    out_of_core.check(cfg)
    assert out_of_core.obstacles(cfg) == []
    specs = metric_specs.parse(["rmse", {"crps": {"fair": True}}])
    with pytest.raises(ConfigError, match=r"eval.metrics\[1\]: expected an ensemble"):
        out_of_core.score_dataset(_kelvin(False)[0], ["model"], specs=specs)


def test_a_bad_memory_budget_or_task_is_a_config_error():
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match="eval.memory_budget_gb: expected"):
            config.load("configs/quickstart.yaml", [f"eval.memory_budget_gb={bad}"])
    cfg = config.load("configs/unet_seaice.yaml", ["eval.out_of_core=true"])
    with pytest.raises(ConfigError, match="eval.task 'segmentation' scores in memory"):
        out_of_core.check(cfg)
    out_of_core.check(config.load("configs/unet_seaice.yaml", ["eval.out_of_core=auto"]))
    with pytest.raises(ConfigError, match=r"eval.metrics\[0\]: expected scores with out-of-core"):
        out_of_core.score_dataset(_kelvin(False)[0], ["model"], specs=metric_specs.parse(["auc"]))


# --------------------------------------------------------------------------- 280 K, float64


def _kelvin(gridded: bool, n: int = 96, seed: int = 0):
    """Monthly temperatures near 280 K (a forecast, the observations with ~8% missing) with a
    monthly climatology normalizer, chunked by 16 steps; and the climatology at valid times."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2000-01", periods=n, freq="MS")
    leads = np.array([1, 3])
    grid = (6, 8) if gridded else ()
    space = ("lat", "lon") if gridded else ()
    months = np.arange(12)
    clim = 280 + 5 * np.sin(2 * np.pi * months / 12).reshape(12, *([1] * len(grid)))
    clim = clim + (rng.normal(0, 2, (12, *grid)) if gridded else 0)
    valid = time.values[np.minimum(np.arange(n)[:, None] + leads, n - 1)]
    month = pd.DatetimeIndex(valid.ravel()).month.values.reshape(valid.shape) - 1
    at_valid = clim[month]  # (n, L, *grid)
    anomaly = rng.normal(0, 1.5, (n, len(leads), *grid))
    observed = at_valid + anomaly
    forecast = at_valid + 0.7 * anomaly + rng.normal(0.2, 0.8, anomaly.shape)
    observed[rng.random(observed.shape) < 0.08] = np.nan
    coords = {"time": time, "lead": leads, "valid_time": (("time", "lead"), valid)}
    if gridded:
        coords |= {"lat": np.linspace(-50, 50, 6), "lon": np.arange(8) * 45.0}
    dims = ("time", "lead", *space)
    data = {"model": forecast, "observed": observed}
    ds = xr.Dataset({k: (dims, v.astype(np.float32)) for k, v in data.items()}, coords)
    ds = ds.chunk({"time": 16})
    mean = xr.Dataset({"t": (("month", *space), clim)}, {"month": months + 1})
    std = xr.Dataset({"t": (space, np.full(grid, 1.5))})
    norm = Normalizer(mean, std, ("time",), climatology=True)
    return ds, norm, at_valid


@pytest.mark.parametrize("gridded", [True, False])
def test_scores_at_280_kelvin_equal_float64_numpy(gridded):
    ds, norm, at_valid = _kelvin(gridded)
    f64 = ds["model"].values.astype(np.float64)
    o64 = ds["observed"].values.astype(np.float64)
    fa, oa = f64 - at_valid, o64 - at_valid
    lat_w = np.cos(np.deg2rad(ds["lat"].values))[:, None] if gridded else None
    entries = ["rmse", "mae", "bias", "acc", "correlation", {"csi": {"thresholds": [280.0, 283.0]}}]
    if gridded:
        entries.append({"fss": {"thresholds": [281.0], "scales": [1, 3]}})
    specs = metric_specs.parse(entries)
    got = out_of_core.score_dataset(ds, ["model"], specs=specs, weights=lat_w, normalizer=norm,
                                    target="t")["model"]  # fmt: skip
    assert len(ds["model"].chunks[0]) == 6  # six chunks summed
    space = (1, 2) if gridded else ()
    for i, lead in enumerate(("1", "3")):
        f, o, a, b = f64[:, i], o64[:, i], fa[:, i], oa[:, i]
        ok = ~np.isnan(o)
        w = np.broadcast_to(1.0 if lat_w is None else lat_w, o.shape) * ok
        e = np.where(ok, a - b, 0)

        def per_time(x, w=w, ok=ok):
            return (w * x).sum(space) / w.sum(space) if space else np.where(ok, x, np.nan)

        rmse = np.sqrt(np.nanmean(per_time(e * e)))
        mae = np.nanmean(per_time(np.abs(e)))
        bias = np.nanmean(per_time(e))
        np.testing.assert_allclose(got["rmse"][lead], rmse, rtol=2e-6)
        np.testing.assert_allclose(got["mae"][lead], mae, rtol=2e-6)
        np.testing.assert_allclose(got["bias"][lead], bias, rtol=2e-5, atol=1e-6)
        a0, b0 = np.where(ok, a, 0), np.where(ok, b, 0)
        if gridded:  # uncentred per-time ACC, then the mean over times
            acc = np.nanmean((w * a0 * b0).sum(space) / np.sqrt(
                (w * a0**2).sum(space) * (w * b0**2).sum(space)))  # fmt: skip
        else:  # pooled over times
            acc = (a0 * b0).sum() / np.sqrt((a0**2).sum() * (b0**2).sum())
        np.testing.assert_allclose(got["acc"][lead], acc, rtol=1e-5)
        # Pearson correlation pooled over times and points, of the anomalies
        W = w.sum()
        da, db = a - (w * a0).sum() / W, b - (w * b0).sum() / W
        da, db = np.where(ok, da, 0), np.where(ok, db, 0)
        corr = (w * da * db).sum() / np.sqrt((w * da**2).sum() * (w * db**2).sum())
        np.testing.assert_allclose(got["correlation"][lead], corr, rtol=1e-5)
        for t in (280.0, 283.0):
            hits = (w * ((f >= t) & (o >= t))).sum()
            misses = (w * ((f < t) & (o >= t))).sum()
            false_alarms = (w * ((f >= t) & (o < t))).sum()
            csi = hits / (hits + misses + false_alarms)
            np.testing.assert_allclose(got[f"csi@{t:g}"][lead], csi, rtol=1e-6)
        if gridded:  # FSS pooled over times: the in-memory kernel on the whole split
            for s in (1, 3):
                whole = cm_metrics.fss(f.astype(np.float32), o.astype(np.float32),
                                       threshold=np.float32(281.0), window=s)  # fmt: skip
                np.testing.assert_allclose(got[f"fss@281/{s}"][lead], float(whole), rtol=1e-5)


def _kelvin_ensemble(gridded: bool, members: int = 4, seed: int = 1):
    """``_kelvin``'s data with an ensemble ``model`` ``(time, member, lead, *grid)`` around
    280 K (members = forecast + noise) and a one-member ``baseline`` (the old forecast)."""
    ds, norm, at_valid = _kelvin(gridded)
    rng = np.random.default_rng(seed)
    centre = ds["model"].values[:, None]
    noise = rng.normal(0, 0.9, (centre.shape[0], members, *centre.shape[2:]))
    dims = ("time", "member", *ds["model"].dims[1:])
    ds = ds.rename({"model": "baseline"})
    ds["model"] = (dims, (centre + noise).astype(np.float32))
    return ds.assign_coords(member=np.arange(members)), norm, at_valid


def _ensemble_reference(members, observed, w, space, *, fair):
    """Float64 NumPy CRPS, spread, spread/skill and rank frequencies at one lead of members
    ``(n, M, *grid)`` and observations ``(n, *grid)`` (NaN = missing): CRPS per time
    area-weighted over the grid, then the mean over times; the rest pooled."""
    m = members.shape[1]
    ok = ~np.isnan(observed)
    y = np.where(ok, observed, 0)
    skill = np.abs(members - y[:, None]).mean(1)
    pairs = np.abs(members[:, :, None] - members[:, None]).sum((1, 2))
    crps = skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)
    w = np.broadcast_to(1.0 if w is None else w, observed.shape) * ok
    if space:
        per_time = (w * np.where(ok, crps, 0)).sum(space) / w.sum(space)
    else:
        per_time = np.where(ok, crps, np.nan)
    variance = members.var(1, ddof=1) * (m + 1) / m
    error = members.mean(1) - y
    spread = np.sqrt((w * variance).sum() / w.sum())
    rmse = np.sqrt((w * error**2).sum() / w.sum())
    rank = (members < y[:, None]).sum(1)
    counts = np.array([(w * (rank == r)).sum() for r in range(m + 1)])
    return {"crps": np.nanmean(per_time), "spread": spread, "spread_skill": spread / rmse,
            "rank_histogram": counts / counts.sum()}  # fmt: skip


@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize("gridded", [True, False])
def test_ensemble_scores_at_280_kelvin_equal_float64_numpy(gridded, fair):
    """CRPS, spread, spread/skill and rank histograms of a 280 K ensemble, summed over six
    chunks, against float64 NumPy: from the normalizer's anomalies, and from the raw 280 K
    values (no normalizer: the kernels themselves must not lose the digits)."""
    ds, norm, _ = _kelvin_ensemble(gridded)
    lat_w = np.cos(np.deg2rad(ds["lat"].values))[:, None] if gridded else None
    specs = metric_specs.parse(["rmse", {"crps": {"fair": fair}}])
    space = (1, 2) if gridded else ()
    members = ds["model"].values.astype(np.float64)
    observed = ds["observed"].values.astype(np.float64)
    for normalizer in (norm, None):
        got = out_of_core.score_dataset(ds, ["model"], specs=specs, weights=lat_w,
                                        normalizer=normalizer, target="t")["model"]  # fmt: skip
        for i, lead in enumerate(("1", "3")):
            want = _ensemble_reference(members[:, :, i], observed[:, i], lat_w, space, fair=fair)
            rtol = 3e-6 if normalizer else 2e-5  # raw 280 K: float32 members' mean
            for key in ("crps", "spread", "spread_skill"):
                np.testing.assert_allclose(got[key][lead], want[key], rtol=rtol, err_msg=key)
            np.testing.assert_allclose(got["rank_histogram"][lead], want["rank_histogram"],
                                       rtol=1e-6, atol=1e-7)  # fmt: skip


def test_ensemble_statistics_over_uneven_chunks_equal_one_shot_and_in_memory():
    """Statistics summed over chunks of 7, 30, 5 and 54 steps equal those of the split in one
    chunk and ``regression``'s in-memory ensemble scores; a one-member baseline's CRPS is its
    MAE and gets no spread."""
    from climml.tasks.regression import ensemble_scores

    ds, norm, at_valid = _kelvin_ensemble(True, members=3)
    lat_w = np.cos(np.deg2rad(ds["lat"].values))[:, None]
    specs = metric_specs.parse(["rmse", "mae", "crps"])
    kwargs = dict(specs=specs, weights=lat_w, normalizer=norm, target="t")
    uneven = ds.chunk({"time": (7, 30, 5, 54)})
    got = out_of_core.score_dataset(uneven, ["model", "baseline"], **kwargs)
    whole = out_of_core.score_dataset(ds.chunk({"time": -1}), ["model", "baseline"], **kwargs)
    assert list(got["model"]) == ["rmse", "mae", "crps", "spread", "spread_skill",
                                  "rank_histogram"]  # fmt: skip
    assert list(got["baseline"]) == ["rmse", "mae", "crps"]
    anomalies = (ds["model"].values - at_valid[:, None]).astype(np.float32)
    observed = (ds["observed"].values - at_valid).astype(np.float32)
    memory = ensemble_scores(anomalies, observed, [1, 3], lat_w)
    for name, scores in got.items():
        for key, by_lead in scores.items():
            for lead, value in by_lead.items():
                np.testing.assert_allclose(value, whole[name][key][lead], rtol=1e-6, atol=1e-7)
                if name == "model" and key in memory:
                    np.testing.assert_allclose(value, memory[key][lead], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(list(got["baseline"]["crps"].values()),
                               list(got["baseline"]["mae"].values()), rtol=1e-6)  # fmt: skip


# --------------------------------------------------------------------------- bounded memory

PEAK = """
import sys, tracemalloc
import xarray as xr
from climml.tasks import metric_specs, out_of_core
specs = metric_specs.parse(["rmse", "mae", "acc", "correlation", {"csi": {"thresholds": [0.5]}}])
for path in sys.argv[1:]:
    store = xr.open_zarr(path)
    out_of_core.score_dataset(store, ["model"], specs=specs)  # imports, compilation
    tracemalloc.start()
    out_of_core.score_dataset(xr.open_zarr(path), ["model"], specs=specs)
    print(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
"""


def test_peak_memory_does_not_grow_with_the_store(tmp_path):
    """Scoring a store 6x larger: the peak stays far below the store's size and grows by the
    task graph only."""
    paths, sizes = [], []
    rng = np.random.default_rng(0)
    for n in (400, 2400):
        shape = (n, 2, 16, 32)
        observed = rng.normal(0, 1, shape).astype(np.float32)
        model = (observed + rng.normal(0, 0.5, shape)).astype(np.float32)
        dims = ("time", "lead", "lat", "lon")
        ds = xr.Dataset({"model": (dims, model), "observed": (dims, observed)},
                        {"lead": [1, 2]}).chunk({"time": 50})  # fmt: skip
        path = tmp_path / f"s{n}.zarr"
        ds.to_zarr(path)
        paths.append(str(path))
        sizes.append(ds.nbytes)
    proc = subprocess.run([sys.executable, "-c", PEAK, *paths], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    small, large = (int(v) for v in proc.stdout.split())
    assert sizes[1] > 18 * 2**20
    # a reduction that held the store would need its 19.7 MB
    assert large < 0.3 * sizes[1]
    # what grows is the task graph (~25 kB per chunk), not the data: 16 MB more data
    assert large - small < 0.1 * (sizes[1] - sizes[0]), (small, large)
