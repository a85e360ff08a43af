"""Reference forecasts that every model must beat: persistence, climatology and AR(p).

They share one predict interface with trained models (``climml.pipeline.TrainedModel``):
``fit(loader) -> self`` on the training split, then ``predict(batch) -> (B, L, *target_spatial)``
in the loader's normalized units. Because targets are standardized with training statistics
(optionally per calendar month), the climatological forecast is exactly zero in those units.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from climml.errors import ConfigError, DataError, expected
from climml.types import Batch, IOSpec


class Persistence:
    """The last observed target value carried forward to every lead."""

    name = "persistence"

    def __init__(self, spec: IOSpec, leads: Sequence[int]):
        self.num_leads = len(leads)

    def fit(self, batches: Iterable[Batch]) -> Persistence:
        return self  # nothing to learn

    def predict(self, batch: Batch) -> np.ndarray:
        last = np.asarray(batch.target_history)[:, -1]
        return np.repeat(last[:, None], self.num_leads, axis=1)


class Climatology:
    """The (monthly) training-period mean: zero anomaly in normalized units."""

    name = "climatology"

    def __init__(self, spec: IOSpec, leads: Sequence[int]):
        self.output_shape = spec.output_shape

    def fit(self, batches: Iterable[Batch]) -> Climatology:
        return self  # the mean is already removed by the Normalizer fitted on training data

    def predict(self, batch: Batch) -> np.ndarray:
        return np.zeros((np.shape(batch.y)[0], *self.output_shape), np.float32)


class AutoRegressive:
    """AR(p) per target point, fitted in closed form by least squares on the training split.

    Direct multi-lead: lead ``l`` has its own coefficients, regressing ``y[t + l]`` on an
    intercept and the last ``p`` values ``y[t], ..., y[t - p + 1]`` of the target history (no
    iterating a one-step model, so errors do not compound). ``p`` defaults to the input window
    (``spec.input_shape[0]``). Fitting accumulates the normal equations over batches (padding
    rows and invalid targets weigh nothing) and solves them once with a pseudo-inverse, so a
    point without training data (e.g. land) forecasts 0, the climatology. A missing value in the
    history enters as 0 too (the loader fills NaN with 0, the climatological mean in normalized
    units).
    """

    def __init__(self, spec: IOSpec, leads: Sequence[int], order: int | None = None):
        steps = spec.input_shape[0]
        self.order = steps if order is None else order
        if not isinstance(self.order, int) or not 1 <= self.order <= steps:
            raise ConfigError(expected("AutoRegressive.order", f"an int in [1, {steps}]", order))
        self.name = "ar" if order is None else f"ar{order}"  # the key of its scores
        self.num_leads = len(leads)
        self.coef: np.ndarray | None = None  # (S, L, p + 1): intercept, then lags 0..p-1

    def _features(self, batch: Batch) -> np.ndarray:
        """``(B, S, p + 1)``: a 1, then the last ``p`` target values, most recent first."""
        history = np.asarray(batch.target_history, np.float64)
        history = history.reshape(history.shape[0], history.shape[1], -1)  # (B, T, S)
        lags = history[:, ::-1][:, : self.order]  # (B, p, S)
        ones = np.ones_like(lags[:, :1])
        return np.concatenate([ones, lags], axis=1).transpose(0, 2, 1)

    def fit(self, batches: Iterable[Batch]) -> AutoRegressive:
        gram = rhs = None
        for batch in batches:
            x = self._features(batch)  # (B, S, P)
            y = np.asarray(batch.y, np.float64).reshape(x.shape[0], self.num_leads, -1)
            w = np.asarray(batch.y_valid, np.float64).reshape(y.shape)
            w = w * np.asarray(batch.weight, np.float64)[:, None, None]  # (B, L, S)
            g = np.einsum("bls,bsp,bsq->slpq", w, x, x)
            r = np.einsum("bls,bsp,bls->slp", w, x, y)
            gram, rhs = (g, r) if gram is None else (gram + g, rhs + r)
        if gram is None:
            raise DataError(expected("ar training batches", "at least one batch", "none"))
        self.coef = np.einsum("slpq,slq->slp", np.linalg.pinv(gram), rhs)
        return self

    def predict(self, batch: Batch) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("AutoRegressive.predict: call fit() on training batches first")
        x = self._features(batch)
        forecast = np.einsum("bsp,slp->bls", x, self.coef)
        shape = np.shape(batch.y)
        return forecast.reshape(shape).astype(np.float32)


BASELINES: dict[str, Callable[[IOSpec, Sequence[int]], object]] = {
    "persistence": Persistence,
    "climatology": Climatology,
    "ar": AutoRegressive,
}
"""Baselines by config name. ``ar`` uses the whole input window; ``ar<p>`` (e.g. ``ar3``) sets
the order ``p`` explicitly (``1 <= p <= data.input_steps``)."""

_AR_ORDER = re.compile(r"ar(\d+)")


def check_baseline(name: str, input_steps: int) -> None:
    """ConfigError naming ``eval.baselines`` unless ``name`` builds for ``input_steps`` steps."""
    match = _AR_ORDER.fullmatch(name)
    if match and 1 <= int(match[1]) <= input_steps:
        return
    if name not in BASELINES:
        allowed = f"names from {sorted(BASELINES)} or ar<p> with 1 <= p <= {input_steps}"
        raise ConfigError(expected("eval.baselines", allowed, repr(name)))


def make_baseline(name: str, spec: IOSpec, leads: Sequence[int]):
    """Instantiate the baseline called ``name`` (ConfigError naming ``eval.baselines``)."""
    check_baseline(name, spec.input_shape[0])
    match = _AR_ORDER.fullmatch(name)
    if match:
        return AutoRegressive(spec, leads, order=int(match[1]))
    return BASELINES[name](spec, leads)
