"""Reference forecasts that every model must beat: persistence and climatology.

They share one predict interface with trained models (see ``climml.predictors``):
``fit(loader) -> self`` on the training split, then ``predict(batch) -> (B, L, *target_spatial)``
in the loader's normalized units. Because targets are standardized with training statistics
(optionally per calendar month), the climatological forecast is exactly zero in those units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from climml.errors import ConfigError, expected
from climml.models.registry import IOSpec

if TYPE_CHECKING:
    from climml.data.loader import Batch


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


BASELINES: dict[str, Callable[[IOSpec, Sequence[int]], object]] = {
    "persistence": Persistence,
    "climatology": Climatology,
}


def make_baseline(name: str, spec: IOSpec, leads: Sequence[int]):
    """Instantiate the baseline called ``name`` (ConfigError naming ``eval.baselines``)."""
    if name not in BASELINES:
        raise ConfigError(expected("eval.baselines", f"names from {sorted(BASELINES)}", repr(name)))
    return BASELINES[name](spec, leads)
