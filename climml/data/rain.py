"""Rain-rate preprocessing as nowcasting does it: an invertible transform and rain-biased crops.

API:

- ``RainTransform(name, threshold)`` with ``forward(rate)`` and ``inverse(values)`` on NumPy
  arrays or (lazy) ``xr.DataArray``s; ``rain_transform(name, threshold)`` returns one, or
  ``None`` for ``"none"``. The config's ``data.transform`` / ``data.transform_threshold`` select
  it and ``climml.data.Normalizer`` applies it to every normalized variable before
  standardizing (and inverts it after), so inputs, targets and every physical forecast stay in
  mm/h outside the model; a variable whose ``units`` are not a rain rate is a ``DataError``:

  - ``log``: ``ln(R + threshold)``; smooth and exactly invertible for every ``R >= 0``;
  - ``dbr``: ``10 log10 R`` (dBR) where ``R >= threshold``, and a "zero value" 5 dB below
    ``10 log10 threshold`` for drier pixels (pysteps' ``dB_transform`` convention); the inverse
    maps values more than 2.5 dB below ``10 log10 threshold`` to 0. Exactly invertible for
    ``R = 0`` and ``R >= threshold``; rain under the threshold is lost.

  NaN stays NaN.
- ``RainCrop(size, rain_bias, wet_above)`` and ``crop_offset(target, valid, crop, rng)``: the
  top-left corner of a ``size`` x ``size`` training crop, a fraction ``rain_bias`` of them drawn
  with probability proportional to their wet pixels (the rest uniformly), as generative
  nowcasting models are trained (Ravuri et al. 2021 favour rainy crops the same way).
  ``climml.data.WindowLoader(crop=...)`` cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from climml.errors import ConfigError, DataError, expected

TRANSFORMS = ("none", "log", "dbr")
RATE_UNITS = ("mm/h", "mm h-1", "mm hr-1", "mm/hr", "kg m-2 h-1")  # what a rain rate may say
ZERO_BELOW_DB = 5.0  # dBR's zero value sits this far below the threshold (pysteps' default)


@dataclass(frozen=True)
class RainTransform:
    """An invertible rain-rate transform (see module doc). threshold: mm/h, > 0."""

    name: str
    threshold: float = 0.1

    def __post_init__(self):
        if self.name not in TRANSFORMS[1:]:
            raise ConfigError(expected("data.transform", f"one of {list(TRANSFORMS)}", self.name))
        if not (isinstance(self.threshold, int | float) and self.threshold > 0):
            raise ConfigError(expected("data.transform_threshold", "> 0 (mm/h)", self.threshold))

    @property
    def zero_value(self) -> float:
        """What dry pixels become (``dbr``), or the transform of 0 mm/h (``log``)."""
        if self.name == "log":
            return float(np.log(self.threshold))
        return float(10.0 * np.log10(self.threshold) - ZERO_BELOW_DB)

    def check_units(self, name: str, units: str | None) -> None:
        """DataError unless variable ``name`` is a rain rate (or says no units): a transform of
        rain applied to, say, a wind would silently ruin it."""
        if units is not None and units not in RATE_UNITS:
            want = f"only rain-rate variables ({', '.join(RATE_UNITS)}) with a rain transform"
            raise DataError(expected("data.transform", want, f"{name} in {units}"))

    def forward(self, rate: Any) -> Any:
        """Rain rate (mm/h, >= 0) -> transformed values, same type and shape."""
        if self.name == "log":
            return np.log(rate + self.threshold)
        dbr = 10.0 * np.log10(_where(rate >= self.threshold, rate, 1.0))
        return _where(rate >= self.threshold, dbr, _where(np.isnan(rate), rate, self.zero_value))

    def inverse(self, values: Any) -> Any:
        """Transformed values -> rain rate (mm/h), same type and shape."""
        if self.name == "log":
            return np.maximum(np.exp(values) - self.threshold, 0.0)
        # Dry below half-way from the threshold to the zero value: robust to rounding at the
        # threshold itself, and what a model's output between the two most likely means.
        dry = values < 10.0 * np.log10(self.threshold) - ZERO_BELOW_DB / 2
        return _where(dry, 0.0, 10.0 ** (values / 10.0))


def rain_transform(name: str, threshold: float = 0.1) -> RainTransform | None:
    """The transform ``name`` (``none`` gives None); ConfigError naming ``data.transform``."""
    if name == "none":
        return None
    return RainTransform(name, threshold)


def _where(cond: Any, a: Any, b: Any) -> Any:
    """``np.where`` that keeps xarray (and dask) objects lazy and labelled. ``np.where``
    propagates NaN in ``cond``'s comparisons as False, so NaN rates are handled explicitly."""
    if isinstance(cond, xr.DataArray):
        return xr.where(cond, a, b, keep_attrs=True)
    return np.where(cond, a, b)


@dataclass(frozen=True)
class RainCrop:
    """Training crops of ``size`` x ``size`` pixels over the last two spatial dims.

    rain_bias: fraction of crops drawn with probability proportional to their wet pixels; the
        others are uniform (0: unbiased crops; 1: every crop favours rain).
    wet_above: target values above it count as wet (in the target's loaded, i.e. normalized,
        units); None: anything above the window's smallest target value, which is the dry value
        whenever dry pixels share one value (rain in mm/h, or dBR/log, with statistics over
        space as well as time, ``data.normalize.dims: [time, y, x]``).
    """

    size: int
    rain_bias: float = 0.0
    wet_above: float | None = None

    def __post_init__(self):
        if (
            not isinstance(self.size, int | np.integer)
            or isinstance(self.size, bool)
            or self.size < 1
        ):
            raise ConfigError(expected("data.crop.size", "an integer >= 1", repr(self.size)))
        if not 0.0 <= self.rain_bias <= 1.0:
            raise ConfigError(expected("data.crop.rain_bias", "in [0, 1]", self.rain_bias))


def crop_offset(
    target: np.ndarray, valid: np.ndarray, crop: RainCrop, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left (row, col) of one sample's crop.

    target, valid: (L, ..., H, W) target window and its 1/0 validity; a pixel is wet where it
    is valid and above ``crop.wet_above`` (see ``RainCrop``) at any lead or level.
    """
    height, width = target.shape[-2:]
    cols = width - crop.size + 1
    corners = (height - crop.size + 1) * cols
    choice = rng.integers(corners)
    if rng.random() < crop.rain_bias:
        flat_t, flat_v = target.reshape(-1, height, width), valid.reshape(-1, height, width) > 0
        wet_count = _window_sums(_wet(flat_t, flat_v, crop.wet_above), crop.size).ravel()
        if wet_count.sum() > 0:  # a dry window: uniform after all
            choice = rng.choice(corners, p=wet_count / wet_count.sum())
    row, col = divmod(int(choice), cols)
    return row, col


def _wet(target: np.ndarray, valid: np.ndarray, wet_above: float | None) -> np.ndarray:
    """(H, W) 1/0: wet at any lead. target, valid: (L, H, W)."""
    if not valid.any():
        return np.zeros(target.shape[1:])
    floor = target[valid].min() if wet_above is None else wet_above
    return ((target > floor) & valid).any(axis=0).astype(np.float64)


def _window_sums(field: np.ndarray, s: int) -> np.ndarray:
    """Sum of ``field`` over every s x s window: (H - s + 1, W - s + 1), by a summed-area table."""
    table = np.zeros((field.shape[0] + 1, field.shape[1] + 1))
    table[1:, 1:] = field.cumsum(0).cumsum(1)
    return table[s:, s:] - table[:-s, s:] - table[s:, :-s] + table[:-s, :-s]
