"""Synthetic radar rain-rate sequences for nowcasting (seeded, mm/h, 5-minute frames).

API: ``radar(events=6, frames=32, *, size=64, ...) -> xr.Dataset`` with ``rain_rate`` (mm/h) on
``(time, y, x)``, the advecting wind ``u``, ``v`` (km/h, same dims), coordinates ``time``
(datetime64, 5-minute steps inside an event, a gap between events), ``y``/``x`` (km, pixel
centres) and ``event`` (int, along ``time``).

Each event is built like the stochastic nowcasting models build rain (Seed 2003; pysteps):

- a Gaussian field ``g`` with a power-law spectrum: power ``|G(k)|^2 ∝ |k|^-beta`` (``beta``
  about 3 for observed rain in log units), zero mean and unit variance;
- its evolution in the frame moving with the air: every wavenumber is an AR(1) process with
  lifetime ``lifetime * (wavelength / 64 km)^0.7`` minutes, so small cells appear and die
  quickly while large rain areas persist (growth and decay);
- advection by a smooth wind: a uniform event wind (speed up to ``speed`` km/h, random
  direction) plus large-scale waves of relative amplitude ``wind_variability`` that drift
  slowly; every pixel's back-trajectory to the event start gives where it samples ``g``;
- intermittency: in each frame the pixels above the ``1 - wet_fraction`` quantile ``q`` of ``g``
  rain, ``R = threshold * 10^((g - q) / std(g) * dbr_std / 10)`` mm/h, the others are 0. So exactly
  ``wet_fraction`` of every frame has ``R >= threshold``, and on wet pixels ``10 log10 R`` is
  ``g`` scaled to ``dbr_std`` dB per standard deviation (log-normal intensities, as observed).
  The event's intensity grows and decays: ``dbr_std`` is scaled by ``0.6 + 0.4 sin(pi s)`` over
  the event's fraction of life ``s``.

``beta`` is the spectral slope of log-rain before the dry cut: with (nearly) every pixel wet, the
radially averaged spectrum of ``dBR = 10 log10 R`` falls as ``k^-beta`` (measured within 0.05).
Cutting 85% of the pixels dry (dBR set to ``10 log10 threshold`` there) flattens the measured
slope by 0.2-0.3: the clipped field's flat dry areas and their edges add power at small scales
(``tests/data/test_radar_synthetic.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft
import xarray as xr
from scipy import ndimage

from climml.errors import ConfigError, expected

STEP_MINUTES = 5.0
LIFETIME_SCALE_KM = 64.0  # wavelength at which features live ``lifetime`` minutes
LIFETIME_EXPONENT = 0.7  # lifetime ∝ wavelength^0.7 (Germann & Zawadzki 2002 find ~0.6-0.9)
WIND_WAVES = 3  # large-scale sine waves in the wind perturbation
WIND_DRIFT = 0.05  # rad per 5-min step: how fast the wind pattern changes


def radar(
    events: int = 6,
    frames: int = 32,
    *,
    size: int = 64,
    pixel_km: float = 1.0,
    beta: float = 3.0,
    wet_fraction: float = 0.15,
    threshold: float = 0.1,
    dbr_std: float = 12.0,
    speed: float = 40.0,
    wind_variability: float = 0.3,
    lifetime: float = 60.0,
    spacing: str = "1D",
    start: str = "2021-06-01T12:00",
    seed: int = 0,
) -> xr.Dataset:
    """``events`` rain events of ``frames`` 5-minute frames on a ``size`` x ``size`` grid.

    pixel_km: grid spacing (km). beta: spectral slope of log-rain (power ∝ k^-beta).
    wet_fraction: fraction of each frame with rain >= ``threshold`` (mm/h); the rest is 0.
    dbr_std: dB of rain rate per standard deviation of the underlying Gaussian field.
    speed: largest event wind speed (km/h); each event draws one in [speed/4, speed].
    wind_variability: amplitude of the smooth wind waves relative to the event wind (0: uniform).
    lifetime: minutes a 64 km feature stays correlated (e-folding) in the moving frame.
    spacing: pandas offset between event starts (must exceed the event's length, so a time gap
        separates events). start: first frame. seed: everything random derives from it.
    """
    p = _Params(
        size, pixel_km, beta, wet_fraction, threshold, dbr_std, speed, wind_variability, lifetime
    )
    _check(events, frames, p)
    step = pd.Timedelta(minutes=STEP_MINUTES)
    offset = pd.tseries.frequencies.to_offset(spacing)
    first = pd.Timestamp(start)
    if first + offset <= first + (frames - 1) * step:
        want = f"more than one event's length ({frames} x 5 min)"
        raise ConfigError(expected("data.source_args.spacing", want, repr(spacing)))
    rng = np.random.default_rng(seed)
    rain, u, v, times = [], [], [], []
    for e in range(events):
        r, w = _event(rng, frames, p)
        rain.append(r)
        u.append(w[0])
        v.append(w[1])
        times.append(pd.date_range(first + e * offset, periods=frames, freq=step))
    centres = (np.arange(size) + 0.5) * pixel_km
    dims = ("time", "y", "x")
    coords = {
        "time": np.concatenate([t.values for t in times]),
        "y": ("y", centres, {"units": "km"}),
        "x": ("x", centres, {"units": "km"}),
        "event": ("time", np.repeat(np.arange(events), frames)),
    }
    data = {
        "rain_rate": (dims, np.concatenate(rain), {"units": "mm/h", "threshold": threshold}),
        "u": (dims, np.concatenate(u), {"units": "km/h", "long_name": "eastward (+x) wind"}),
        "v": (dims, np.concatenate(v), {"units": "km/h", "long_name": "northward (+y) wind"}),
    }
    attrs = {
        "title": "climml synthetic radar",
        "beta": beta,
        "wet_fraction": wet_fraction,
        "step_minutes": STEP_MINUTES,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


@dataclass(frozen=True)
class _Params:
    """The per-event parameters of ``radar`` (see its docstring)."""

    size: int
    pixel_km: float
    beta: float
    wet_fraction: float
    threshold: float
    dbr_std: float
    speed: float
    wind_variability: float
    lifetime: float


def _event(rng: np.random.Generator, frames: int, p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """One event: rain (frames, size, size) mm/h and wind (2, frames, size, size) km/h."""
    wind = _wind(rng, frames, p.size, p.pixel_km, p.speed, p.wind_variability)
    origins = _departures(wind, p.pixel_km)  # (frames, 2, size, size) in pixels of the base field
    # The base field is periodic: it covers every departure point plus a margin, so no
    # pattern repeats in view.
    lo = np.floor(origins.min(axis=(0, 2, 3)))
    origins = origins - lo[None, :, None, None]
    extent = int(np.ceil(origins.max())) + 1
    base = scipy.fft.next_fast_len(extent + 8)
    gauss = _evolving_field(rng, frames, base, p.pixel_km, p.beta, p.lifetime)
    rain = np.empty((frames, p.size, p.size), np.float32)
    for t in range(frames):
        g = ndimage.map_coordinates(gauss[t], origins[t], order=3, mode="grid-wrap")
        # The frame's own quantile gives the exact wet fraction; dividing by the frame's std
        # makes dbr_std the dB per standard deviation whatever part of the base field is seen.
        excess = (g - np.quantile(g, 1.0 - p.wet_fraction)) / g.std()
        growth = 0.6 + 0.4 * np.sin(np.pi * (t + 0.5) / frames)  # the event grows, then decays
        db = excess * p.dbr_std * growth
        rain[t] = np.where(excess > 0, p.threshold * 10.0 ** (db / 10.0), 0.0)
    return rain, wind


def _wind(rng, frames, size, pixel_km, speed, variability):
    """(2, frames, size, size) wind (u along +x, v along +y) in km/h: uniform + slow waves."""
    magnitude = rng.uniform(0.25, 1.0) * speed
    angle = rng.uniform(0.0, 2.0 * np.pi)
    mean = magnitude * np.array([np.cos(angle), np.sin(angle)])
    extent = size * pixel_km
    y, x = np.meshgrid(*(np.arange(size) + 0.5,) * 2, indexing="ij")
    y, x = y * pixel_km, x * pixel_km
    t = np.arange(frames)[:, None, None]
    wind = np.broadcast_to(mean[:, None, None, None], (2, frames, size, size)).copy()
    for _ in range(WIND_WAVES):
        # Wavelengths of 2 to 4 domain sizes: smooth over the frame.
        k = rng.uniform(-1.0, 1.0, 2) * 2 * np.pi / (2.0 * extent)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.normal(size=2) * variability * magnitude / np.sqrt(WIND_WAVES)
        wave = np.sin(k[0] * x + k[1] * y + phase + WIND_DRIFT * t)
        wind += amp[:, None, None, None] * wave[None]
    return wind.astype(np.float32)


def _departures(wind, pixel_km):
    """Where (row, col) each pixel of each frame was at the event's first frame.

    Semi-Lagrangian back-trajectories: the displacement since frame 0 of the air now at ``p``
    is the wind step back plus the previous frame's displacement at the point it came from,
    ``d_t(p) = d_{t-1}(p - w_t(p) dt) - w_t(p) dt``. Displacements are smooth, so bilinear
    interpolation (edge values continued outside the frame) is enough.
    Returns (frames, 2, size, size) float64 pixel positions.
    """
    _, frames, size, _ = wind.shape
    dt = STEP_MINUTES / 60.0 / pixel_km  # km/h -> pixels per step
    grid = np.stack(
        np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
    )
    disp = np.zeros((2, size, size))
    out = np.empty((frames, 2, size, size))
    out[0] = grid
    for t in range(1, frames):
        back = np.stack([wind[1, t], wind[0, t]]) * dt  # (row, col) = (v, u)
        at = grid - back
        disp = np.stack([ndimage.map_coordinates(d, at, order=1, mode="nearest") for d in disp])
        disp = disp - back
        out[t] = grid + disp
    return out


def _evolving_field(rng, frames, n, pixel_km, beta, lifetime):
    """(frames, n, n) periodic Gaussian fields, unit variance, power ∝ |k|^-beta, each
    wavenumber an AR(1) in time with a lifetime growing with its wavelength."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    k = np.hypot(fy, fx) * n  # ring number (cycles per base domain)
    k[0, 0] = 1.0
    amp = k ** (-beta / 2.0)
    amp[0, 0] = 0.0  # zero mean
    # Unit variance: by Parseval the variance is the mean of amp^2 over the full FFT grid.
    full = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) * n
    full[0, 0] = np.inf
    amp = amp / np.sqrt(np.mean(full**-beta))
    wavelength = n * pixel_km / k
    tau = lifetime * (wavelength / LIFETIME_SCALE_KM) ** LIFETIME_EXPONENT
    rho = np.exp(-STEP_MINUTES / tau)
    innov = np.sqrt(1.0 - rho**2)
    out = np.empty((frames, n, n), np.float64)
    spec = np.fft.rfft2(rng.standard_normal((n, n))) * amp
    for t in range(frames):
        if t:
            spec = rho * spec + innov * amp * np.fft.rfft2(rng.standard_normal((n, n)))
        out[t] = np.fft.irfft2(spec, s=(n, n))
    return out


def _check(events: int, frames: int, p: _Params) -> None:
    for name, value, least in (("events", events, 1), ("frames", frames, 1), ("size", p.size, 8)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
            want = f"an integer >= {least}"
            raise ConfigError(expected(f"data.source_args.{name}", want, repr(value)))
    for name, lo, hi in (
        ("pixel_km", 0.0, np.inf),
        ("beta", 0.0, 6.0),
        ("wet_fraction", 0.0, 1.0),
        ("threshold", 0.0, np.inf),
        ("dbr_std", 0.0, np.inf),
        ("lifetime", 0.0, np.inf),
    ):
        value = getattr(p, name)
        if not lo < value < hi:
            raise ConfigError(expected(f"data.source_args.{name}", f"in ({lo}, {hi})", value))
    for name in ("speed", "wind_variability"):
        if not getattr(p, name) >= 0:
            raise ConfigError(expected(f"data.source_args.{name}", ">= 0", getattr(p, name)))
