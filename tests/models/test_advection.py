"""The JAX advection baseline: known displacements, fitted motion, persistence, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from climml.errors import ConfigError, DataError
from climml.models.advection import (
    Advection,
    EulerianPersistence,
    extrapolate,
    fit_motion,
    phase_correlation,
)

H, W = 48, 64
YY, XX = np.mgrid[0:H, 0:W].astype(np.float64)


def blob(cy, cx, sigma=4.0):
    return np.exp(-((YY - cy) ** 2 + (XX - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def centroid(field):
    field = np.asarray(field, np.float64)
    return (field * XX).sum() / field.sum(), (field * YY).sum() / field.sum()


def textured(shift=(0.0, 0.0), seed=0):
    """A periodic power-law random field translated by ``shift`` (x, y) pixels (exact, FFT)."""
    rng = np.random.default_rng(seed)
    ky, kx = np.fft.fftfreq(H)[:, None], np.fft.fftfreq(W)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.normal(size=(H, W))) * k**-1.5
    moved = spectrum * np.exp(-2j * np.pi * (kx * shift[0] + ky * shift[1]))
    return np.real(np.fft.ifft2(moved)).astype(np.float32)


@pytest.mark.parametrize("motion", [(2.0, -1.0), (2.3, -1.4), (-0.6, 0.35)])
def test_constant_motion_moves_a_blob_by_the_known_displacement(motion):
    frames = np.asarray(extrapolate(blob(24, 28), np.asarray(motion, np.float32), 4))
    for k, frame in enumerate(frames, start=1):
        cx, cy = centroid(frame)
        # sub-pixel: the centroid moves by k * motion to within 1/100 pixel
        assert cx - 28 == pytest.approx(k * motion[0], abs=0.01)
        assert cy - 24 == pytest.approx(k * motion[1], abs=0.01)
        # and the shape is the shifted blob (bilinear smoothing only, < 2 % of the peak)
        exact = blob(24 + k * motion[1], 28 + k * motion[0])
        np.testing.assert_allclose(frame, exact, atol=0.02)


def test_integer_motion_is_an_exact_shift_with_fill_flowing_in():
    field = np.random.default_rng(1).random((H, W)).astype(np.float32)
    out = np.asarray(extrapolate(field, np.array([3.0, 2.0], np.float32), 2, fill=-1.0))
    np.testing.assert_allclose(out[1, 4:, 6:], field[:-4, :-6], rtol=0, atol=1e-6)
    assert (out[1, :4] == -1).all() and (out[1, :, :6] == -1).all()
    # default fill: the field's minimum (the no-rain value in any monotone rain unit)
    default = np.asarray(extrapolate(field, np.array([3.0, 2.0], np.float32), 1))
    assert (default[0, :2] == field.min()).all()


def test_a_motion_field_equal_everywhere_matches_the_constant_motion():
    field = blob(20, 30)
    v = np.array([1.7, 0.8], np.float32)
    uniform = np.broadcast_to(v[:, None, None], (2, H, W))
    np.testing.assert_allclose(extrapolate(field, uniform, 3), extrapolate(field, v, 3), atol=1e-6)


def test_phase_correlation_finds_the_integer_and_near_the_fractional_shift():
    a = textured()
    assert np.asarray(phase_correlation(a, textured((5.0, -3.0)))) == pytest.approx(
        [5.0, -3.0], abs=0.02
    )
    assert np.asarray(phase_correlation(a, textured((2.3, -1.4)))) == pytest.approx(
        [2.3, -1.4], abs=0.3
    )


@pytest.mark.parametrize("shift", [(2.3, -1.4), (-4.6, 3.2)])
def test_fitted_motion_recovers_a_known_shift(shift):
    v = np.asarray(shift, np.float32)
    frames = np.stack([textured(i * v) for i in range(3)])
    motion = np.asarray(fit_motion(frames))
    interior = motion[:, 8:-8, 8:-8]  # the frames are periodic, the advection is not
    np.testing.assert_allclose(interior.mean(axis=(1, 2)), v, atol=0.03)
    assert np.abs(interior - v[:, None, None]).max() < 0.15


def test_fitted_motion_does_not_depend_on_units():
    frames = np.stack([textured(i * np.array([1.5, 1.0])) for i in range(3)])
    a, b = fit_motion(frames), fit_motion(30.0 * frames + 7.0)
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_advection_forecasts_the_translated_field_and_vmaps_like_a_loop():
    v = np.array([2.0, 1.0], np.float32)
    histories = np.stack([np.stack([textured(i * v, seed=s) for i in range(4)]) for s in (0, 1)])
    model = Advection([1, 3], frames=3)
    forecast = model.forecast(histories)  # (B=2, L=2, H, W)
    assert forecast.shape == (2, 2, H, W)
    for b in range(2):
        for i, lead in enumerate((1, 3)):
            truth = textured((3 + lead) * v, seed=b)
            inner = (slice(12, -12), slice(12, -12))  # away from the inflow edges
            err = np.abs(forecast[b, i][inner] - truth[inner]).max()
            assert err < 0.05 * np.abs(truth).max()
        one = model.forecast(histories[b : b + 1])[0]
        np.testing.assert_allclose(one, forecast[b], atol=1e-5)


def test_jit_equals_eager():
    field, v = blob(20, 30), np.array([1.2, -0.7], np.float32)
    with jax.disable_jit():
        eager = extrapolate(jnp.asarray(field), jnp.asarray(v), 2)
    np.testing.assert_allclose(extrapolate(field, v, 2), eager, atol=1e-6)


def test_constant_advection_and_persistence():
    history = np.stack([blob(20, 20 + i) for i in range(3)])[None]
    moved = Advection([2], motion=(1.0, 0.0)).forecast(history)
    np.testing.assert_allclose(moved[0, 0, :, 2:], history[0, -1, :, :-2], atol=1e-6)
    persisted = EulerianPersistence([1, 2, 6]).forecast(history)
    assert persisted.shape == (1, 3, H, W)
    for i in range(3):
        np.testing.assert_array_equal(persisted[0, i], history[0, -1])


def test_bad_input():
    with pytest.raises(ConfigError, match="data.leads"):
        Advection([0, 1])
    with pytest.raises(ConfigError, match="frames"):
        Advection([1], frames=1)
    with pytest.raises(DataError, match="advection history"):
        Advection([1], frames=3).forecast(np.zeros((1, 2, 8, 8)))


def test_agrees_with_pysteps_lucas_kanade_extrapolation_on_a_known_shift():
    """Reference library: pysteps' LK + semi-Lagrangian forecast of a translating rain-like
    field; both are close to the truth, and so to each other, away from the inflow edges."""
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from climml.models.pysteps_nowcast import PystepsFlow, Steps

    v = np.array([1.5, -1.0], np.float32)
    rain = [np.maximum(textured(i * v, seed=3), 0) * 10 for i in range(4)]  # mm/h, dry half
    history = np.stack(rain)[None]
    truth = np.maximum(textured(5 * v, seed=3), 0) * 10  # lead 2 after the last frame
    inner = (slice(10, -10), slice(10, -10))
    ours = Advection([2]).forecast(history)[0, 0]
    theirs = PystepsFlow([2]).forecast(history)[0, 0]
    scale = truth[inner].max()
    # measured: 0.0004 (ours), 0.0034 (pysteps) and 0.084 (persistence) of the peak
    assert np.abs(ours[inner] - truth[inner]).mean() < 0.002 * scale
    assert np.abs(theirs[inner] - truth[inner]).mean() < 0.01 * scale
    assert np.abs(ours[inner] - theirs[inner]).mean() < 0.01 * scale
    assert np.abs(history[0, -1][inner] - truth[inner]).mean() > 0.05 * scale
    ensemble = Steps([1, 2], members=2, seed=1).forecast(history)
    assert ensemble.shape == (1, 2, 2, H, W) and (ensemble >= 0).all()
    again = Steps([1, 2], members=2, seed=1).forecast(history)
    np.testing.assert_array_equal(ensemble, again)  # seeded
