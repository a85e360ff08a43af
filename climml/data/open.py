"""Open zarr stores and netCDF files lazily (dask) and check them before anything else runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import dask
import xarray as xr

from climml.data.validate import validate_dataset
from climml.errors import DataError, expected

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
AUTO_CHUNK_BYTES = 8 * 2**20  # target dask chunk size for chunks="auto"


def open_dataset(
    path: str | Path,
    *,
    variables: Iterable[str] | None = None,
    dims: Iterable[str] | None = None,
    chunks: str | int | dict | None = "auto",
) -> xr.Dataset:
    """Open a zarr store (a directory or ``*.zarr``) or a netCDF file as a lazy dataset.

    path: the store or file.
    variables: keep only these data variables (all if None); each must exist.
    dims: dims every kept variable must have, e.g. ``("time", "lat", "lon")``.
    chunks: dask chunking passed to xarray. ``"auto"`` makes chunks of whole on-disk chunks
        totalling about ``AUTO_CHUNK_BYTES`` (dask's own default, 128 MiB, would make the
        loader's ~16 MiB block reads decompress and hold far more than they use).

    Returns the dataset with dask-backed variables; nothing is read until computed.
    """
    path = Path(path)
    engine = _engine(path)
    try:
        ds = _open(path, engine, chunks)
    except (OSError, ValueError) as err:  # corrupt or foreign files: say which and why
        found = f"{path} ({type(err).__name__}: {err})"
        raise DataError(
            expected("data.source", "a readable zarr store or netCDF file", found)
        ) from err
    if variables is not None:
        variables = [variables] if isinstance(variables, str) else list(variables)
    validate_dataset(ds, variables, dims)
    return ds if variables is None else ds[variables]


def _open(path: Path, engine: str | None, chunks: str | int | dict | None) -> xr.Dataset:
    with dask.config.set({"array.chunk-size": AUTO_CHUNK_BYTES}):
        return _open_with(path, engine, chunks)


def _open_with(path: Path, engine: str | None, chunks: str | int | dict | None) -> xr.Dataset:
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
