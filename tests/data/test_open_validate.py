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


# --------------------------------------------------------------------------- conventions


def _grid(lat, lon, months=24):
    """A (time, lat, lon) field whose value encodes its coordinates: 1000 * lat + lon + t / 100."""
    time = pd.date_range("2000-01-01", periods=months, freq="MS")
    t, la, lo = np.meshgrid(np.arange(months), lat, lon, indexing="ij")
    value = 1000.0 * la + lo + t / 100.0
    return xr.Dataset(
        {"v": (("time", "lat", "lon"), value)}, coords={"time": time, "lat": lat, "lon": lon}
    )


def test_descending_latitude_is_sorted_with_its_values(tmp_path):
    lat = np.array([30.0, 10.0, -10.0, -30.0])
    ds = _grid(lat, np.array([0.0, 90.0, 180.0]))
    ds.chunk({"time": 6}).to_zarr(tmp_path / "desc.zarr", consolidated=False)
    opened = cd.open_dataset(tmp_path / "desc.zarr", variables=["v"])
    assert list(opened["lat"].values) == [-30.0, -10.0, 10.0, 30.0]
    assert opened["v"].chunks is not None  # still lazy
    xr.testing.assert_identical(opened.compute(), ds.sortby("lat"))
    assert float(opened["v"].sel(lat=-30.0, lon=90.0).isel(time=5)) == -30000.0 + 90.0 + 0.05


def test_longitudes_keep_their_convention_sorted_ascending():
    east = _grid(np.array([-10.0, 10.0]), np.array([0.0, 90.0, 180.0, 270.0]))
    assert list(cd.conform(east)["lon"].values) == [0.0, 90.0, 180.0, 270.0]
    # -180..180 stored starting at 0 (a rolled grid): sorted, each value still at its longitude
    for lon in ([0.0, 90.0, -180.0, -90.0], [90.0, 0.0, -90.0, -180.0]):
        out = cd.conform(_grid(np.array([-10.0, 10.0]), np.array(lon)).chunk({"lon": 2}))
        assert list(out["lon"].values) == [-180.0, -90.0, 0.0, 90.0]
        assert float(out["v"].sel(lat=10.0, lon=-90.0).isel(time=3)) == 10000.0 - 90.0 + 0.03
    repeated = _grid(np.array([-10.0, 10.0]), np.array([0.0, 90.0, 0.0]))
    with pytest.raises(DataError, match=r"^lon: expected distinct values"):
        cd.conform(repeated)
    mixed = _grid(np.array([-10.0, 10.0]), np.array([-90.0, 0.0, 200.0]))
    with pytest.raises(DataError, match=r"^lon: expected degrees in \[-180, 180\] or \[0, 360\]"):
        cd.conform(mixed)


def test_latitude_longitude_names_become_lat_lon():
    ds = _grid(np.array([10.0, -10.0]), np.array([0.0, 1.0])).rename(
        lat="latitude", lon="longitude"
    )
    out = cd.conform(ds, variables=["v"], dims=("time", "lat", "lon"))
    assert out["v"].dims == ("time", "lat", "lon") and list(out["lat"].values) == [-10.0, 10.0]


def test_valid_time_is_time_and_forecast_axes_are_refused():
    ds = _series(["2000-01", "2000-02", "2000-03"])
    out = cd.conform(ds.rename(time="valid_time"), variables=["v"])
    xr.testing.assert_identical(out, ds)
    forecast = xr.Dataset(
        {"v": (("init_time", "lead_time"), np.zeros((3, 2)))},
        coords={"init_time": pd.date_range("2000", periods=3, freq="MS"), "lead_time": [0, 1]},
    )
    with pytest.raises(DataError, match=r"^time: expected one 'time' axis.*forecast dims"):
        cd.conform(forecast)


def test_cf_time_in_a_noleap_calendar_is_decoded_and_converted(tmp_path):
    raw = xr.Dataset(
        {"v": (("time",), np.arange(4.0))},
        coords={
            "time": (
                "time",
                [0, 31, 59, 90],
                {"units": "days since 2001-01-01", "calendar": "noleap"},
            )
        },
    )
    raw.to_netcdf(tmp_path / "noleap.nc")
    out = cd.open_dataset(tmp_path / "noleap.nc", variables=["v"])
    assert list(out.indexes["time"].strftime("%Y-%m-%d")) == [
        "2001-01-01",
        "2001-02-01",
        "2001-03-01",
        "2001-04-01",
    ]


def test_dates_missing_from_the_standard_calendar_are_refused(tmp_path):
    raw = xr.Dataset(
        {"v": (("time",), np.arange(3.0))},
        coords={
            "time": (
                "time",
                [28, 29, 30],
                {"units": "days since 2001-02-01", "calendar": "360_day"},
            )
        },
    )  # 2001-02-29, 2001-02-30, 2001-03-01 in a 360-day calendar
    raw.to_netcdf(tmp_path / "360.nc")
    with pytest.raises(
        DataError, match=r"^time: expected dates that exist.*'360_day' with 2001-02-29"
    ):
        cd.open_dataset(tmp_path / "360.nc")


def test_netcdf_glob_opens_lazily_as_one_dataset(ds, tmp_path):
    for year, part in ds.groupby("time.year"):
        part.to_netcdf(tmp_path / f"enso_{year}.nc")
    opened = cd.load_source(str(tmp_path / "enso_*.nc"))
    assert opened["sst"].chunks is not None and opened.sizes["time"] == 36
    xr.testing.assert_allclose(opened.compute(), ds)
    with pytest.raises(DataError, match=r"data\.source: expected netCDF files matching"):
        cd.open_dataset(tmp_path / "nothing_*.nc")


def test_unused_variables_are_never_checked(ds, tmp_path):
    extra = ds.assign(
        land=(("lat", "lon"), np.zeros((8, 16), bool)),
        note=(("time",), np.array(["x"] * 36)),
    )
    extra.to_zarr(tmp_path / "extra.zarr", consolidated=False)
    opened = cd.open_dataset(tmp_path / "extra.zarr", variables=["sst", "nino34"])
    assert list(opened.data_vars) == ["sst", "nino34"]
    with pytest.raises(DataError, match=r"note\.dtype: expected a numeric dtype"):
        cd.open_dataset(tmp_path / "extra.zarr", variables=["sst", "note"])


# --------------------------------------------------------------------------- splits

SPLITS = {
    "train": ("2000-01", "2000-12"),
    "val": ("2001-01", "2001-06"),
    "test": ("2001-07", "2001-12"),
}


def _split_data():
    time = pd.date_range("2000-01-01", periods=24, freq="MS")
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"x": (("time", "p"), rng.normal(size=(24, 3))), "y": (("time",), rng.normal(size=24))},
        coords={"time": time},
    )


def test_check_splits_accepts_partly_missing_data():
    data = _split_data()
    data["x"][:6, 1] = np.nan
    cd.check_splits(data.chunk({"time": 5}), ["x", "y"], SPLITS)


@pytest.mark.parametrize(
    ("name", "where", "value", "message"),
    [
        ("x", slice(0, 12), np.nan, r"^x \(split train\): expected some values that are not NaN"),
        ("y", slice(12, 18), 3.0, r"^y \(split val\): expected values that vary, found .* 3$"),
        ("x", 20, np.inf, r"^x \(split test\): expected finite values"),
    ],
)
def test_check_splits_names_variable_and_split(name, where, value, message):
    data = _split_data()
    data[name][where] = value  # time steps 0-11 are train, 12-17 val, 18-23 test
    with pytest.raises(DataError, match=message):
        cd.check_splits(data.chunk({"time": 5}), ["x", "y"], SPLITS)


def test_constant_class_labels_may_be_allowed():
    data = _split_data().assign(y=("time", np.zeros(24, np.int64)))
    with pytest.raises(DataError, match=r"^y \(split train\)"):
        cd.check_splits(data, ["x", "y"], SPLITS)
    cd.check_splits(data, ["x", "y"], SPLITS, may_be_constant=["y"])


def test_in_memory_dataset_source(ds):
    assert cd.load_source(ds) is ds
    with pytest.raises(ConfigError, match=r"data\.source_args\.seed: expected a keyword"):
        cd.load_source(ds, seed=1)
    with pytest.raises(DataError, match=r"data\.source: expected the in-memory xarray\.Dataset"):
        cd.load_source("<in-memory xarray.Dataset, token 0123>")
