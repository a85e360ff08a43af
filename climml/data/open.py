"""Open zarr stores and netCDF files lazily (dask) and bring any dataset to one convention.

``conform`` is the single place where the conventions of datasets found in the wild are handled:
``latitude``/``longitude`` are renamed ``lat``/``lon``; a descending axis is sorted ascending;
longitudes may be -180..180 or 0..360 (kept as given, sorted ascending, also when a shifted
grid runs 0..180 then -180..0); a ``valid_time`` axis
becomes ``time``; CF times in a non-standard calendar are converted when every date exists in
the standard calendar. What cannot be mapped without guessing (forecast-style ``init_time`` x
``lead_time`` data, impossible dates such as 30 February) is a one-line ``DataError``.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterable
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr

from climml.data.validate import validate_dataset
from climml.errors import DataError, expected

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
AUTO_CHUNK_BYTES = 8 * 2**20  # target dask chunk size for chunks="auto"
GLOB_CHARS = "*?["
RENAMES = {"latitude": "lat", "longitude": "lon"}
FORECAST_DIMS = ("init_time", "lead_time", "step", "forecast_reference_time")


def open_dataset(
    path: str | Path,
    *,
    variables: Iterable[str] | None = None,
    dims: Iterable[str] | None = None,
    chunks: str | int | dict | None = "auto",
) -> xr.Dataset:
    """Open a zarr store, a netCDF file or a glob of netCDF files as a lazy, conformed dataset.

    path: the store or file; a pattern such as ``"era5/*.nc"`` opens all matching files as one
        dataset (``xr.open_mfdataset``, combined by their coordinates, which must align exactly).
    variables: keep only these data variables (all if None); each must exist and be numeric.
        Variables not kept are never checked, so an unused mask or text variable does no harm.
    dims: dims every kept variable must have, e.g. ``("time", "lat", "lon")``.
    chunks: dask chunking passed to xarray. ``"auto"`` makes chunks of whole on-disk chunks
        totalling about ``AUTO_CHUNK_BYTES`` (dask's own default, 128 MiB, would make the
        loader's ~16 MiB block reads decompress and hold far more than they use).

    Returns the dataset with dask-backed variables (see ``conform``); nothing is read until
    computed.
    """
    text = str(path)
    try:
        with dask.config.set({"array.chunk-size": AUTO_CHUNK_BYTES}):
            if any(c in text for c in GLOB_CHARS):
                ds = _open_glob(text, chunks)
            else:
                path = Path(path)
                ds = _open_one(path, _engine(path), chunks)
    except (OSError, ValueError) as err:  # corrupt, foreign or misaligned files: say which
        found = f"{text} ({type(err).__name__}: {_first_line(err)})"
        raise DataError(
            expected("data.source", "a readable zarr store or netCDF file", found)
        ) from err
    return conform(ds, variables, dims)


def conform(
    ds: xr.Dataset,
    variables: Iterable[str] | None = None,
    dims: Iterable[str] | None = None,
) -> xr.Dataset:
    """``ds`` (lazy stays lazy) with the conventions of the data path, checked.

    Renames ``latitude``/``longitude`` to ``lat``/``lon`` and ``valid_time`` to ``time``,
    converts cftime dates to datetime64, sorts ``lat`` and ``lon`` ascending, keeps only
    ``variables`` (all if None) and checks them with ``validate_dataset``.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(expected("data.source", "an xarray.Dataset", type(ds).__name__))
    ds = ds.rename(
        {k: v for k, v in RENAMES.items() if k in ds.variables and v not in ds.variables}
    )
    ds = _time_axis(ds)
    if variables is not None:
        names = [variables] if isinstance(variables, str) else list(dict.fromkeys(variables))
        validate_dataset(ds, names, dims)
        ds = ds[names]
    else:
        validate_dataset(ds, [], dims)
    for axis in ("lat", "lon"):
        ds = _ascending(ds, axis)
    return ds


def _time_axis(ds: xr.Dataset) -> xr.Dataset:
    """Map ``valid_time`` to ``time``, refuse forecast-style axes, convert cftime dates."""
    forecast = [d for d in FORECAST_DIMS if d in ds.dims]
    if forecast:
        raise DataError(
            expected(
                "time",
                "one 'time' axis of observation times (a forecast-style dataset must be "
                "reduced first, e.g. ds.sel(lead_time=0).rename(init_time='time'))",
                f"forecast dims {tuple(forecast)}",
            )
        )
    if "time" not in ds.variables and "valid_time" in ds.dims:
        ds = ds.rename({"valid_time": "time"})  # ERA5 from the CDS: the times values are valid at
    if "time" in ds.indexes and type(ds.indexes["time"]).__name__ == "CFTimeIndex":
        ds = ds.assign_coords(time=_to_datetime(ds.indexes["time"]))
    return ds


def _to_datetime(index: xr.CFTimeIndex) -> pd.DatetimeIndex:
    """cftime dates as datetime64. Windows count time steps, not days, so a 'noleap' or
    '360_day' series keeps its meaning; only dates that do not exist (30 February) are refused."""
    calendar = index.calendar
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "non-standard calendar": intended
            return index.to_datetimeindex(time_unit="ns")
    except (ValueError, OverflowError) as err:
        bad = next((d for d in index if not _exists(d)), None)
        found = f"calendar '{calendar}' with {bad}" if bad is not None else _first_line(err)
        raise DataError(
            expected(
                "time",
                "dates that exist in the standard calendar between 1678 and 2262 (convert with "
                "ds.convert_calendar('standard', align_on='year'))",
                found,
            )
        ) from err


def _exists(date) -> bool:
    try:
        pd.Timestamp(date.year, date.month, date.day)
    except ValueError:
        return False
    return True


def _ascending(ds: xr.Dataset, axis: str) -> xr.Dataset:
    """Sort a 1-D coordinate axis ascending; repeated or out-of-range degrees are refused."""
    if axis not in ds.dims or axis not in ds.indexes:
        return ds
    values = np.asarray(ds.indexes[axis], dtype=float)
    if values.size < 2:
        return ds
    steps = np.diff(values)
    if np.all(steps < 0):
        ds = ds.isel({axis: slice(None, None, -1)})  # a view, cheaper than a gather
    elif not np.all(steps > 0):
        if np.unique(values).size < values.size:
            raise DataError(expected(axis, "distinct values", f"repeats in {_range_text(values)}"))
        ds = ds.isel({axis: np.argsort(values)})  # e.g. 0..180 then -180..0 after a lon shift
    low, high = {"lat": (-90.0, 90.0), "lon": (-180.0, 360.0)}[axis]
    mixed = axis == "lon" and values.min() < 0 and values.max() > 180
    if values.min() < low or values.max() > high or mixed:
        want = "degrees in [-90, 90]" if axis == "lat" else "degrees in [-180, 180] or [0, 360]"
        raise DataError(expected(axis, want, _range_text(values)))
    return ds


def _range_text(values: np.ndarray) -> str:
    return f"{values.size} values from {values.min():g} to {values.max():g}"


def _open_glob(pattern: str, chunks: str | int | dict | None) -> xr.Dataset:
    files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(expected("data.source", f"netCDF files matching {pattern!r}", "none"))
    foreign = [f for f in files if Path(f).suffix not in NETCDF_SUFFIXES]
    if foreign:
        want = f"only files ending in {NETCDF_SUFFIXES} matching {pattern!r}"
        raise DataError(expected("data.source", want, foreign[0]))
    # join="exact": files on different grids are an error, never a silent NaN-padded union.
    return xr.open_mfdataset(
        files,
        chunks=chunks,
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
    )


def _open_one(path: Path, engine: str | None, chunks: str | int | dict | None) -> xr.Dataset:
    if engine != "zarr":
        return xr.open_dataset(path, engine=engine, chunks=chunks)
    try:  # consolidated metadata is one read instead of one per array; not every store has it
        return xr.open_dataset(path, engine="zarr", chunks=chunks, consolidated=True)
    except ValueError:
        return xr.open_dataset(path, engine="zarr", chunks=chunks, consolidated=False)


def _engine(path: Path) -> str | None:
    """The xarray backend for ``path``: zarr for directories and ``.zarr``; for netCDF None
    lets xarray pick whichever of netCDF4 / h5netcdf is installed."""
    if not path.exists():
        raise DataError(expected("data.source", "an existing zarr store or netCDF file", path))
    if path.is_dir() or path.suffix == ".zarr":
        return "zarr"
    if path.suffix in NETCDF_SUFFIXES:
        return None
    raise DataError(
        expected("data.source", f"a zarr store or a file ending in {NETCDF_SUFFIXES}", path)
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
