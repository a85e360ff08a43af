"""Evaluation statistics on a dask.distributed cluster: the climatology baseline is one
reduction of the training data (per-season sums and counts summed over chunks, ratio last) on
``data.dask``'s scheduler, and gives the loader-fitted means and the in-process metrics."""

import json

import distributed
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed.utils import key_split

from climml import config, pipeline
from climml.config import DaskConfig
from climml.data import cluster, synthetic
from climml.data.loader import WindowLoader
from climml.models.linear import Climatology

# two single-threaded workers inside the test process, as in tests/data/test_cluster.py
LOCAL = DaskConfig(scheduler="local", n_workers=2, threads_per_worker=1, processes=False)


def test_daily_gridded_climatology_on_a_cluster_equals_the_loader_fit():
    """Daily data (31-day circular window, 29 February), a 3 x 4 grid with missing values."""
    time = pd.date_range("2000-01-01", "2003-12-31", freq="D")
    rng = np.random.default_rng(0)
    doy = time.day_of_year.values[:, None, None]
    values = np.sin(2 * np.pi * doy / 365.25) + rng.normal(0, 0.5, (len(time), 3, 4))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, 0, 0] = np.nan  # a point never observed forecasts 0
    ds = xr.Dataset({"t": (("time", "lat", "lon"), values)}, {"time": time}).chunk({"time": 200})
    leads, anchors = [1, 3, 7], np.arange(2, 1000, 3)  # a training split: every third day
    loader = WindowLoader(
        ds, inputs=["t"], target="t", input_steps=2, leads=leads, anchors=anchors, batch_size=64
    )
    by_batches = Climatology(loader.spec, leads, time=time.values).fit(loader.epoch(0))
    with cluster.compute_on(LOCAL) as client:
        with distributed.get_task_stream(client) as tasks:
            reduced = Climatology(loader.spec, leads, time=time.values).fit_dataset(
                ds["t"], anchors
            )
    assert len(tasks.data) > 0  # the workers summed the chunks
    assert reduced.mean.shape == by_batches.mean.shape == (366, 12)
    np.testing.assert_allclose(reduced.mean, by_batches.mean, rtol=1e-10, atol=1e-12)
    assert np.all(reduced.mean[:, 0] == 0)
    # the seasonal cycle came through: the sine's peak (1 April) and trough (1 October) are
    # about 2 apart (a 31-day mean of the sine: 1.97)
    assert 1.7 < reduced.mean[91, 5] - reduced.mean[274, 5] < 2.2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """30 years of the synthetic ENSO ocean as a zarr store chunked by 24 months."""
    path = tmp_path_factory.mktemp("regression_cluster") / "enso.zarr"
    synthetic.enso(n_months=360, seed=3, nlat=12, nlon=24).chunk({"time": 24}).to_zarr(path)
    return path


@pytest.mark.parametrize("target", ["nino34", "sst"])
def test_evaluation_on_a_local_cluster_equals_the_threaded_run(
    store, tiny_quickstart, tmp_path, target
):
    base = [
        *tiny_quickstart,
        f"data.source={store}",
        "data.source_args={}",
        f"data.target={target}",
    ]
    base += ["eval.explain.enabled=false", "output.plots=false", "data.dask.scheduler=threads"]
    workdir = tmp_path / "run"
    pipeline.run(config.load("configs/quickstart.yaml", base), workdir)
    threads = json.loads((workdir / "metrics.json").read_text())
    local = "data.dask={scheduler: local, n_workers: 2, threads_per_worker: 1, processes: false}"
    cfg = config.load("configs/quickstart.yaml", [*base, local])
    client = cluster.client(cfg.data.dask)  # started once per process: evaluate reuses it
    with distributed.get_task_stream(client) as tasks:
        on_cluster = pipeline.evaluate(cfg, workdir)  # the trained run, scored again
    # the climatology's mask of valid values is a task of its reduction (prepare's statistics,
    # also on the cluster, have none)
    assert "isfinite" in {key_split(record["key"]) for record in tasks.data}
    assert set(on_cluster) == set(threads) and "climatology" in on_cluster
    for predictor in ("model", "persistence", "climatology"):
        for metric, by_lead in threads[predictor].items():
            for lead, value in by_lead.items():
                got = on_cluster[predictor][metric][lead]
                np.testing.assert_allclose(got, value, rtol=1e-5, err_msg=f"{predictor} {metric}")
    assert on_cluster["model_beats"] == threads["model_beats"]
    assert 0 < threads["climatology"]["rmse"]["1"] < 10
