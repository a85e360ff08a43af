"""pysteps' nowcasting baselines, the references radar papers report (optional ``[radar]`` extra).

* ``PystepsFlow``: Lucas-Kanade motion (pysteps' ``motion.lucaskanade.dense_lucaskanade``,
  OpenCV's pyramidal LK on tracked features, interpolated to a dense field) from the last
  ``frames`` frames in dBR, and semi-Lagrangian extrapolation of the last rain-rate frame.
* ``Steps``: the STEPS ensemble (Bowler et al. 2006; Seed et al. 2013): the same motion, a
  cascade of AR(2) processes per spatial scale and stochastic noise with the field's own
  spectrum, ``members`` members per forecast.

Both take rain rates in mm/h, ``forecast(history (B, T, H, W)) -> (B, L, H, W)`` (``Steps``:
``(B, M, L, H, W)``, member axis second), and run sample by sample in NumPy (pysteps is not
JAX). Rain below ``threshold`` mm/h is dry; in dBR it is ``zerovalue`` dB, as pysteps' examples
set it. Areas advected in from outside the grid are dry (0 mm/h), as in ``climml.models.advection``.
Without pysteps (or without OpenCV, which its Lucas-Kanade needs) building either raises a
``ConfigError`` naming the baseline and the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Sequence

import numpy as np

from climml.errors import ConfigError, DataError, expected

THRESHOLD = 0.1  # mm/h: rain below this is dry (the MeteoSwiss product's resolution)
ZEROVALUE = -15.0  # dBR of dry pixels (10 log10 0.1 = -10 dB, minus a margin)


def require_pysteps(baseline: str):
    """The pysteps modules a baseline needs, or a ConfigError saying what to install."""
    try:
        modules = {
            name: importlib.import_module(f"pysteps.{name}")
            for name in ("motion", "extrapolation", "nowcasts", "utils")
        }
        importlib.import_module("cv2")  # pysteps' Lucas-Kanade imports it lazily
    except ImportError as err:
        raise ConfigError(
            f"eval.baselines: {baseline!r} needs pysteps and opencv ({err.name} is not"
            " installed); pip install 'climml[radar]' or drop it from eval.baselines"
        ) from None
    return modules


def _to_dbr(rain: np.ndarray) -> np.ndarray:
    """mm/h → dBR, dry pixels (< THRESHOLD) at ZEROVALUE."""
    safe = np.maximum(rain, THRESHOLD)
    return np.where(rain >= THRESHOLD, 10.0 * np.log10(safe), ZEROVALUE)


def _from_dbr(dbr: np.ndarray) -> np.ndarray:
    """dBR → mm/h, with everything below THRESHOLD (and NaN) set dry."""
    rain = 10.0 ** (np.nan_to_num(dbr, nan=ZEROVALUE) / 10.0)
    return np.where(rain >= THRESHOLD, rain, 0.0)


def _check_history(history: np.ndarray, frames: int, name: str) -> np.ndarray:
    history = np.asarray(history, np.float64)
    if history.ndim != 4 or history.shape[1] < frames:
        raise DataError(expected(f"{name} history", f"(B, T >= {frames}, H, W)", history.shape))
    return np.nan_to_num(history, nan=0.0)


class PystepsFlow:
    """Lucas-Kanade motion + semi-Lagrangian extrapolation (pysteps), deterministic."""

    name = "pysteps_flow"
    members = None

    def __init__(self, leads: Sequence[int], *, frames: int = 3):
        self.modules = require_pysteps(self.name)
        self.leads = np.asarray(leads, np.int64)
        if self.leads.min() < 1:
            raise ConfigError(expected("data.leads", "lead steps >= 1 for pysteps", list(leads)))
        self.frames = frames

    def motion(self, history: np.ndarray) -> np.ndarray:
        """``(2, H, W)`` LK motion (x, y; pixels per step) of one sample's last frames (mm/h)."""
        lk = self.modules["motion"].get_method("LK")
        return lk(_to_dbr(history[-self.frames :]), verbose=False)

    def forecast(self, history: np.ndarray) -> np.ndarray:
        history = _check_history(history, self.frames, self.name)
        extrapolate = self.modules["extrapolation"].get_method("semilagrangian")
        out = []
        for sample in history:
            frames = extrapolate(sample[-1], self.motion(sample), int(self.leads.max()), outval=0.0)
            out.append(frames[self.leads - 1])
        return np.stack(out).astype(np.float32)


class Steps:
    """The pysteps STEPS ensemble: ``(B, T, H, W)`` mm/h → ``(B, members, L, H, W)`` mm/h.

    ``pixel_km`` and ``step_minutes`` set the scales of the cascade; ``seed`` makes the members
    reproducible: the ``n``-th sample this instance forecasts draws its noise from ``seed + n``
    (so windows of different batches never share noise, and the same run repeats exactly).
    """

    name = "steps"

    def __init__(
        self,
        leads: Sequence[int],
        *,
        members: int = 8,
        seed: int = 0,
        pixel_km: float = 1.0,
        step_minutes: float = 5.0,
        cascade_levels: int = 6,
    ):
        self.flow = PystepsFlow(leads, frames=3)
        self.modules = self.flow.modules
        self.leads, self.members, self.seed = self.flow.leads, members, seed
        self.pixel_km, self.step_minutes = pixel_km, step_minutes
        self.cascade_levels = cascade_levels
        self.drawn = 0  # samples forecast so far: the next one's seed offset

    def forecast(self, history: np.ndarray) -> np.ndarray:
        history = _check_history(history, 3, self.name)  # AR(2) needs three frames
        steps = self.modules["nowcasts"].get_method("steps")
        out = []
        for sample in history:
            seed = self.seed + self.drawn
            self.drawn += 1
            dbr = _to_dbr(sample[-3:])
            last = sample[-1]
            if not (last >= THRESHOLD).any() or last.min() == last.max():
                # STEPS needs rain and texture to fit its cascade and noise; a dry (or
                # uniform) frame stays as it is, which is also what STEPS would forecast.
                out.append(np.broadcast_to(last, (self.members, len(self.leads), *last.shape)))
                continue
            with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints a long report
                ensemble = steps(
                    dbr,
                    self.flow.motion(sample),
                    int(self.leads.max()),
                    n_ens_members=self.members,
                    n_cascade_levels=self.cascade_levels,
                    precip_thr=10.0 * np.log10(THRESHOLD),
                    kmperpixel=self.pixel_km,
                    timestep=self.step_minutes,
                    seed=seed,
                )  # (members, steps, H, W) dBR
            out.append(_from_dbr(ensemble[:, self.leads - 1]))
        return np.stack(out).astype(np.float32)
