"""A synthetic tropical-Pacific ENSO dataset with the structure forecasters rely on.

ENSO is simulated with the recharge oscillator (Jin 1997, J. Atmos. Sci. 54:811; in the
two-variable form of Burgers et al. 2005, GRL 32:L13706)::

    dT/dt = R(month) T + F1 h + noise      T: eastern Pacific SST anomaly (degC)
    dh/dt = -eps h     - F2 T + noise      h: western/zonal-mean thermocline depth anomaly (m)

El Nino (T > 0) discharges the equatorial heat content (dh/dt < 0) and a recharged thermocline
(h > 0) warms the east later, so h leads T by about a quarter period (~10 months for the
~3.5-year period used here). The growth rate R varies with the calendar month so that events
tend to peak in boreal late autumn/winter, as observed (Stein et al. 2014, J. Climate 27:5285).

The indices are spread onto a 0-360 longitude grid of the tropical Pacific with fixed patterns
(cold tongue, warm pool, thermocline tilt), added to a mean state and seasonal cycle, plus
spatially smooth red (AR1) noise; land cells are NaN. Nino3.4 is then computed from the SST field.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import ConfigError, expected

LAT_RANGE = (-30.0, 30.0)  # degrees_north, cell edges of the domain
LON_RANGE = (120.0, 280.0)  # degrees_east (0-360): 120E to 80W
NINO34_BOX = {"lat": (-5.0, 5.0), "lon": (190.0, 240.0)}  # 5S-5N, 170W-120W

# Recharge oscillator, per month. F1 and F2 follow from the period and the h/T amplitude ratio.
PERIOD_MONTHS = 42.0
DAMPING_T = 0.03  # -R averaged over the year (1/month)
GROWTH_SEASONALITY = 0.06  # amplitude of the annual cycle of R (1/month)
PEAK_GROWTH_MONTH = 10  # October: variance then peaks in Nov-Jan
DAMPING_H = 0.05  # eps (1/month)
H_PER_T = 15.0  # m of thermocline depth per degC of SST in the free oscillation
NOISE_T = 0.3  # degC per month (westerly wind bursts etc.)
NOISE_H = 1.0  # m per month
SPIN_UP_MONTHS = 120  # discarded so the series starts from the stationary state

# Weather noise on the fields: AR1 in time, Gaussian-smoothed in space.
NOISE_LAG1 = 0.6
NOISE_SCALE_CELLS = 2.0
SST_NOISE = 0.3  # degC
HEAT_NOISE = 4.0  # m


def enso(
    n_months: int = 600,
    *,
    nlat: int = 24,
    nlon: int = 48,
    seed: int = 0,
    start: str = "1870-01",
) -> xr.Dataset:
    """A monthly tropical-Pacific dataset with an ENSO that heat content predicts.

    n_months: number of monthly time steps (at least 24).
    nlat, nlon: grid cells over 30S-30N and 120E-280E (cell centres; at least 8 x 16).
    seed: every random draw comes from ``np.random.default_rng(seed)``; same seed, same data.
    start: first month (``"YYYY-MM"``); time stamps are month starts.

    Returns an ``xr.Dataset`` with float32 variables:
      sst (time, lat, lon) degC, NaN over land;
      heat_content (time, lat, lon) m, 20C-isotherm depth anomaly (positive: deeper), NaN on land;
      nino34 (time,) degC, area-weighted mean SST over 5S-5N, 170W-120W of ``sst``.
    """
    _check_args(n_months, nlat, nlon)
    rng = np.random.default_rng(seed)
    time = pd.date_range(pd.Timestamp(start), periods=n_months, freq="MS")
    lat, lon = _grid(nlat, nlon)
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    land = _land_mask(glat, glon)
    month = time.month.to_numpy()

    t_index, h_index = recharge_oscillator(n_months, month, rng)
    sst = (
        _mean_sst(glat, glon)
        + _seasonal_sst(glat, glon, month)
        + t_index[:, None, None] * _enso_sst_pattern(glat, glon)
        + h_index[:, None, None] * _recharge_sst_pattern(glat, glon)
        + SST_NOISE * red_noise(rng, (n_months, nlat, nlon))
    )
    heat = (
        h_index[:, None, None] * _recharge_heat_pattern(glat)
        + t_index[:, None, None] * _tilt_pattern(glat, glon)
        + HEAT_NOISE * red_noise(rng, (n_months, nlat, nlon))
    )
    sst[:, land] = np.nan
    heat[:, land] = np.nan
    return _to_dataset(sst, heat, time, lat, lon, seed)


def recharge_oscillator(
    n_months: int, month: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the stochastic recharge oscillator month by month.

    month: calendar month (1-12) of each of the ``n_months`` steps; sets the seasonal growth rate.
    Returns ``(T, h)``, each (n_months,) float64: SST anomaly (degC) and thermocline depth (m).
    """
    omega = 2 * np.pi / PERIOD_MONTHS
    # For A = [[R, F1], [-F2, -eps]] the frequency is sqrt(F1 F2 - ((R + eps) / 2)^2).
    coupling = np.sqrt(omega**2 + ((DAMPING_H - DAMPING_T) / 2) ** 2)
    f1, f2 = coupling / H_PER_T, coupling * H_PER_T
    propagators = []
    for m in range(1, 13):
        growth = -DAMPING_T + GROWTH_SEASONALITY * np.cos(2 * np.pi * (m - PEAK_GROWTH_MONTH) / 12)
        propagators.append(_expm2(np.array([[growth, f1], [-f2, -DAMPING_H]])))
    first = int(month[0]) - 1 - SPIN_UP_MONTHS  # spin-up keeps the calendar phase aligned
    kicks = rng.standard_normal((SPIN_UP_MONTHS + n_months, 2)) * np.array([NOISE_T, NOISE_H])
    state = np.zeros(2)
    out = np.empty((SPIN_UP_MONTHS + n_months, 2))
    for i, kick in enumerate(kicks):
        state = propagators[(first + i) % 12] @ state + kick
        out[i] = state
    return out[SPIN_UP_MONTHS:, 0], out[SPIN_UP_MONTHS:, 1]


def red_noise(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Unit-variance noise (time, lat, lon): AR1 in time (lag-1 ``NOISE_LAG1``), smooth in space."""
    white = _smooth(rng.standard_normal(shape), NOISE_SCALE_CELLS)
    out = np.empty(shape)
    out[0] = white[0]
    innovation = np.sqrt(1 - NOISE_LAG1**2)  # keeps the variance at 1 at every step
    for i in range(1, shape[0]):
        out[i] = NOISE_LAG1 * out[i - 1] + innovation * white[i]
    return out


def box_mean(field: np.ndarray, lat: np.ndarray, lon: np.ndarray, box: dict) -> np.ndarray:
    """Area-weighted (cos latitude) NaN-ignoring mean of ``field`` (..., lat, lon) over the cells
    whose centres lie inside ``box = {"lat": (south, north), "lon": (west, east)}`` (0-360)."""
    rows = (lat >= box["lat"][0]) & (lat <= box["lat"][1])
    cols = (lon >= box["lon"][0]) & (lon <= box["lon"][1])
    sub = field[..., rows, :][..., cols]
    weights = np.broadcast_to(np.cos(np.deg2rad(lat[rows]))[:, None], sub.shape[-2:])
    weights = np.where(np.isfinite(sub), weights, 0.0)
    return np.nansum(sub * weights, axis=(-2, -1)) / weights.sum(axis=(-2, -1))


def _check_args(n_months: int, nlat: int, nlon: int) -> None:
    for field, value, least in (("n_months", n_months, 24), ("nlat", nlat, 8), ("nlon", nlon, 16)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
            want = f"an integer >= {least}"
            raise ConfigError(expected(f"data.source_args.{field}", want, repr(value)))


def _grid(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (degrees) of a regular grid over the domain."""
    lat_step = (LAT_RANGE[1] - LAT_RANGE[0]) / nlat
    lon_step = (LON_RANGE[1] - LON_RANGE[0]) / nlon
    lat = LAT_RANGE[0] + lat_step * (np.arange(nlat) + 0.5)
    lon = LON_RANGE[0] + lon_step * (np.arange(nlon) + 0.5)
    return lat, lon


def _land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Rough coastlines: Australia and New Guinea, the Philippines/Indonesia edge, the Americas."""
    australia = (lat < -11.0) & (lon < 150.0)
    new_guinea = (lat > -9.0) & (lat < -2.0) & (lon > 131.0) & (lon < 150.0)
    maritime = (lat > -8.0) & (lat < 18.0) & (lon < 125.0)
    # Longitude of the American west coast by latitude (Chile ... Baja California).
    coast_lat = [-30, -15, -5, 0, 8, 15, 20, 30]
    coast_lon = [289, 284, 279, 280, 278, 266, 255, 245]
    coast = np.interp(lat, coast_lat, coast_lon)
    return australia | new_guinea | maritime | (lon > coast)


def _mean_sst(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Annual-mean SST (degC): warm pool in the west, equatorial cold tongue in the east."""
    east = np.clip((lon - 180.0) / 90.0, 0.0, 1.0)
    cold_tongue = 4.0 * east * np.exp(-(((lat + 1.0) / 6.0) ** 2))
    humboldt = 2.0 * np.clip((lon - 250.0) / 30.0, 0.0, 1.0) * np.exp(-(((lat + 15.0) / 10.0) ** 2))
    return 29.0 - 0.0055 * lat**2 - cold_tongue - humboldt


def _seasonal_sst(lat: np.ndarray, lon: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Seasonal cycle (time, lat, lon) degC: hemispheric summers (NH warmest in late August) and
    the cold tongue's annual cycle (warmest in April, coldest in September-October)."""
    phase = 2 * np.pi * (month[:, None, None] - 1) / 12
    hemispheric = 0.09 * lat * np.cos(phase - 2 * np.pi * 7.5 / 12)
    east = np.clip((lon - 180.0) / 90.0, 0.0, 1.0)
    tongue = 1.2 * east * np.exp(-((lat / 6.0) ** 2)) * np.cos(phase - 2 * np.pi * 3 / 12)
    return hemispheric + tongue


def _enso_sst_pattern(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """SST anomaly per degC of T: central-eastern equatorial warming, weak western cooling.
    Scaled so its Nino3.4 box mean is 1, i.e. the Nino3.4 anomaly follows T."""
    east = np.exp(-((lat / 9.0) ** 2) - ((lon - 235.0) / 45.0) ** 2)
    west = 0.25 * np.exp(-((lat / 12.0) ** 2) - ((lon - 140.0) / 25.0) ** 2)
    pattern = east - west
    return pattern / box_mean(pattern, lat[:, 0], lon[0], NINO34_BOX)


def _recharge_sst_pattern(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """SST anomaly per m of h (degC/m): a recharged warm pool is warmer in the west."""
    return 0.03 * np.exp(-((lat / 12.0) ** 2) - ((lon - 150.0) / 30.0) ** 2)


def _recharge_heat_pattern(lat: np.ndarray) -> np.ndarray:
    """Thermocline depth anomaly per m of h: the whole equatorial band (warm water volume)."""
    return np.exp(-((lat / 10.0) ** 2))


def _tilt_pattern(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Thermocline depth anomaly per degC of T (m/degC): El Nino winds flatten the tilt,
    deepening the east and shoaling the west (zero zonal mean, so it does not alter h)."""
    return 20.0 * np.exp(-((lat / 6.0) ** 2)) * np.clip((lon - 200.0) / 80.0, -1.0, 1.0)


def _smooth(field: np.ndarray, scale: float) -> np.ndarray:
    """Gaussian smoothing over the last two axes (reflecting edges), rescaled to keep unit
    variance for white-noise input."""
    half = int(np.ceil(3 * scale))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / scale) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit variance after one pass over white noise
    for axis in (-2, -1):
        field = _convolve_axis(field, kernel, axis)
    return field


def _convolve_axis(field: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    half = len(kernel) // 2
    pad = [(0, 0)] * field.ndim
    pad[axis] = (half, half)
    padded = np.pad(field, pad, mode="reflect")
    size = field.shape[axis]
    out = np.zeros_like(field)
    for k, w in enumerate(kernel):
        out += w * np.take(padded, np.arange(k, k + size), axis=axis)
    return out


def _expm2(a: np.ndarray) -> np.ndarray:
    """Matrix exponential of a small matrix by its Taylor series (|a| << 1 here, so 14 terms
    are exact to machine precision)."""
    out = term = np.eye(len(a))
    for k in range(1, 15):
        term = term @ a / k
        out = out + term
    return out


def _to_dataset(sst, heat, time, lat, lon, seed) -> xr.Dataset:
    sst = sst.astype(np.float32)
    nino34 = box_mean(sst.astype(np.float64), lat, lon, NINO34_BOX)  # from the stored field
    grid = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "sst": (grid, sst, _attrs("sea surface temperature", "degC")),
            "heat_content": (
                grid,
                heat.astype(np.float32),
                _attrs("20C isotherm depth anomaly (positive: deeper thermocline)", "m"),
            ),
            "nino34": (
                ("time",),
                nino34.astype(np.float32),
                _attrs("Nino3.4 index: area-weighted mean SST over 5S-5N, 170W-120W", "degC"),
            ),
        },
        coords={
            "time": time,
            "lat": ("lat", lat, _attrs("latitude", "degrees_north")),
            "lon": ("lon", lon, _attrs("longitude", "degrees_east")),
        },
        attrs={
            "title": "climml synthetic ENSO (recharge oscillator)",
            "source": "climml.data.synthetic.enso",
            "seed": int(seed),
        },
    )


def _attrs(long_name: str, units: str) -> dict[str, str]:
    return {"long_name": long_name, "units": units}
