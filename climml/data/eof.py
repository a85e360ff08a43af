"""Empirical orthogonal functions (EOFs): the principal components of a gridded field over time.

An EOF analysis finds the spatial patterns that, one after the other, explain the most variance
of a field's anomalies, and the time series (principal components, PCs) of their amplitudes.
Truncating to the first k patterns is the optimal *linear* compression of the field to k numbers
per time, the reference a nonlinear compression (an autoencoder's latent) is measured against.

Conventions (those of the climate literature, e.g. von Storch and Zwiers 1999, ch. 13):

- anomalies are taken from the time mean of the field the EOFs are fitted on;
- each grid point is weighted by ``sqrt(cos(lat))`` before the decomposition (``weighting=
  "coslat"``), so that variance is counted per unit area, not per grid cell (a regular
  latitude-longitude grid crowds its cells towards the poles); ``"none"`` weights all equally;
- points that are missing (NaN) at any fitting time, or have zero weight, are left out and come
  back as NaN in patterns and reconstructions (e.g. land in a sea surface temperature field).

NumPy (float64 SVD), no JAX: this is part of the data path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from climml.errors import ConfigError, DataError, expected

WEIGHTINGS = ("coslat", "none")


@dataclass(frozen=True)
class EOF:
    """A fitted EOF basis. Build it with :meth:`EOF.fit`.

    Internally ``basis`` holds the first ``modes`` right singular vectors of the weighted
    anomaly matrix over the valid points, ``(modes, P)``, orthonormal.
    """

    basis: np.ndarray  # (modes, P) orthonormal rows, in weighted space
    singular_values: np.ndarray  # (modes,)
    total_variance: float  # sum of all squared singular values (weighted anomalies)
    mean: np.ndarray  # (P,) time mean of the valid points
    weights: np.ndarray  # (P,) sqrt(cos(lat)) or ones, all > 0
    valid: np.ndarray  # (S,) bool: which stacked grid points are used
    dim: str
    space: tuple[str, ...]
    template: xr.DataArray  # one time step of the fitted field: grid coordinates and attrs

    @classmethod
    def fit(
        cls, field: xr.DataArray, *, modes: int, dim: str = "time", weighting: str = "coslat"
    ) -> EOF:
        """EOFs of ``field`` (``dim`` x grid) over ``dim``; keeps the first ``modes`` patterns.

        ``weighting="coslat"`` needs a ``lat`` coordinate in degrees.
        """
        if weighting not in WEIGHTINGS:
            raise ConfigError(expected("weighting", f"one of {WEIGHTINGS}", repr(weighting)))
        if dim not in field.dims or field.ndim < 2:
            raise DataError(expected("field.dims", f"({dim!r}, *grid)", field.dims))
        space = tuple(d for d in field.dims if d != dim)
        x = field.transpose(dim, *space).values.reshape(field.sizes[dim], -1).astype(np.float64)
        weights = _point_weights(field, space, weighting)
        valid = np.isfinite(x).all(axis=0) & (weights > 0)
        x, weights = x[:, valid], weights[valid]
        rank = min(x.shape[0] - 1, x.shape[1])  # anomalies lose one degree of freedom
        if not isinstance(modes, int) or not 1 <= modes <= rank:
            raise ConfigError(expected("modes", f"an int in [1, {rank}]", modes))
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd((x - mean) * weights, full_matrices=False)
        return cls(
            basis=vt[:modes],
            singular_values=s[:modes],
            total_variance=float(np.sum(s**2)),
            mean=mean,
            weights=weights,
            valid=valid,
            dim=dim,
            space=space,
            template=field.isel({dim: 0}, drop=True).transpose(*space),
        )

    @property
    def modes(self) -> int:
        return self.basis.shape[0]

    @property
    def explained_variance_ratio(self) -> xr.DataArray:
        """``(mode,)`` fraction of the (weighted) anomaly variance each pattern explains."""
        ratio = self.singular_values**2 / self.total_variance
        return xr.DataArray(ratio, dims="mode", coords={"mode": np.arange(1, self.modes + 1)})

    def patterns(self) -> xr.DataArray:
        """``(mode, *grid)`` patterns in the field's units per unit PC, NaN where unused:
        ``field ≈ mean + Σ_k pc_k pattern_k``."""
        return self._grid(self.basis / self.weights, leading=("mode", np.arange(1, self.modes + 1)))

    def pcs(self, field: xr.DataArray) -> xr.DataArray:
        """``(dim, mode)`` amplitudes of the patterns in ``field`` (same grid as the fit)."""
        x = self._points(field)
        pcs = ((x - self.mean) * self.weights) @ self.basis.T
        return xr.DataArray(
            pcs,
            dims=(self.dim, "mode"),
            coords={self.dim: field[self.dim].values, "mode": np.arange(1, self.modes + 1)},
        )

    def reconstruct(self, field: xr.DataArray, *, modes: int | None = None) -> xr.DataArray:
        """``field`` truncated to its first ``modes`` patterns (default all kept), same shape
        and coordinates; NaN at the points the fit left out."""
        k = self.modes if modes is None else modes
        if not isinstance(k, int) or not 1 <= k <= self.modes:
            raise ConfigError(expected("modes", f"an int in [1, {self.modes}]", modes))
        x = self._points(field)
        pcs = ((x - self.mean) * self.weights) @ self.basis[:k].T
        values = self.mean + (pcs @ self.basis[:k]) / self.weights
        return self._grid(values, leading=(self.dim, field[self.dim].values))

    def _points(self, field: xr.DataArray) -> np.ndarray:
        """``(N, P)`` float64 values of ``field`` at the fitted valid points."""
        if set(field.dims) != {self.dim, *self.space}:
            raise DataError(expected("field.dims", (self.dim, *self.space), field.dims))
        grid = field.transpose(self.dim, *self.space)
        if grid.shape[1:] != self.template.shape:
            raise DataError(expected("field grid shape", self.template.shape, grid.shape[1:]))
        return grid.values.reshape(grid.shape[0], -1)[:, self.valid].astype(np.float64)

    def _grid(self, values: np.ndarray, *, leading: tuple[str, Sequence]) -> xr.DataArray:
        """``(N, P)`` values at the valid points back on the grid, NaN elsewhere."""
        name, coord = leading
        full = np.full((values.shape[0], self.valid.size), np.nan)
        full[:, self.valid] = values
        coords = {
            name: coord,
            **{d: self.template[d] for d in self.space if d in self.template.coords},
        }
        return xr.DataArray(
            full.reshape(values.shape[0], *self.template.shape),
            dims=(name, *self.space),
            coords=coords,
            attrs=self.template.attrs,
        )


def _point_weights(field: xr.DataArray, space: tuple[str, ...], weighting: str) -> np.ndarray:
    """``(S,)`` weights of the stacked grid points: ``sqrt(cos(lat))`` or ones."""
    shape = tuple(field.sizes[d] for d in space)
    if weighting == "none":
        return np.ones(int(np.prod(shape)))
    if "lat" not in field.coords or field["lat"].dims != ("lat",) or "lat" not in space:
        raise DataError(expected("field", "a 1-D 'lat' coordinate for weighting='coslat'", space))
    lat = np.deg2rad(field["lat"].values.astype(np.float64))
    w = np.sqrt(np.clip(np.cos(lat), 0.0, None))
    axis = space.index("lat")
    return np.broadcast_to(
        w.reshape([-1 if i == axis else 1 for i in range(len(space))]), shape
    ).ravel()
