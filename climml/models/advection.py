"""Optical-flow extrapolation in JAX: the nowcasting baseline that needs no extra package.

A radar nowcast's first reference after persistence moves the last observed field along its
own motion (Lagrangian persistence). Two parts, both pure functions of arrays, jit-able and
vmapped over a batch:

* ``fit_motion(frames)``: a motion field ``(2, H, W)`` (x then y component, pixels per time
  step; the pattern at ``p`` moves to ``p + v`` in one step) from the last frames. A global
  translation from phase correlation (robust to displacements of many pixels, where a
  linearised fit would not converge), refined by a few warped Lucas-Kanade iterations whose
  normal equations are summed over a Gaussian window (``window`` pixels): a smooth field that
  follows the local motion where the frames have texture and keeps the global motion where
  they have none (a Tikhonov term pulls the update to zero there).
* ``extrapolate(field, motion, steps)``: backward semi-Lagrangian advection, as pysteps'
  ``semilagrangian.extrapolate``: the displacement after ``k`` steps follows the trajectory
  through the (interpolated) motion field, and the forecast at ``p`` is the last field at
  ``p - displacement``, bilinearly interpolated. Points whose departure lies outside the grid
  get ``fill`` (default: the field's minimum, the no-rain value in any monotone rain unit).

``Advection`` wraps both as a nowcasting baseline: ``forecast(history)`` with the history in
physical units ``(B, T, H, W)`` → ``(B, L, H, W)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from climml.errors import ConfigError, DataError, expected


def _sample(field: jax.Array, y: jax.Array, x: jax.Array, fill: jax.Array) -> jax.Array:
    """Bilinear value of ``field`` (H, W) at fractional (y, x) positions; ``fill`` outside.

    ``map_coordinates`` takes its outside value as a static constant, so the traced ``fill``
    is subtracted first and the outside value is 0."""
    return map_coordinates(field - fill, [y, x], order=1, mode="constant", cval=0.0) + fill


def _grid(h: int, w: int, dtype) -> tuple[jax.Array, jax.Array]:
    return jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype), indexing="ij")


@functools.partial(jax.jit, static_argnames=("steps",))
def extrapolate(field: jax.Array, motion: jax.Array, steps: int, fill=None) -> jax.Array:
    """``(steps, H, W)``: ``field`` (H, W) advected 1..``steps`` time steps by ``motion``.

    ``motion`` is ``(2, H, W)`` (x, y) in pixels per step, or ``(2,)`` for a constant motion.
    ``fill`` (scalar) is the value flowing in from outside the grid; None: ``field``'s minimum.
    A constant motion displaces exactly by ``k * motion`` (bilinear interpolation is exact for
    a translation only at integer shifts; in between it smooths a little, as any interpolation).
    """
    field = jnp.asarray(field)
    h, w = field.shape
    fill = jnp.min(field) if fill is None else jnp.asarray(fill, field.dtype)
    motion = jnp.asarray(motion, field.dtype)
    if motion.ndim == 1:
        motion = jnp.broadcast_to(motion[:, None, None], (2, h, w))
    gy, gx = _grid(h, w, field.dtype)

    def step(displacement, _):
        # Backward trajectory: the parcel now at p came from p - d_k; one more step back
        # follows the motion found at that departure point (edge values beyond the grid).
        dy, dx = displacement
        vx = map_coordinates(motion[0], [gy - dy, gx - dx], order=1, mode="nearest")
        vy = map_coordinates(motion[1], [gy - dy, gx - dx], order=1, mode="nearest")
        displacement = jnp.stack([dy + vy, dx + vx])
        frame = _sample(field, gy - displacement[0], gx - displacement[1], fill)
        return displacement, frame

    _, frames = jax.lax.scan(step, jnp.zeros((2, h, w), field.dtype), length=steps)
    return frames


def _gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Gaussian-weighted local mean of ``x`` (H, W), renormalised at the edges.

    Separable, as two matrix products with row-normalised Gaussian matrices: exact for any
    grid size (a window wider than the grid just averages more) and one matmul per axis."""
    h, w = x.shape

    def matrix(n):
        t = np.arange(n)
        k = np.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2)
        return jnp.asarray(k / k.sum(axis=1, keepdims=True), x.dtype)

    return matrix(h) @ x @ matrix(w).T


def phase_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    """``(2,)`` (x, y) shift in pixels that best maps ``a`` (H, W) onto ``b`` (``b(p) ~
    a(p - shift)``): the peak of the normalised cross-power spectrum, refined to sub-pixel by a
    parabola through the peak and its neighbours. Shifts up to half the grid are found."""
    h, w = a.shape
    window = jnp.outer(jnp.hanning(h), jnp.hanning(w)).astype(a.dtype)  # no edge jump
    fa = jnp.fft.fft2((a - a.mean()) * window)
    fb = jnp.fft.fft2((b - b.mean()) * window)
    cross = fb * jnp.conj(fa)
    surface = jnp.real(jnp.fft.ifft2(cross / (jnp.abs(cross) + 1e-12)))
    peak = jnp.argmax(surface)
    py, px = peak // w, peak % w

    def refine(i, size, axis_values):
        left, mid, right = axis_values(i - 1), axis_values(i), axis_values(i + 1)
        denominator = left - 2 * mid + right
        offset = jnp.where(jnp.abs(denominator) > 1e-12, 0.5 * (left - right) / denominator, 0.0)
        shift = i + jnp.clip(offset, -0.5, 0.5)
        return jnp.where(shift > size / 2, shift - size, shift)  # wrap to a signed shift

    sy = refine(py, h, lambda i: surface[i % h, px])
    sx = refine(px, w, lambda i: surface[py, i % w])
    return jnp.stack([sx, sy]).astype(a.dtype)


@functools.partial(jax.jit, static_argnames=("window", "iterations"))
def fit_motion(
    frames: jax.Array, *, window: float = 8.0, iterations: int = 5, damping: float = 1e-2
) -> jax.Array:
    """``(2, H, W)`` motion (x, y; pixels per step) fitted to ``frames`` (T >= 2, H, W).

    Start: the mean phase-correlation shift of consecutive pairs (a global translation). Then
    ``iterations`` Lucas-Kanade updates: each pair's earlier frame is advected one step by the
    current motion, and the update ``du`` solves, at each pixel, the 2x2 normal equations of
    ``grad(warped) . du = -(later - warped)`` summed over all pairs and over a Gaussian
    ``window`` (sigma, pixels), plus ``damping`` times the window's mean gradient energy on the
    diagonal, which keeps textureless regions at the current (global) motion. Frames are
    scaled by their standard deviation first, so the fit does not depend on units.
    """
    frames = jnp.asarray(frames)
    frames = (frames - frames.mean()) / (frames.std() + 1e-12)
    earlier, later = frames[:-1], frames[1:]
    shift = jax.vmap(phase_correlation)(earlier, later).mean(axis=0)
    h, w = frames.shape[1:]
    motion = jnp.broadcast_to(shift[:, None, None], (2, h, w))

    def normal_equations(motion, a, b):
        warped = extrapolate(a, motion, 1, fill=0.0)[0]
        # Pixels whose departure point lies outside the grid (and their neighbours, which
        # the gradient reaches) say nothing about the motion: weight 0.
        inside = extrapolate(jnp.ones_like(a), motion, 1, fill=0.0)[0] > 1 - 1e-6
        inside = inside & jnp.roll(inside, 1, 0) & jnp.roll(inside, -1, 0)
        inside = (inside & jnp.roll(inside, 1, 1) & jnp.roll(inside, -1, 1)).astype(a.dtype)
        gy, gx = jnp.gradient(warped)
        gx, gy, r = gx * inside, gy * inside, (b - warped) * inside
        return jnp.stack([gx * gx, gx * gy, gy * gy, gx * r, gy * r])

    def update(motion, _):
        terms = jax.vmap(normal_equations, in_axes=(None, 0, 0))(motion, earlier, later)
        sxx, sxy, syy, sxr, syr = jax.vmap(_gaussian_blur, in_axes=(0, None))(
            terms.sum(axis=0), window
        )
        ridge = damping * jnp.mean(sxx + syy) + 1e-9
        sxx, syy = sxx + ridge, syy + ridge
        det = sxx * syy - sxy * sxy
        # Solve [sxx sxy; sxy syy] du = -[sxr, syr]: the sign follows from
        # later ~ warped(p - du) ~ warped - du . grad(warped).
        dux = -(syy * sxr - sxy * syr) / det
        duy = -(sxx * syr - sxy * sxr) / det
        return motion + jnp.stack([dux, duy]), None

    motion, _ = jax.lax.scan(update, motion, length=iterations)
    return motion


class Advection:
    """Lagrangian persistence: the last frame moved along the motion of the last ``frames``.

    ``motion=None`` fits the motion of each sample (``fit_motion``); a pair ``(vx, vy)``
    (pixels per step) uses that constant motion for every sample. ``forecast(history)``:
    ``(B, T, H, W)`` in physical units → ``(B, L, H, W)`` at the configured lead steps.
    """

    name = "advection"
    members = None  # deterministic

    def __init__(
        self,
        leads: Sequence[int],
        *,
        frames: int = 3,
        motion: Sequence[float] | None = None,
        window: float = 8.0,
        iterations: int = 5,
    ):
        self.leads = np.asarray(leads, np.int64)
        if self.leads.min() < 1:
            raise ConfigError(expected("data.leads", "lead steps >= 1 for advection", list(leads)))
        if frames < 2:
            raise ConfigError(expected("Advection.frames", "an int >= 2", frames))
        self.frames = frames
        self.motion = None if motion is None else jnp.asarray(motion, jnp.float32)
        steps = int(self.leads.max())

        def one(history):
            if self.motion is None:
                motion = fit_motion(history[-self.frames :], window=window, iterations=iterations)
            else:
                motion = self.motion
            return extrapolate(history[-1], motion, steps)[self.leads - 1]

        self._forecast = jax.jit(jax.vmap(one))

    def forecast(self, history: np.ndarray) -> np.ndarray:
        history = np.asarray(history, np.float32)
        if history.ndim != 4 or (self.motion is None and history.shape[1] < self.frames):
            want = f"(B, T >= {self.frames}, H, W)" if self.motion is None else "(B, T, H, W)"
            raise DataError(expected("advection history", want, history.shape))
        return np.asarray(self._forecast(jnp.asarray(history)))


class EulerianPersistence:
    """The last observed frame at every lead: ``(B, T, H, W)`` → ``(B, L, H, W)``."""

    name = "persistence"
    members = None

    def __init__(self, leads: Sequence[int]):
        self.num_leads = len(leads)

    def forecast(self, history: np.ndarray) -> np.ndarray:
        last = np.asarray(history)[:, -1]
        return np.repeat(last[:, None], self.num_leads, axis=1)
