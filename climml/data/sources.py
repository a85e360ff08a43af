"""Datasets by name: built-in generators, or any zarr / netCDF path."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from climml.data import synthetic
from climml.data.open import open_dataset
from climml.data.real.hadisst import hadisst_ice
from climml.data.real.nino import nino12
from climml.data.real.seattle import seattle_weather
from climml.errors import ConfigError, DataError, expected

# One line per built-in source; keyword arguments come from the config's data.source_args.
SOURCES: dict[str, Callable[..., xr.Dataset]] = {
    "synthetic.enso": synthetic.enso,
    "synthetic.extreme_weather": synthetic.extreme_weather,
    "real.hadisst_ice": hadisst_ice,
    "real.nino12": nino12,
    "real.seattle_weather": seattle_weather,
}


def load_source(source: str, **kwargs: Any) -> xr.Dataset:
    """The dataset called ``source``: a name in ``SOURCES`` (called with ``kwargs``) or a path
    to a zarr store / netCDF file (opened lazily with ``open_dataset(path, **kwargs)``)."""
    if source in SOURCES:
        make = SOURCES[source]
        _check_arguments(source, make, kwargs)
        return make(**kwargs)
    if Path(source).exists():
        _check_arguments(source, open_dataset, kwargs)
        return open_dataset(source, **kwargs)
    want = f"one of {sorted(SOURCES)} or an existing zarr/netCDF path"
    raise DataError(expected("data.source", want, repr(source)))


def _check_arguments(source: str, make: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """ConfigError naming the bad key, instead of a TypeError from deep inside ``make``."""
    params = inspect.signature(make).parameters
    accepted = [
        n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.default is not p.empty
    ]
    for key in kwargs:
        if key not in accepted:
            want = f"a keyword of {source}: {accepted}"
            raise ConfigError(expected(f"data.source_args.{key}", want, "unknown key"))
