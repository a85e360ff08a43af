"""Datasets by name: built-in generators, any zarr / netCDF path or glob, or an xr.Dataset."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from climml.config import IN_MEMORY
from climml.data import synthetic
from climml.data.open import GLOB_CHARS, open_dataset
from climml.data.real.hadisst import hadisst_ice
from climml.data.real.nino import nino12
from climml.data.real.radar import radar_fmi, radar_knmi, radar_mch
from climml.data.real.seattle import seattle_weather
from climml.errors import ConfigError, DataError, expected

# One line per built-in source; keyword arguments come from the config's data.source_args.
SOURCES: dict[str, Callable[..., xr.Dataset]] = {
    "synthetic.enso": synthetic.enso,
    "synthetic.extreme_weather": synthetic.extreme_weather,
    "synthetic.radar": synthetic.radar,
    "real.hadisst_ice": hadisst_ice,
    "real.nino12": nino12,
    "real.radar_fmi": radar_fmi,
    "real.radar_knmi": radar_knmi,
    "real.radar_mch": radar_mch,
    "real.seattle_weather": seattle_weather,
}


def load_source(source: str | xr.Dataset, **kwargs: Any) -> xr.Dataset:
    """The dataset ``source`` names, lazy where it can be.

    source: a name in ``SOURCES`` (called with ``kwargs``); a path to a zarr store or netCDF
        file, or a glob of netCDF files (opened lazily with ``open_dataset(path, **kwargs)``); or
        an ``xr.Dataset`` (in memory or dask-backed), returned as is (``kwargs`` must be empty).

    The result still needs ``conform`` (``climml.pipeline.prepare`` does it with the variables
    a config reads).
    """
    if isinstance(source, xr.Dataset):
        _check_arguments("an in-memory xarray.Dataset", _no_arguments, kwargs)
        return source
    if source in SOURCES:
        make = SOURCES[source]
        _check_arguments(source, make, kwargs)
        return make(**kwargs)
    if source.startswith(IN_MEMORY):  # the description config.yaml keeps of a Dataset
        want = "the in-memory xarray.Dataset of this run, passed as data.source from Python"
        raise DataError(expected("data.source", want, f"its description {source!r}"))
    if Path(source).exists() or any(c in source for c in GLOB_CHARS):
        _check_arguments(source, open_dataset, kwargs)
        return open_dataset(source, **kwargs)
    want = f"one of {sorted(SOURCES)}, an existing zarr/netCDF path or a glob of netCDF files"
    raise DataError(expected("data.source", want, repr(source)))


def _no_arguments() -> None:
    """An in-memory dataset takes no ``data.source_args``."""


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
