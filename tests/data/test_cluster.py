"""dask.distributed for the data path: the same statistics on a LocalCluster as in process,
netCDF → zarr conversion on the cluster, and which scheduler a config picks."""

import dataclasses

import dask
import distributed
import numpy as np
import pytest
import xarray as xr

from climml import config, pipeline
from climml.config import DaskConfig
from climml.data import Normalizer, cluster, open_dataset, synthetic
from climml.errors import ConfigError
from climml.metrics import xr as mxr

# two single-threaded workers inside the test process: a real scheduler, cheap to start
LOCAL = DaskConfig(scheduler="local", n_workers=2, threads_per_worker=1, processes=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """30 years of the synthetic ENSO ocean as a zarr store chunked by 24 months."""
    path = tmp_path_factory.mktemp("cluster") / "enso.zarr"
    ds = synthetic.enso(n_months=360, seed=3, nlat=12, nlon=24)
    ds.chunk({"time": 24}).to_zarr(path, mode="w")
    return path


def _normalizers_equal(a, b):
    for name in a.variables:
        np.testing.assert_allclose(a.mean[name], b.mean[name], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.std[name], b.std[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("dims", "climatology"), [(("time",), True), (("time", "lat", "lon"), False)]
)
def test_local_cluster_fits_the_normalizer_of_the_in_process_path(store, dims, climatology):
    ds = open_dataset(store)
    assert ds["sst"].chunks is not None  # lazy: the reduction really is a dask graph
    fit = dict(dims=dims, climatology=climatology, time_range=("1870-01", "1889-12"))
    in_process = Normalizer.fit(ds, **fit)
    with cluster.compute_on(LOCAL) as client:
        assert isinstance(client, distributed.Client)
        with distributed.get_task_stream(client) as tasks:
            on_cluster = Normalizer.fit(ds, **fit)
    assert len(tasks.data) > 0  # the workers computed it
    _normalizers_equal(on_cluster, in_process)


def test_the_cluster_takes_only_the_compute_on_block(store):
    """A started client does not become dask's default: dask work outside ``compute_on`` (a
    user's, or pysteps' STEPS members, which mutate in-process state) stays in the process."""
    ds = open_dataset(store)
    with cluster.compute_on(LOCAL) as client:
        pass
    with distributed.get_task_stream(client) as tasks:
        float(ds["sst"].mean().compute())
    assert len(tasks.data) == 0
    assert dask.base.get_scheduler() is not client.get


def test_prepare_runs_its_statistics_on_the_configured_cluster(store, tiny_quickstart):
    base = [*tiny_quickstart, f"data.source={store}", "data.source_args={}"]
    threads = pipeline.prepare(config.load("configs/quickstart.yaml", base))
    local = ["data.dask={scheduler: local, n_workers: 2, threads_per_worker: 1, processes: false}"]
    cfg = config.load("configs/quickstart.yaml", [*base, *local])
    client = cluster.client(cfg.data.dask)  # started once per process: prepare reuses it
    with distributed.get_task_stream(client) as tasks:
        on_cluster = pipeline.prepare(cfg)
    assert len(tasks.data) > 0
    _normalizers_equal(on_cluster.normalizer, threads.normalizer)
    # where dask runs is not part of the experiment: a job may resume on another cluster
    assert config.differences(threads.cfg, cfg) == []
    assert config.experiment_hash(threads.cfg) == config.experiment_hash(cfg)


def test_out_of_core_scores_on_the_cluster_equal_in_process(store):
    ds = open_dataset(store)
    observed = ds["sst"]
    forecast = observed.shift(time=1)  # persistence, still lazy
    in_process = mxr.rmse(forecast, observed, dim=["lat", "lon"]).mean("time").compute()
    with cluster.compute_on(LOCAL) as client:
        with distributed.get_task_stream(client) as tasks:
            on_cluster = mxr.rmse(forecast, observed, dim=["lat", "lon"]).mean("time").compute()
    assert len(tasks.data) > 0
    np.testing.assert_allclose(on_cluster, in_process, rtol=1e-6)
    assert 0 < float(in_process) < float(observed.std())


def test_netcdf_collection_becomes_one_chunked_zarr_store(tmp_path):
    ds = synthetic.enso(n_months=36, seed=1, nlat=8, nlon=16)
    for year, part in ds.groupby("time.year"):
        part.to_netcdf(tmp_path / f"enso_{year}.nc")
    out = cluster.convert_to_zarr(
        tmp_path / "enso_*.nc", tmp_path / "enso.zarr", time_chunk=5, spec=LOCAL
    )
    back = xr.open_zarr(out)
    assert back["sst"].chunks[0] == (5,) * 7 + (1,)  # 36 months by 5
    assert back["sst"].chunks[1:] == ((8,), (16,))
    xr.testing.assert_allclose(back.load(), ds[list(back.data_vars)].load())
    with pytest.raises(ConfigError, match="time_chunk: expected an integer >= 1"):
        cluster.convert_to_zarr(tmp_path / "enso_*.nc", tmp_path / "x.zarr", time_chunk=0)


def test_scheduler_follows_the_config_then_the_environment_then_the_data_size(monkeypatch):
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    auto = DaskConfig(local_above_gb=1.0)
    assert cluster.scheduler(auto) == "threads"
    assert cluster.scheduler(auto, nbytes=2 * 2**30) == "local"
    monkeypatch.setenv(cluster.ADDRESS_ENV, "tcp://10.0.0.5:8786")
    assert cluster.scheduler(auto) == "tcp://10.0.0.5:8786"
    assert cluster.scheduler(dataclasses.replace(auto, scheduler="threads")) == "threads"
    assert cluster.scheduler(dataclasses.replace(auto, scheduler="tls://h:8786")) == "tls://h:8786"
    with pytest.raises(ConfigError, match="data.dask.scheduler: expected auto, threads, local"):
        cluster.scheduler(dataclasses.replace(auto, scheduler="slurm"))
    with cluster.compute_on(DaskConfig(scheduler="threads")) as client:
        assert client is None
