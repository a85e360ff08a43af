"""Radially averaged power spectral density (RAPSD) of 2-D fields.

Used to judge the blurriness of nowcasts: a forecast that loses power at high wavenumbers
(small scales) relative to the observations is too smooth (Ravuri et al. 2021, Ayzel et al.
2020). Conventions follow pysteps' ``rapsd``: power ``|FFT|² / (H W)`` (so that its mean
over all wavenumbers equals the mean square of the field, Parseval), averaged over rings of
integer radius ``round(|k| L)`` for ``L = max(H, W)``, rings 0 to ``L // 2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected
from climml.metrics._masking import as_float


def radial_psd(field: ArrayLike, /, *, spacing: float = 1.0) -> tuple[Array, Array]:
    """Radially averaged power spectrum of the last two axes.

    Args:
      field: ``(..., H, W)`` real fields; a field containing NaN gives a NaN spectrum.
      spacing: grid spacing (e.g. km) that sets the wavenumber units.

    Returns:
      ``(wavenumber, psd)``: wavenumbers ``(R,)`` in cycles per ``spacing`` unit (ring r is
      ``r / (L spacing)``), and power ``(..., R)`` with ``R = L // 2 + 1``.
    """
    (field,) = as_float(field)
    if field.ndim < 2 or min(field.shape[-2:]) < 2:
        raise DataError(expected("field.shape", "(..., H, W) with H, W >= 2", field.shape))
    if not spacing > 0:
        raise ConfigError(expected("spacing", "a positive grid spacing", spacing))
    h, w = field.shape[-2:]
    rings = _ring_index(h, w)  # static (H, W) ints, -1 outside the largest ring
    wavenumber = radial_wavenumbers(h, w, spacing).astype(field.dtype)
    n_rings = wavenumber.shape[0]
    power = jnp.abs(jnp.fft.fft2(field)) ** 2 / (h * w)
    # Ring sums with one segment-sum over the flattened cells (ring -1 goes to a spare
    # segment that is dropped), vectorised over all leading axes.
    ids = np.where(rings < 0, n_rings, rings).ravel()
    cells = jnp.moveaxis(power.reshape(*power.shape[:-2], h * w), -1, 0)
    sums = jax.ops.segment_sum(cells, jnp.asarray(ids), num_segments=n_rings + 1)[:n_rings]
    counts = np.bincount(ids, minlength=n_rings + 1)[:n_rings]
    psd = jnp.moveaxis(sums, 0, -1) / jnp.asarray(counts, dtype=sums.dtype)
    return wavenumber, psd


def radial_wavenumbers(h: int, w: int, spacing: float = 1.0) -> Array:
    """Wavenumbers ``(L // 2 + 1,)`` of the rings of an ``(h, w)`` field, ``L = max(h, w)``."""
    size = max(h, w)
    return jnp.asarray(np.arange(size // 2 + 1) / (size * spacing))


def _ring_index(h: int, w: int) -> np.ndarray:
    """Integer ring of every FFT cell (numpy ``fft2`` layout), -1 beyond ring ``L // 2``."""
    size = max(h, w)
    ky = np.fft.fftfreq(h)[:, None] * size
    kx = np.fft.fftfreq(w)[None, :] * size
    rings = np.round(np.sqrt(ky**2 + kx**2)).astype(int)
    return np.where(rings <= size // 2, rings, -1)
