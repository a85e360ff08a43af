"""Synthetic extreme weather on a global grid, labelled from its own physics (ClimateNet-like).

Fields at every time step (6-hourly by default):

- ``iwv``: integrated water vapour (kg m-2): a zonal climatology (moist tropics, dry poles) plus
  red spatial noise, moist cyclone cores and atmospheric-river filaments;
- ``u850``, ``v850``: 850 hPa wind (m s-1): trade easterlies / mid-latitude westerlies, noise,
  cyclonic vortices and the low-level jet along each river;
- ``slp``: sea-level pressure (hPa): 1013 minus a subtropical-high / subpolar-low profile,
  noise and the cyclones' low-pressure cores.

Tropical cyclones are Gaussian pressure lows, ``p' = -dp exp(-r^2 / 2 R^2)``, whose tangential wind
is the cyclostrophic balance of that pressure gradient, ``V(r) = Vmax (r/R) exp((1 - r^2/R^2) / 2)``
with ``Vmax = sqrt(dp e^(-1/2) / rho)`` (so a 30 hPa low carries ~40 m s-1 winds), turning
anticlockwise in the northern and clockwise in the southern hemisphere. They form at 8-25 degrees
latitude and drift westward and poleward while they deepen and decay. Atmospheric rivers are
long (2500-5000 km), narrow (Gaussian half-width ~300 km) moisture filaments from the subtropics
poleward and eastward, with a low-level jet along them; they travel eastward.

Labels are *detected from the final fields* (noise included), not copied from the generator,
with the usual criteria (simplified):

- tropical cyclone (1): 10 m-level proxy wind ``|V850| >= 17 m s-1`` (tropical-storm strength),
  ``slp <= 1005 hPa``, cyclonic relative vorticity, ``|lat| <= 40``;
- atmospheric river (2): integrated vapour transport proxy ``IVT = iwv |V850| >= 250 kg m-1 s-1``
  (Guan & Waliser 2015 use 250 as the fixed floor), ``iwv`` at least 8 kg m-2 above its zonal
  climatology, ``20 <= |lat| <= 70``, in a connected region at least 2000 km long and on average
  narrower than 1000 km (Ralph et al. 2004);
- background (0) elsewhere.

Cyclone pixels come out well under 1% of the grid, rivers a few percent, as in ClimateNet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from climml.errors import ConfigError, expected

EARTH_KM_PER_DEG = 111.2
AIR_DENSITY = 1.15  # kg m-3 near the surface
CLASSES = ("background", "tropical_cyclone", "atmospheric_river")

# Detection thresholds (see module docstring).
TC_WIND = 17.0  # m s-1
TC_SLP = 1005.0  # hPa
TC_MAX_LAT = 40.0
AR_IVT = 250.0  # kg m-1 s-1
AR_IWV_ANOMALY = 8.0  # kg m-2
AR_LAT = (20.0, 70.0)
AR_MIN_LENGTH_KM = 2000.0
AR_MAX_WIDTH_KM = 1000.0
SEGMENTS = 12  # straight pieces of a river's axis

# Background noise: AR(1) in time, smoothed over NOISE_CELLS grid cells.
NOISE_LAG1 = 0.8
NOISE_CELLS = 3.0
IWV_NOISE_SCALE = 30.0  # kg m-2
NOISE_STD = {
    "iwv": 3.0,  # iwv: where the climatology is IWV_NOISE_SCALE; proportional to it
    "u850": 2.0,
    "v850": 2.0,
    "slp": 2.5,
}


def extreme_weather(
    n_times: int = 128,
    *,
    nlat: int = 64,
    nlon: int = 128,
    cyclones: float = 3.0,
    rivers: float = 6.0,
    lat_max: float = 70.0,
    freq: str = "6h",
    start: str = "2000-01-01",
    seed: int = 0,
) -> xr.Dataset:
    """A dataset of ``iwv``, ``u850``, ``v850``, ``slp`` and a ``label`` mask on (time, lat, lon).

    n_times: time steps. nlat, nlon: grid cells over [-lat_max, lat_max] x [0, 360) (centres).
    cyclones, rivers: mean number of tropical cyclones / atmospheric rivers alive at a time.
    freq, start: pandas time axis. seed: everything random derives from it.
    ``label`` is int8 with classes 0 background, 1 tropical cyclone, 2 atmospheric river.
    """
    _check(n_times, nlat, nlon, cyclones, rivers, lat_max)
    rng = np.random.default_rng(seed)
    lat = np.linspace(-lat_max, lat_max, nlat, endpoint=True)
    lon = (np.arange(nlon) + 0.5) * 360.0 / nlon
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    base = _climatology(lat2)
    events = _cyclone_tracks(rng, n_times, cyclones) + _river_tracks(rng, n_times, rivers)
    noise = {name: _red_noise(rng, n_times, nlat, nlon) * std for name, std in NOISE_STD.items()}
    noise["iwv"] *= base["iwv"] / IWV_NOISE_SCALE  # moisture varies most where there is most
    fields = {name: np.empty((n_times, nlat, nlon), np.float32) for name in NOISE_STD}
    labels = np.empty((n_times, nlat, nlon), np.int8)
    for t in range(n_times):
        step = {name: base[name] + noise[name][t] for name in NOISE_STD}
        for event in events:
            event.add(step, t, lat2, lon2)
        step["iwv"] = np.maximum(step["iwv"], 0.0)  # vapour is never negative
        for name in NOISE_STD:
            fields[name][t] = step[name]
        labels[t] = detect(step, lat, lon, base["iwv"])
    coords = {
        "time": pd.date_range(start, periods=n_times, freq=freq),
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    units = {"iwv": "kg m-2", "u850": "m s-1", "v850": "m s-1", "slp": "hPa"}
    data = {name: (("time", "lat", "lon"), fields[name], {"units": units[name]}) for name in units}
    data["label"] = (
        ("time", "lat", "lon"),
        labels,
        {"flag_values": list(range(len(CLASSES))), "flag_meanings": " ".join(CLASSES)},
    )
    return xr.Dataset(data, coords=coords, attrs={"title": "climml synthetic extreme weather"})


def _check(n_times, nlat, nlon, cyclones, rivers, lat_max) -> None:
    if n_times < 1:
        raise ConfigError(expected("n_times", ">= 1", n_times))
    if nlat < 8 or nlon < 16:
        raise ConfigError(expected("(nlat, nlon)", "at least (8, 16)", (nlat, nlon)))
    if cyclones < 0 or rivers < 0:
        raise ConfigError(expected("(cyclones, rivers)", "non-negative rates", (cyclones, rivers)))
    if not 45.0 <= lat_max <= 90.0:
        raise ConfigError(expected("lat_max", "in [45, 90] degrees", lat_max))


# --------------------------------------------------------------------------- background


def _climatology(lat2: np.ndarray) -> dict[str, np.ndarray]:
    """Zonal-mean state on the grid: moist tropics, trades/westerlies, highs near 30 degrees."""
    alat = np.abs(lat2)
    iwv = 5.0 + 45.0 * np.exp(-((lat2 / 28.0) ** 2))
    u = -6.0 * np.exp(-(((alat - 12.0) / 10.0) ** 2)) + 8.0 * np.exp(-(((alat - 45.0) / 12.0) ** 2))
    slp = (
        1013.0
        + 6.0 * np.exp(-(((alat - 30.0) / 10.0) ** 2))
        - 10.0 * np.exp(-(((alat - 60.0) / 10.0) ** 2))
    )
    return {"iwv": iwv, "u850": u, "v850": np.zeros_like(u), "slp": slp}


def _red_noise(rng: np.random.Generator, n: int, nlat: int, nlon: int) -> np.ndarray:
    """(n, nlat, nlon) unit-variance noise, smooth in space (periodic in lon), AR(1) in time."""
    white = rng.standard_normal((n, nlat, nlon))
    smooth = ndimage.gaussian_filter(
        white, (0, NOISE_CELLS, NOISE_CELLS), mode=("nearest", "reflect", "wrap")
    )
    smooth /= smooth.std()
    out = np.empty_like(smooth)
    out[0] = smooth[0]
    innovation = np.sqrt(1.0 - NOISE_LAG1**2)
    for t in range(1, n):
        out[t] = NOISE_LAG1 * out[t - 1] + innovation * smooth[t]
    return out


def _offsets_km(lat2, lon2, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
    """Eastward and northward distances (km) from (lat0, lon0), longitude wrapped to +-180."""
    dlon = (lon2 - lon0 + 180.0) % 360.0 - 180.0
    dx = dlon * EARTH_KM_PER_DEG * np.cos(np.deg2rad(lat0))
    dy = (lat2 - lat0) * EARTH_KM_PER_DEG
    return dx, dy


# --------------------------------------------------------------------------- events


class _Cyclone:
    """A Gaussian low in cyclostrophic balance drifting west and poleward; depth ramps up/down."""

    def __init__(self, rng: np.random.Generator, t0: int):
        self.t0, self.life = t0, int(rng.integers(12, 40))
        self.hemisphere = rng.choice([-1.0, 1.0])
        self.lat0, self.lon0 = rng.uniform(8.0, 25.0), rng.uniform(0.0, 360.0)
        self.dlat, self.dlon = rng.uniform(0.1, 0.4), -rng.uniform(0.3, 1.0)  # degrees per step
        self.depth = rng.uniform(20.0, 50.0)  # hPa at peak
        self.radius = rng.uniform(180.0, 300.0)  # km, radius of maximum wind

    def add(self, f: dict, t: int, lat2: np.ndarray, lon2: np.ndarray) -> None:
        age = (t - self.t0) / self.life
        if not 0.0 <= age <= 1.0:
            return
        depth = self.depth * np.sin(np.pi * age) ** 0.5
        lat0 = self.hemisphere * (self.lat0 + self.dlat * (t - self.t0))
        lon0 = (self.lon0 + self.dlon * (t - self.t0)) % 360.0
        dx, dy = _offsets_km(lat2, lon2, lat0, lon0)
        q = (dx**2 + dy**2) / self.radius**2
        f["slp"] -= depth * np.exp(-q / 2.0)
        vmax = np.sqrt(depth * 100.0 * np.exp(-0.5) / AIR_DENSITY)
        speed_per_km = vmax * np.exp((1.0 - q) / 2.0) / self.radius  # V(r) / r
        turn = self.hemisphere  # anticlockwise in the north, clockwise in the south
        f["u850"] += -turn * speed_per_km * dy
        f["v850"] += turn * speed_per_km * dx
        f["iwv"] += 20.0 * (depth / 50.0) * np.exp(-q / 4.0)


class _River:
    """A curved moisture filament with a jet along it, from the subtropics poleward-eastward."""

    def __init__(self, rng: np.random.Generator, t0: int):
        self.t0, self.life = t0, int(rng.integers(8, 24))
        self.hemisphere = rng.choice([-1.0, 1.0])
        self.lat0, self.lon0 = rng.uniform(22.0, 32.0), rng.uniform(0.0, 360.0)
        self.length = rng.uniform(2500.0, 5000.0)  # km
        self.width = rng.uniform(150.0, 260.0)  # km, Gaussian half-width
        self.angle = np.deg2rad(rng.uniform(20.0, 45.0))  # poleward of due east
        self.bend = rng.uniform(-0.3, 0.3)  # radians of turning along the path
        self.moisture = rng.uniform(14.0, 24.0)  # kg m-2 added on the axis
        self.jet = rng.uniform(12.0, 18.0)  # m s-1 along the axis
        self.speed = rng.uniform(1.0, 2.5)  # degrees east per step

    def add(self, f: dict, t: int, lat2: np.ndarray, lon2: np.ndarray) -> None:
        age = (t - self.t0) / self.life
        if not 0.0 <= age <= 1.0:
            return
        strength = np.sin(np.pi * age) ** 0.3
        lon0 = (self.lon0 + self.speed * (t - self.t0)) % 360.0
        lat0 = self.hemisphere * self.lat0
        # Path: SEGMENTS straight pieces whose heading turns by ``bend`` (km east / north).
        heading = self.angle + self.bend * np.linspace(0.0, 1.0, SEGMENTS)
        step = self.length / SEGMENTS
        east = np.concatenate([[0.0], np.cumsum(np.cos(heading) * step)])
        north = self.hemisphere * np.concatenate([[0.0], np.cumsum(np.sin(heading) * step)])
        dx, dy = _offsets_km(lat2, lon2, lat0, lon0)
        dist2 = _distance2_to_segments(dx, dy, east, north)  # (SEGMENTS, lat, lon)
        along = heading[np.argmin(dist2, axis=0)]
        profile = strength * np.exp(-np.min(dist2, axis=0) / (2.0 * self.width**2))
        f["iwv"] += self.moisture * profile
        f["u850"] += self.jet * profile * np.cos(along)
        f["v850"] += self.hemisphere * self.jet * profile * np.sin(along)


def _distance2_to_segments(dx, dy, east, north) -> np.ndarray:
    """Squared distance (km2) of every grid point to each segment of the polyline (east, north)."""
    ax, ay = east[:-1, None, None], north[:-1, None, None]
    bx, by = east[1:, None, None] - ax, north[1:, None, None] - ay
    t = np.clip(((dx - ax) * bx + (dy - ay) * by) / (bx**2 + by**2), 0.0, 1.0)
    return (dx - ax - t * bx) ** 2 + (dy - ay - t * by) ** 2


def _poisson_starts(
    rng: np.random.Generator, n_times: int, alive: float, mean_life: float
) -> list[int]:
    """Start times such that about ``alive`` events overlap at any step (some start before 0)."""
    lead_in = int(2 * mean_life)
    rate = alive / mean_life
    counts = rng.poisson(rate, size=n_times + lead_in)
    return [t - lead_in for t in np.repeat(np.arange(n_times + lead_in), counts)]


def _cyclone_tracks(rng, n_times, alive) -> list[_Cyclone]:
    return [_Cyclone(rng, t0) for t0 in _poisson_starts(rng, n_times, alive, 26.0)]


def _river_tracks(rng, n_times, alive) -> list[_River]:
    return [_River(rng, t0) for t0 in _poisson_starts(rng, n_times, alive, 16.0)]


# --------------------------------------------------------------------------- detection


def detect(
    fields: dict[str, np.ndarray], lat: np.ndarray, lon: np.ndarray, iwv_climatology: np.ndarray
) -> np.ndarray:
    """(nlat, nlon) int8 labels from one time step's fields with the criteria of the docstring."""
    lat2 = np.broadcast_to(lat[:, None], fields["iwv"].shape)
    u, v = fields["u850"], fields["v850"]
    speed = np.hypot(u, v)
    vorticity = _relative_vorticity(u, v, lat, lon)
    cyclone = (
        (speed >= TC_WIND)
        & (fields["slp"] <= TC_SLP)
        & (vorticity * np.sign(lat2) > 0)
        & (np.abs(lat2) <= TC_MAX_LAT)
    )
    moist = (
        (fields["iwv"] * speed >= AR_IVT)
        & (fields["iwv"] - iwv_climatology >= AR_IWV_ANOMALY)
        & (np.abs(lat2) >= AR_LAT[0])
        & (np.abs(lat2) <= AR_LAT[1])
        & ~cyclone
    )
    river = _long_narrow(moist, lat, lon)
    labels = np.zeros(fields["iwv"].shape, np.int8)
    labels[river] = 2
    labels[cyclone] = 1
    return labels


def _relative_vorticity(u, v, lat, lon) -> np.ndarray:
    """dv/dx - du/dy (s-1) by centred differences, periodic in longitude."""
    dx = np.deg2rad(lon[1] - lon[0]) * 6.371e6 * np.cos(np.deg2rad(lat))[:, None]
    dy = np.deg2rad(lat[1] - lat[0]) * 6.371e6
    dvdx = (np.roll(v, -1, axis=1) - np.roll(v, 1, axis=1)) / (2.0 * dx)
    dudy = np.gradient(u, dy, axis=0)
    return dvdx - dudy


def _long_narrow(mask: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Keep the connected regions of ``mask`` >= 2000 km long and < 1000 km wide on average.

    The grid is first rolled in longitude so that its seam falls on the emptiest meridian: a
    region crossing 0/360 degrees is then measured whole.
    """
    shift = -int(np.argmin(mask.sum(axis=0)))
    return np.roll(_long_narrow_unrolled(np.roll(mask, shift, axis=1), lat, lon), -shift, axis=1)


def _long_narrow_unrolled(mask: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    regions, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    keep = np.zeros(mask.shape, bool)
    cell_km2 = (
        np.deg2rad(lat[1] - lat[0])
        * np.deg2rad(lon[1] - lon[0])
        * 6371.0**2
        * np.cos(np.deg2rad(lat))
    )
    for region, box in enumerate(ndimage.find_objects(regions), start=1):
        inside = regions[box] == region
        rows = np.arange(box[0].start, box[0].stop)
        area = float(np.sum(inside * cell_km2[rows][:, None]))
        lat_c = np.deg2rad(np.mean(lat[rows]))
        height = (box[0].stop - box[0].start) * (lat[1] - lat[0]) * EARTH_KM_PER_DEG
        width = (box[1].stop - box[1].start) * (lon[1] - lon[0]) * EARTH_KM_PER_DEG * np.cos(lat_c)
        length = np.hypot(height, width)
        if length >= AR_MIN_LENGTH_KM and area / length < AR_MAX_WIDTH_KM:
            keep[box] |= inside
    return keep
