"""Checks that a dataset can feed the data path: variables, dims and a clean time axis.

Every failure is a ``DataError`` whose message names the offending field, what was expected and
what was found, so a user with a malformed file learns which variable or coordinate to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dask
import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import DataError, expected


def validate_dataset(
    ds: xr.Dataset,
    variables: Iterable[str] | None = None,
    dims: Iterable[str] | None = None,
) -> None:
    """Raise ``DataError`` unless ``ds`` has a usable time axis, the variables and their dims.

    ds: the dataset to check.
    variables: names that must be numeric data variables of ``ds`` (all data variables if None).
    dims: dims every checked variable must have, e.g. ``("time",)`` or ``("time", "lat", "lon")``.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(expected("dataset", "an xarray.Dataset", type(ds).__name__))
    check_time(ds)
    names = list(ds.data_vars) if variables is None else _as_names(variables, "variables")
    for name in names:
        _check_variable(ds, name, tuple(dims or ()))


def check_splits(
    ds: xr.Dataset,
    variables: Iterable[str],
    splits: Mapping[str, tuple[str, str]],
    *,
    may_be_constant: Iterable[str] = (),
) -> None:
    """Raise ``DataError`` naming the variable and split where a variable is unusable.

    Per split (``{name: (start, end)}`` inclusive time labels) each variable needs finite values,
    no infinities and, unless listed in ``may_be_constant`` (class labels), more than one value:
    an all-NaN input would train on the fill value alone, a constant target has no skill to
    measure. One dask pass computes every count, minimum and maximum together.
    """
    index = ds.indexes["time"]
    names = _as_names(variables, "variables")
    lazy = []
    for start, end in splits.values():
        part = ds.isel(time=index.slice_indexer(str(start), str(end)))
        for name in names:
            var = part[name]
            lazy += [var.notnull().sum(), var.min(), var.max()]
    values = iter(float(v) for v in dask.compute(*lazy))
    for split in splits:
        for name in names:
            finite, low, high = next(values), next(values), next(values)
            field = f"{name} (split {split})"
            if finite == 0:
                raise DataError(expected(field, "some values that are not NaN", "only NaN"))
            if not (np.isfinite(low) and np.isfinite(high)):
                found = f"values from {low} to {high}"
                raise DataError(expected(field, "finite values (NaN for missing)", found))
            if low == high and name not in may_be_constant:
                raise DataError(expected(field, "values that vary", f"the constant {low:g}"))


def check_time(ds: xr.Dataset) -> None:
    """Raise ``DataError`` unless ``ds`` has a strictly increasing, datetime ``time`` index."""
    if "time" not in ds.dims or "time" not in ds.indexes:
        raise DataError(expected("time", "a 'time' dimension with a coordinate", _dims_text(ds)))
    index = ds.indexes["time"]
    if not isinstance(index, pd.DatetimeIndex) and not _is_cftime_index(index):
        raise DataError(expected("time", "datetime values", f"dtype {index.dtype}"))
    if isinstance(index, pd.DatetimeIndex) and index.hasnans:
        bad = int(np.flatnonzero(index.isna())[0])
        raise DataError(expected("time", "no missing (NaT) values", f"NaT at index {bad}"))
    _check_increasing(index)


def _check_increasing(index: pd.Index) -> None:
    if index.is_monotonic_increasing and index.is_unique:
        return
    values = list(index)
    for i in range(1, len(values)):
        if values[i] == values[i - 1]:
            found = f"duplicate {values[i]} at index {i}"
            raise DataError(expected("time", "strictly increasing values", found))
        if values[i] < values[i - 1]:
            found = f"{values[i - 1]} followed by {values[i]} at index {i}"
            raise DataError(expected("time", "strictly increasing values", found))


def _check_variable(ds: xr.Dataset, name: str, dims: tuple[str, ...]) -> None:
    if name not in ds.data_vars:
        available = ", ".join(map(str, ds.data_vars)) or "none"
        raise DataError(expected(name, "a data variable", f"none (available: {available})"))
    var = ds[name]
    missing = [d for d in dims if d not in var.dims]
    if missing:
        raise DataError(expected(f"{name}.dims", f"to include {dims}", var.dims))
    if not (np.issubdtype(var.dtype, np.floating) or np.issubdtype(var.dtype, np.integer)):
        raise DataError(expected(f"{name}.dtype", "a numeric dtype", var.dtype))


def _as_names(names: Iterable[str], field: str) -> list[str]:
    if isinstance(names, str):
        return [names]
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise DataError(expected(field, "variable names (strings)", names))
    return names


def _dims_text(ds: xr.Dataset) -> str:
    return f"dims {tuple(ds.dims)}" if ds.dims else "no dims"


def _is_cftime_index(index: pd.Index) -> bool:
    return type(index).__name__ == "CFTimeIndex"
