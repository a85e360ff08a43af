"""Real radar rain-rate sequences in the pysteps-data layout (MeteoSwiss, FMI, KNMI), read offline.

API:

- ``radar_mch(root=None, *, events=None, crop=None, coarsen=1)``: MeteoSwiss AQC composites
  (``radar/mch/<yyyymmdd>/AQC*.gif``), 640 x 710 pixels of 1 km on the Swiss LV03 grid;
- ``radar_fmi(...)``: FMI lowest-elevation reflectivity composites
  (``radar/fmi/pgm/<yyyymmdd>/*.pgm.gz``), 1226 x 760 pixels of about 1 km;
- ``radar_knmi(...)``: KNMI 5-minute rain accumulations (``radar/KNMI/<yyyy>/<mm>/*.h5``), the
  grid from the HDF5 metadata: 765 x 700 pixels of 1 km on KNMI's polar stereographic grid
  (x 0..700 km, y -3650..-4415 km) for the files of pysteps-data; needs h5py (``climml[radar]``);
- ``radar_events(provider, ...)``: the same for ``provider`` in ``PROVIDERS``;
- ``data_root(root=None)``: where the data are looked for.

Each returns a lazy (dask, one chunk per frame) ``xr.Dataset`` with ``rain_rate`` (mm/h,
float32, NaN outside radar coverage) on ``(time, y, x)``: ``time`` from the file names, ``y`` and
``x`` pixel centres in km (rows run north to south as in the files, so ``y`` decreases),
and ``event`` along ``time``: the start date (``yyyymmdd`` int) of each run of consecutive
5-minute frames (for the KNMI files of pysteps-data, one morning: the day). The same layout as
``climml.data.synthetic.radar``.

Where the data are: ``root`` (``data.source_args: {root: ...}``), else the environment variable
``CLIMML_RADAR_DATA``, both naming the pysteps-data folder (the one holding ``radar/``); else
pysteps' own ``rcparams.data_sources[provider].root_path`` when pysteps is installed and that
folder exists. Otherwise a ``DataError`` says how to set it.

Values are those of pysteps' importers followed by ``pysteps.utils.conversion.to_rainrate``:

- MCH: the GIF palette index ``i`` encodes a 5-minute accumulation
  ``(10^((i - 71.5) / 20) / 316)^(1 / 1.5)`` mm (a Z = 316 R^1.5 reflectivity scale with 0.5 dB
  steps); ``i < 2`` and ``250 < i < 255`` are 0, ``i = 255`` is no coverage (NaN). Rain rate is
  the accumulation times 60 / 5.
- FMI: the grey value ``v`` is ``(v - 64) / 2`` dBZ; the PGM's maximum value is no coverage
  (NaN), ``v = 0`` is no echo (0 mm/h), otherwise ``R = (Z / 223)^(1 / 1.53)`` with
  ``Z = 10^(dBZ / 10)`` (FMI's Z-R relation, as pysteps uses it).
- KNMI (``import_knmi_hdf5(qty="ACRR", accutime=5)``): ``image1/image_data`` holds the 5-minute
  accumulation in hundredths of mm, ``65535`` is no data (NaN); rain rate is the accumulation
  times 60 / 5. The file name's time is the end of the accumulation.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import ConfigError, DataError, expected

ENV_VAR = "CLIMML_RADAR_DATA"
STEP = pd.Timedelta(minutes=5)
ACCUMULATION_MINUTES = 5.0


def _mch_lut() -> np.ndarray:
    """Rain rate (mm/h) of each of the 256 AQC palette indices."""
    i = np.arange(256, dtype=np.float64)
    depth = (10.0 ** ((i - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)  # mm in 5 minutes
    depth[(i < 2) | ((i > 250) & (i < 255))] = 0.0
    depth[255] = np.nan
    return depth * (60.0 / ACCUMULATION_MINUTES)


MCH_LUT = _mch_lut()


def _read_mch(path: str) -> np.ndarray:
    """(640, 710) float32 rain rate (mm/h) of one MeteoSwiss AQC GIF."""
    from PIL import Image

    with Image.open(path) as img:
        return MCH_LUT[np.asarray(img)].astype(np.float32)


def _read_fmi(path: str) -> np.ndarray:
    """(1226, 760) float32 rain rate (mm/h) of one gzipped FMI reflectivity PGM."""
    from PIL import Image

    with gzip.open(path, "rb") as f, Image.open(f) as img:
        raw = np.asarray(img)
        missing = _pgm_maxval(path)
    dbz = (raw.astype(np.float64) - 64.0) / 2.0
    rain = (10.0 ** (dbz / 10.0) / 223.0) ** (1.0 / 1.53)
    rain[raw == 0] = 0.0
    rain[raw == missing] = np.nan
    return rain.astype(np.float32)


KNMI_MISSING = 65535  # image1/calibration: calibration_missing_data and _out_of_image


def _h5py() -> Any:
    """h5py, or a ConfigError saying how to install it (only the KNMI reader needs it)."""
    try:
        import h5py
    except ImportError as err:
        want = 'h5py installed (pip install "climml[radar]")'
        raise ConfigError(expected("real.radar_knmi", want, f"no h5py ({err})")) from err
    return h5py


def _read_knmi(path: str) -> np.ndarray:
    """(rows, columns) float32 rain rate (mm/h) of one KNMI 5-minute accumulation HDF5 file."""
    with _h5py().File(path, "r") as f:
        raw = f["image1/image_data"][()]
    depth = raw / 100.0  # mm in 5 minutes
    depth[raw == KNMI_MISSING] = np.nan
    return (depth * (60.0 / ACCUMULATION_MINUTES)).astype(np.float32)


def _knmi_grid(path: str) -> Grid:
    """The grid of a KNMI HDF5 file, from its ``geographic`` attributes (pixel sizes in km)."""
    with _h5py().File(path, "r") as f:
        geo = dict(f["geographic"].attrs)
    unit = bytes(geo["geo_dim_pixel"]).decode()
    if unit != "KM,KM" or float(geo["geo_pixel_size_y"][0]) >= 0:
        found = f"{path}: geo_dim_pixel {unit!r}, geo_pixel_size_y {geo['geo_pixel_size_y']}"
        raise DataError(expected("radar file", "km pixels, rows north to south", found))
    dy, dx = -float(geo["geo_pixel_size_y"][0]), float(geo["geo_pixel_size_x"][0])
    # As pysteps: the top edge is row_offset * pixel_size_y, the left one column_offset * dx.
    top = -dy * float(geo["geo_row_offset"][0])
    left = dx * float(geo["geo_column_offset"][0])
    shape = (int(geo["geo_number_rows"][0]), int(geo["geo_number_columns"][0]))
    return Grid(shape, (dy, dx), (top, left))


def _pgm_maxval(path: str) -> int:
    """The maxval field of a gzipped binary PGM header (FMI uses it for 'no data')."""
    with gzip.open(path, "rb") as f:
        tokens: list[bytes] = []
        while len(tokens) < 4:
            line = f.readline()
            if not line:
                raise DataError(expected("radar file", "a PGM header", f"{path}: truncated"))
            tokens += line.split(b"#", 1)[0].split()
    return int(tokens[3])


@dataclass(frozen=True)
class Grid:
    """A provider's pixel grid, rows running north to south."""

    shape: tuple[int, int]  # rows, columns
    pixel_km: tuple[float, float]  # rows (y), columns (x)
    corner_km: tuple[float, float]  # (y, x) of the top-left pixel's outer corner


@dataclass(frozen=True)
class Provider:
    """Where one provider's files sit in the pysteps-data layout and how to read them."""

    folder: str  # under the pysteps-data root
    pattern: re.Pattern[str]  # file name -> its time (groups of ``time_format``)
    time_format: str
    grid: Grid | Callable[[str], Grid]  # fixed, or read from a file's metadata
    read: Callable[[str], np.ndarray]
    institution: str


PROVIDERS: dict[str, Provider] = {
    "mch": Provider(
        folder="radar/mch",
        pattern=re.compile(r"^AQC(\d{9})[A-Z]?_00005\.801\.gif$"),
        time_format="%y%j%H%M",
        # Swiss LV03 (CH1903) coordinates of the CCS4 domain
        grid=Grid(shape=(640, 710), pixel_km=(1.0, 1.0), corner_km=(480.0, 255.0)),
        read=_read_mch,
        institution="MeteoSwiss",
    ),
    "fmi": Provider(
        folder="radar/fmi/pgm",
        pattern=re.compile(r"^(\d{12})_fmi\.radar\.composite\.lowest_FIN_SUOMI1\.pgm\.gz$"),
        time_format="%Y%m%d%H%M",
        # The PGM header gives 999.63 m x 999.67 m pixels; y/x are km from the lower-left
        # corner (the files carry lon/lat corners, not projected coordinates).
        grid=Grid(
            shape=(1226, 760),
            pixel_km=(0.99962859, 0.999674053),
            corner_km=(1226 * 0.99962859, 0.0),
        ),
        read=_read_fmi,
        institution="Finnish Meteorological Institute",
    ),
    "knmi": Provider(
        folder="radar/KNMI",
        pattern=re.compile(r"^RAD_NL25_RAP_5min_(\d{12})\.h5$"),
        time_format="%Y%m%d%H%M",
        grid=_knmi_grid,
        read=_read_knmi,
        institution="Royal Netherlands Meteorological Institute (KNMI)",
    ),
}


def data_root(root: str | os.PathLike[str] | None = None, provider: str = "mch") -> Path:
    """The folder holding ``provider``'s files (e.g. ``<pysteps-data>/radar/mch``).

    Looked up in order: ``root``, ``$CLIMML_RADAR_DATA`` (both the pysteps-data folder), pysteps'
    ``rcparams.data_sources[provider].root_path``. ``DataError`` if none names a folder.
    """
    spec = _provider(provider)
    tried = []
    for origin, base in (("data.source_args.root", root), (ENV_VAR, os.environ.get(ENV_VAR))):
        if base:
            folder = Path(base).expanduser() / spec.folder
            if folder.is_dir():
                return folder
            raise DataError(
                expected(
                    origin, f"a pysteps-data folder holding {spec.folder}/", f"{base} (no {folder})"
                )
            )
        tried.append(origin)
    folder = _pysteps_folder(provider)
    if folder is not None:
        return folder
    tried.append(f"pysteps rcparams data_sources.{provider}.root_path")
    want = (
        f"the pysteps-data folder (holding {spec.folder}/) in data.source_args.root or the "
        f"environment variable {ENV_VAR}"
    )
    raise DataError(expected("data.source_args.root", want, f"none of {tried} set"))


def _pysteps_folder(provider: str) -> Path | None:
    """pysteps' configured folder for ``provider``, if pysteps is installed and it exists."""
    try:
        import pysteps
    except ImportError:
        return None
    try:
        folder = Path(pysteps.rcparams.data_sources[provider]["root_path"]).expanduser()
    except (KeyError, AttributeError, TypeError):
        return None
    return folder if folder.is_dir() else None


def radar_events(
    provider: str,
    root: str | os.PathLike[str] | None = None,
    *,
    events: Sequence[int | str] | None = None,
    crop: int | Sequence[int] | None = None,
    coarsen: int = 1,
) -> xr.Dataset:
    """Rain rate (mm/h) of ``provider``'s radar events as a lazy dataset (see module doc).

    root: the pysteps-data folder (default: see ``data_root``).
    events: event start dates to keep (``yyyymmdd``, int or str); default all.
    crop: ``size`` (a centred size x size square) or ``[row, col, size]`` (its top-left pixel in
        the file's grid); default the whole grid. Applied before ``coarsen``.
    coarsen: average k x k pixel blocks (a block with a missing pixel is missing); the crop is
        trimmed to a multiple of k.
    """
    spec = _provider(provider)
    folder = data_root(root, provider)
    frames = _select(_frames(folder, spec), events, folder, spec)
    times = pd.DatetimeIndex([t for t, _ in frames])
    grid = spec.grid(str(frames[0][1])) if callable(spec.grid) else spec.grid
    rows, cols, k = _window(crop, coarsen, grid.shape)
    shape = ((rows.stop - rows.start) // k, (cols.stop - cols.start) // k)

    def one(path: str) -> np.ndarray:
        field = spec.read(path)
        if field.shape != grid.shape:  # the grid came from the first file (or is fixed)
            found = f"{path}: {field.shape}"
            raise DataError(expected("radar file", f"a {grid.shape} field", found))
        field = field[rows, cols]
        if k > 1:
            field = field.reshape(shape[0], k, shape[1], k).mean(axis=(1, 3), dtype=np.float64)
        return field.astype(np.float32)

    stack = da.stack(
        [da.from_delayed(dask.delayed(one)(str(path)), shape, np.float32) for _, path in frames]
    )
    dy, dx = grid.pixel_km
    y = grid.corner_km[0] - dy * (rows.start + k * (np.arange(shape[0]) + 0.5))
    x = grid.corner_km[1] + dx * (cols.start + k * (np.arange(shape[1]) + 0.5))
    coords = {
        "time": times.values,
        "y": ("y", y, {"units": "km"}),
        "x": ("x", x, {"units": "km"}),
        "event": ("time", _events(times)),
    }
    rain = xr.Variable(("time", "y", "x"), stack, {"units": "mm/h"})
    attrs = {
        "title": f"{spec.institution} radar rain rate",
        "institution": spec.institution,
        "source": str(folder),
        "step_minutes": 5.0,
    }
    return xr.Dataset({"rain_rate": rain}, coords=coords, attrs=attrs)


def radar_mch(
    root: str | os.PathLike[str] | None = None,
    *,
    events: Sequence[int | str] | None = None,
    crop: int | Sequence[int] | None = None,
    coarsen: int = 1,
) -> xr.Dataset:
    """MeteoSwiss AQC rain rate (mm/h), 1 km Swiss grid; see ``radar_events``."""
    return radar_events("mch", root, events=events, crop=crop, coarsen=coarsen)


def radar_fmi(
    root: str | os.PathLike[str] | None = None,
    *,
    events: Sequence[int | str] | None = None,
    crop: int | Sequence[int] | None = None,
    coarsen: int = 1,
) -> xr.Dataset:
    """FMI rain rate (mm/h) from lowest-elevation reflectivity, ~1 km grid; see ``radar_events``."""
    return radar_events("fmi", root, events=events, crop=crop, coarsen=coarsen)


def radar_knmi(
    root: str | os.PathLike[str] | None = None,
    *,
    events: Sequence[int | str] | None = None,
    crop: int | Sequence[int] | None = None,
    coarsen: int = 1,
) -> xr.Dataset:
    """KNMI rain rate (mm/h) from 5-minute accumulations, 1 km grid; see ``radar_events``."""
    return radar_events("knmi", root, events=events, crop=crop, coarsen=coarsen)


def _provider(provider: str) -> Provider:
    if provider not in PROVIDERS:
        raise ConfigError(expected("provider", f"one of {sorted(PROVIDERS)}", repr(provider)))
    return PROVIDERS[provider]


def _frames(folder: Path, spec: Provider) -> list[tuple[pd.Timestamp, Path]]:
    """(time, path) of every file matching ``spec`` under ``folder``, sorted by time."""
    found = []
    for path in folder.rglob("*"):
        match = spec.pattern.match(path.name)
        if match:
            found.append((pd.Timestamp(datetime.strptime(match.group(1), spec.time_format)), path))
    found.sort()
    times = [t for t, _ in found]
    if len(set(times)) != len(times):
        dup = next(t for t, n in pd.Series(times).value_counts().items() if n > 1)
        raise DataError(expected("radar files", "one file per time", f"several at {dup}"))
    return found


def _select(
    frames: list[tuple[pd.Timestamp, Path]], events: Any, folder: Path, spec: Provider
) -> list[tuple[pd.Timestamp, Path]]:
    """The frames of the chosen ``events`` (all if None); DataError naming what is missing."""
    if not frames:
        want = f"{spec.folder} radar files"
        raise DataError(expected("data.source_args.root", want, f"none matching under {folder}"))
    if events is None:
        return frames
    event = _events(pd.DatetimeIndex([t for t, _ in frames]))
    try:
        want = {int(e) for e in events}
    except (TypeError, ValueError) as err:
        found = f"{events!r} ({err})"
        raise ConfigError(expected("data.source_args.events", "yyyymmdd dates", found)) from err
    missing = want - set(event)
    if missing:
        have = f"some of {sorted(set(event))}"
        raise DataError(expected("data.source_args.events", have, sorted(missing)))
    return [frame for frame, e in zip(frames, event, strict=True) if e in want]


def _window(crop: Any, coarsen: Any, shape: tuple[int, int]) -> tuple[slice, slice, int]:
    """Rows and columns of the crop, trimmed to a multiple of the coarsening factor ``k``."""
    rows, cols = _crop(crop, shape)
    k = _check_coarsen(coarsen, rows.stop - rows.start, cols.stop - cols.start)
    rows = slice(rows.start, rows.start + (rows.stop - rows.start) // k * k)
    cols = slice(cols.start, cols.start + (cols.stop - cols.start) // k * k)
    return rows, cols, k


def _events(times: pd.DatetimeIndex) -> np.ndarray:
    """Event id of every frame: the start date (yyyymmdd) of its run of 5-minute steps."""
    starts = np.r_[True, np.diff(times.values) != STEP.to_timedelta64()]
    start_of = times[np.maximum.accumulate(np.where(starts, np.arange(len(times)), 0))]
    return np.asarray(start_of.strftime("%Y%m%d").astype(int), dtype=np.int64)


def _crop(crop: Any, shape: tuple[int, int]) -> tuple[slice, slice]:
    field = "data.source_args.crop"
    if crop is None:
        return slice(0, shape[0]), slice(0, shape[1])
    if isinstance(crop, int | np.integer) and not isinstance(crop, bool):
        row, col, size = (shape[0] - crop) // 2, (shape[1] - crop) // 2, int(crop)
    elif (
        isinstance(crop, Sequence)
        and len(crop) == 3
        and all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in crop)
    ):
        row, col, size = (int(c) for c in crop)
    else:
        raise ConfigError(expected(field, "a size or [row, col, size] (integers)", repr(crop)))
    if size < 1 or row < 0 or col < 0 or row + size > shape[0] or col + size > shape[1]:
        want = f"a square of at least 1 pixel inside the {shape[0]} x {shape[1]} grid"
        raise ConfigError(expected(field, want, repr(crop)))
    return slice(row, row + size), slice(col, col + size)


def _check_coarsen(k: Any, height: int, width: int) -> int:
    if (
        not isinstance(k, int | np.integer)
        or isinstance(k, bool)
        or not 1 <= k <= min(height, width)
    ):
        want = f"an integer in [1, {min(height, width)}] (the cropped grid's side)"
        raise ConfigError(expected("data.source_args.coarsen", want, repr(k)))
    return int(k)
