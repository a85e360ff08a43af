"""``climml convert``: netCDF files become one time-chunked zarr store on the chosen dask
scheduler; bad input is one line and status 2."""

import distributed
import numpy as np
import pytest
import xarray as xr

from climml.cli import main
from climml.config import DaskConfig
from climml.data import cluster, synthetic


@pytest.fixture
def netcdf(tmp_path):
    """Three yearly netCDF files of a small synthetic ocean (36 months on 8 x 16 points)."""
    ds = synthetic.enso(n_months=36, seed=2, nlat=8, nlon=16)
    files = []
    for year, part in ds.groupby("time.year"):
        files.append(tmp_path / f"ocean_{year}.nc")
        part.to_netcdf(files[-1])
    return files


def _check_store(store, files, time_chunk):
    back = xr.open_zarr(store)
    expected = xr.open_mfdataset([str(f) for f in files], combine="by_coords").load()
    assert back["sst"].dims[0] == "time"
    n = back.sizes["time"]
    whole, rest = divmod(n, time_chunk)
    assert back["sst"].chunks[0] == (time_chunk,) * whole + ((rest,) if rest else ())
    assert back["sst"].chunks[1:] == tuple((back.sizes[d],) for d in back["sst"].dims[1:])
    assert n == expected.sizes["time"] == 36
    for name in back.data_vars:
        np.testing.assert_array_equal(back[name].values, expected[name].values)
    np.testing.assert_array_equal(back["time"].values, expected["time"].values)


def test_a_quoted_glob_converts_on_a_local_cluster(netcdf, tmp_path, capsys):
    store = tmp_path / "ocean.zarr"
    glob = str(tmp_path / "ocean_*.nc")
    args = ["convert", glob, "-o", str(store), "--chunks", "time=5", "--scheduler", "local"]
    # a config's data.dask sizes the cluster; --scheduler overrides its scheduler (auto)
    dask_set = "data.dask={n_workers: 1, threads_per_worker: 1, processes: false}"
    args += ["--config", "configs/quickstart.yaml", "--set", dask_set]
    # the same settings: the client convert uses (one per setting per process)
    spec = DaskConfig(scheduler="local", n_workers=1, threads_per_worker=1, processes=False)
    client = cluster.client(spec)
    with distributed.get_task_stream(client) as tasks:
        assert main(args) == 0
    assert len(tasks.data) >= 8  # the workers wrote the chunks: 36 months by 5, 2+ variables
    out = capsys.readouterr().out
    assert out.startswith(f"{store}: ") and "chunks of 5 time steps" in out
    _check_store(store, netcdf, 5)


def test_shell_expanded_files_on_threads_with_the_default_chunks(netcdf, tmp_path, capsys):
    store = tmp_path / "threads.zarr"
    args = ["convert", *map(str, netcdf), "--output", str(store), "--scheduler", "threads"]
    assert main([*args, "--variables", "sst"]) == 0
    assert list(xr.open_zarr(store).data_vars) == ["sst"]
    _check_store(store, netcdf, 32)  # the default: time=32


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chunks", "lat=4"], "--chunks: expected time=N with N >= 1"),
        (["--chunks", "time=0"], "--chunks: expected time=N with N >= 1"),
        (["--scheduler", "slurm"], "data.dask.scheduler: expected auto, threads, local"),
        (["--set", "data.dask.n_workers=2"], "--set: expected a --config to override"),
    ],
)
def test_bad_options_are_one_line_and_status_2(netcdf, tmp_path, capsys, extra, message):
    args = ["convert", str(netcdf[0]), "-o", str(tmp_path / "x.zarr"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"climml: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "x.zarr").exists()


def test_missing_sources_are_one_line_and_status_2(netcdf, tmp_path, capsys):
    out = str(tmp_path / "x.zarr")
    assert main(["convert", str(netcdf[0]), str(tmp_path / "gone.nc"), "-o", out]) == 2
    assert "convert SOURCE: expected an existing netCDF file" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nothing_*.nc"), "-o", out]) == 2
    assert "data.source: expected a readable zarr store or netCDF file" in capsys.readouterr().err
