"""open_dataset / validate_dataset / load_source: lazy zarr and netCDF round trips, and a
DataError naming the variable, dim or coordinate at fault for every malformed input."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import climml.data as cd
from climml.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ds():
    return cd.synthetic.enso(36, nlat=8, nlon=16, seed=4)


def test_zarr_round_trip_is_lazy_and_identical(ds, tmp_path):
    path = tmp_path / "enso.zarr"
    ds.chunk({"time": 12}).to_zarr(path, consolidated=False)
    opened = cd.open_dataset(path, variables=["sst", "nino34"], dims=("time",))
    assert list(opened.data_vars) == ["sst", "nino34"]
    assert opened["sst"].chunks is not None  # dask-backed: nothing read yet
    xr.testing.assert_identical(opened.compute(), ds[["sst", "nino34"]])


def test_auto_chunks_are_whole_disk_chunks_of_bounded_size(tmp_path):
    """A 16 MiB variable stored in 64-step chunks opens as dask chunks of <= 8 MiB, each a
    whole number of stored chunks (dask's default would make one 16 MiB chunk)."""
    big = xr.Dataset(
        {"v": (("time", "y", "x"), np.zeros((4096, 32, 32), np.float32))},
        coords={"time": pd.date_range("2000-01-01", periods=4096, freq="D")},
    )
    big.chunk({"time": 64}).to_zarr(tmp_path / "big.zarr", consolidated=False)
    chunks = cd.open_dataset(tmp_path / "big.zarr")["v"].chunks[0]
    assert len(chunks) > 1 and all(c % 64 == 0 for c in chunks[:-1])
    assert max(chunks) * 32 * 32 * 4 <= 8 * 2**20


def test_netcdf_round_trip(ds, tmp_path):
    path = tmp_path / "enso.nc"
    ds.to_netcdf(path)
    opened = cd.open_dataset(str(path), dims=("time",))
    assert opened["heat_content"].chunks is not None
    xr.testing.assert_allclose(opened.compute(), ds)


def test_missing_variable_lists_the_available_ones(ds):
    with pytest.raises(
        DataError,
        match=r"salinity: expected a data variable, found none "
        r"\(available: sst, heat_content, nino34\)",
    ):
        cd.validate_dataset(ds, variables=["sst", "salinity"])


def test_variable_lacking_a_required_dim(ds):
    with pytest.raises(
        DataError, match=r"nino34\.dims: expected to include \('time', 'lat', 'lon'\)"
    ):
        cd.validate_dataset(ds, variables=["sst", "nino34"], dims=("time", "lat", "lon"))


def test_time_must_exist():
    no_time = xr.Dataset({"v": (("step",), np.arange(3.0))})
    with pytest.raises(DataError, match=r"^time: expected a 'time' dimension"):
        cd.validate_dataset(no_time)


def _series(dates):
    return xr.Dataset(
        {"v": (("time",), np.arange(len(dates), dtype=float))},
        coords={"time": pd.to_datetime(dates)},
    )


def test_time_duplicates_and_disorder_are_rejected():
    with pytest.raises(DataError, match=r"time: expected strictly increasing.*duplicate.*index 2"):
        cd.validate_dataset(_series(["2000-01", "2000-02", "2000-02", "2000-03"]))
    with pytest.raises(DataError, match=r"time: expected strictly increasing.*index 2"):
        cd.validate_dataset(_series(["2000-01", "2000-03", "2000-02"]))
    cd.validate_dataset(_series(["2000-01", "2000-02", "2000-04"]))  # gaps are allowed


def test_time_must_be_datetimes_without_nat():
    numeric = xr.Dataset({"v": (("time",), np.arange(3.0))}, coords={"time": [0, 1, 2]})
    with pytest.raises(DataError, match=r"time: expected datetime values"):
        cd.validate_dataset(numeric)
    with pytest.raises(DataError, match=r"time: expected no missing \(NaT\).*index 1"):
        cd.validate_dataset(_series(["2000-01", None, "2000-03"]))


def test_variables_must_be_numeric():
    text = xr.Dataset(
        {"label": (("time",), np.array(["a", "b"]))},
        coords={"time": pd.date_range("2000", periods=2, freq="MS")},
    )
    with pytest.raises(DataError, match=r"label\.dtype: expected a numeric dtype"):
        cd.validate_dataset(text)


def test_open_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match=r"data\.source: expected an existing zarr store"):
        cd.open_dataset(tmp_path / "absent.zarr")
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"data\.source: expected a zarr store or a file ending"):
        cd.open_dataset(csv)
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"not a netCDF file")
    with pytest.raises(DataError, match=r"data\.source: expected a readable"):
        cd.open_dataset(corrupt)


def test_open_validates_requested_variables(ds, tmp_path):
    path = tmp_path / "enso.zarr"
    ds.to_zarr(path, consolidated=False)
    with pytest.raises(DataError, match=r"u10: expected a data variable"):
        cd.open_dataset(path, variables=["u10"])


def test_load_source_by_name_and_by_path(ds, tmp_path):
    built = cd.load_source("synthetic.enso", n_months=36, nlat=8, nlon=16, seed=4)
    xr.testing.assert_identical(built, ds)
    path = tmp_path / "enso.zarr"
    ds.to_zarr(path, consolidated=False)
    xr.testing.assert_identical(cd.load_source(str(path), variables=["sst"]).compute(), ds[["sst"]])


def test_load_source_errors_name_the_field(tmp_path):
    with pytest.raises(DataError, match=r"data\.source: expected one of \[.*'synthetic\.enso'"):
        cd.load_source("synthetic.nope")
    with pytest.raises(ConfigError, match=r"data\.source_args\.n_month: expected a keyword"):
        cd.load_source("synthetic.enso", n_month=12)
