"""Radially averaged power spectrum: pysteps' definition, Parseval, smoothing, NaN."""

import jax
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import climml.metrics as cm
from climml.errors import ConfigError, DataError


def _reference_rapsd(field):
    """pysteps.utils.spectral.rapsd for square fields, written out with numpy."""
    m, n = field.shape
    yc, xc = np.ogrid[-(m // 2) : m - m // 2, -(n // 2) : n - n // 2]
    radius = np.sqrt(xc * xc + yc * yc).round()
    power = np.abs(np.fft.fftshift(np.fft.fft2(field))) ** 2 / field.size
    return np.array([power[radius == r].mean() for r in range(max(m, n) // 2 + 1)])


@pytest.mark.parametrize("size", [32, 33])
def test_matches_pysteps_definition(size):
    field = np.random.default_rng(size).normal(size=(size, size))
    wavenumber, psd = cm.radial_psd(field, spacing=2.0)
    np.testing.assert_allclose(psd, _reference_rapsd(field), rtol=1e-5)
    np.testing.assert_allclose(wavenumber, np.arange(size // 2 + 1) / (size * 2.0))


def test_parseval_white_noise_and_blur():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 64)).astype(np.float32)
    power = np.abs(np.fft.fft2(noise)) ** 2 / noise.size
    np.testing.assert_allclose(power.mean(), np.mean(noise**2), rtol=1e-5)  # Parseval
    _, psd = cm.radial_psd(noise)
    assert 0.7 < float(np.mean(psd[5:])) < 1.3  # white noise: flat around its variance
    _, blurred = cm.radial_psd(gaussian_filter(noise, 2.0, mode="wrap"))
    assert np.all(
        np.asarray(blurred[-10:]) < 0.01 * np.asarray(psd[-10:])
    )  # blur kills small scales


def test_batches_vmap_and_nan():
    fields = np.random.default_rng(1).normal(size=(3, 2, 16, 16)).astype(np.float32)
    _, psd = cm.radial_psd(fields)
    assert psd.shape == (3, 2, 9)
    np.testing.assert_allclose(psd[1, 0], cm.radial_psd(fields[1, 0])[1], rtol=1e-5)
    per_field = jax.vmap(lambda x: cm.radial_psd(x)[1])(fields.reshape(6, 16, 16))
    np.testing.assert_allclose(per_field.reshape(psd.shape), psd, rtol=1e-5)
    fields[0, 0, 3, 3] = np.nan
    _, psd = cm.radial_psd(fields)
    assert np.all(np.isnan(psd[0, 0])) and not np.any(np.isnan(psd[0, 1]))


def test_bad_arguments_raise_named_errors():
    with pytest.raises(DataError, match="field.shape"):
        cm.radial_psd(np.ones(8))
    with pytest.raises(ConfigError, match="spacing"):
        cm.radial_psd(np.ones((8, 8)), spacing=0)
