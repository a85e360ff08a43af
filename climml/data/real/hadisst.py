"""Real-data segmentation: open ocean / sea ice / land from the HadISST month inside cartopy.

Cartopy's wheel ships one month of the Met Office Hadley Centre HadISST 1.1 sea surface
temperature (August 2012, 1 degree, ``cartopy/data/netcdf/HadISST1_SST_update.nc``; Rayner et
al. 2003, J. Geophys. Res. 108:4407; academic research use). Its labels are read off the field:

- land (2): the grid cells HadISST leaves missing;
- sea ice (1): cells at -1.8 degC, the value HadISST assigns where sea-ice concentration is at
  least 90%;
- open ocean (0): the other cells.

The inputs are degraded so that the task is not a lookup: both are ``coarsen``-degree block
averages repeated back onto the 1-degree grid, plus Gaussian noise -- ``sst`` (degC, mean over
the block's ocean cells, NaN where a block is all land) and ``ocean_fraction``. A model must
recover the 1-degree coastline and ice edge from 4-degree information (a segmentation by
downscaling). Each sample is a fresh noise draw of the globe rotated in longitude by a random
multiple of ``coarsen`` degrees (``lon_shift``), so that positions cannot be memorized; the
``time`` axis is a nominal daily index of these samples. All samples come from one month and one
geography: scores measure skill on that month, not on unseen years.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import ConfigError, DataError, expected

CLASSES = ("open_ocean", "sea_ice", "land")
ICE_SST = -1.8  # degC: HadISST's SST under >= 90% ice concentration


def hadisst_path() -> Path:
    """Location of the HadISST file inside the installed cartopy (``DataError`` if absent)."""
    import cartopy

    path = Path(cartopy.__file__).parent / "data" / "netcdf" / "HadISST1_SST_update.nc"
    if not path.is_file():
        raise DataError(expected("HadISST file in cartopy", "an installed data file", str(path)))
    return path


def hadisst_field() -> xr.DataArray:
    """The August 2012 HadISST SST (lat, lon) in degC, NaN over land, as shipped."""
    with xr.open_dataset(hadisst_path(), decode_times=False) as ds:
        return ds["sst"].isel(time=0).drop_vars("time").load()


def surface_classes(sst: np.ndarray) -> np.ndarray:
    """int8 (lat, lon) classes from HadISST SST: 0 open ocean, 1 sea ice, 2 land."""
    labels = np.zeros(sst.shape, np.int8)
    labels[np.isclose(sst, ICE_SST, atol=1e-3)] = 1
    labels[np.isnan(sst)] = 2
    return labels


def hadisst_ice(
    n_samples: int = 96,
    *,
    coarsen: int = 4,
    noise: float = 0.5,
    fraction_noise: float = 0.05,
    seed: int = 0,
    start: str = "2012-08-01",
) -> xr.Dataset:
    """Degraded HadISST inputs ``sst``, ``ocean_fraction`` and 1-degree ``label`` per sample.

    n_samples: noisy, longitude-rotated copies of the month. coarsen: block size in degrees
    (divides 180 and 360). noise: SST noise (degC); fraction_noise: noise on the ocean fraction.
    Returns dims (time, lat, lon) on HadISST's 1-degree grid (lat 89.5 to -89.5).
    """
    if n_samples < 1:
        raise ConfigError(expected("n_samples", ">= 1", n_samples))
    if coarsen < 1 or 180 % coarsen or 360 % coarsen:
        raise ConfigError(expected("coarsen", "a divisor of 180 and 360", coarsen))
    if noise < 0 or fraction_noise < 0:
        raise ConfigError(expected("(noise, fraction_noise)", ">= 0", (noise, fraction_noise)))
    field = hadisst_field()
    sst = field.values.astype(np.float64)
    labels = surface_classes(sst)
    coarse_sst, coarse_frac = _block_means(sst, coarsen)
    rng = np.random.default_rng(seed)
    shifts = rng.integers(0, 360 // coarsen, n_samples) * coarsen
    sst_in = np.stack([np.roll(coarse_sst, s, axis=1) for s in shifts])
    frac_in = np.stack([np.roll(coarse_frac, s, axis=1) for s in shifts])
    sst_in += noise * rng.standard_normal(sst_in.shape)
    frac_in += fraction_noise * rng.standard_normal(frac_in.shape)
    label = np.stack([np.roll(labels, s, axis=1) for s in shifts])
    dims = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "sst": (dims, sst_in.astype(np.float32), {"units": "degC"}),
            "ocean_fraction": (dims, frac_in.astype(np.float32), {"units": "1"}),
            "label": (dims, label, {"flag_values": [0, 1, 2], "flag_meanings": " ".join(CLASSES)}),
        },
        coords={  # lon_shift a coordinate: it stays with the variables a run selects (maps undo it)
            "time": pd.date_range(start, periods=n_samples, freq="D"),
            "lon_shift": ("time", shifts.astype(np.int32), {"units": "degrees_east"}),
            "lat": field["lat"].values.astype(np.float64),
            "lon": field["lon"].values.astype(np.float64),
        },
        attrs={"source": "HadISST 1.1, August 2012 (Met Office Hadley Centre), via cartopy"},
    )


def _block_means(sst: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ocean-mean SST (NaN for all-land blocks) and ocean fraction of ``size``-cell blocks,
    repeated back to the full grid."""
    h, w = sst.shape
    blocks = sst.reshape(h // size, size, w // size, size)
    ocean = ~np.isnan(blocks)
    count = ocean.sum(axis=(1, 3))
    total = np.where(ocean, blocks, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    fraction = count / size**2
    expand = lambda a: np.repeat(np.repeat(a, size, axis=0), size, axis=1)  # noqa: E731
    return expand(mean), expand(fraction)
