"""Types shared by the data path and the models, so neither package imports the other.

``IOSpec`` describes what a model maps between; ``Batch`` is what the loader yields and what
the training steps, tasks and reference forecasts consume. This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class IOSpec:
    """Per-sample shapes a model maps between (no batch axis).

    input_shape: ``(steps, *spatial, channels)``; e.g. ``(3, 24, 72, 4)`` for three months of
        two gridded variables plus mask channels, or ``(32, 5)`` for 32 steps of 5 features.
    output_shape: ``(leads, *target_spatial)`` for regression, e.g. ``(3,)`` for an index at three
        leads; ``(leads, lat, lon)`` for a field. Classifiers add a trailing class axis.
    num_classes: number of classes for segmentation/classification, else ``None``.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    num_classes: int | None = None


class Batch(NamedTuple):
    """One batch; ``B`` = batch size, ``T`` = input steps, ``L`` = number of leads.

    x: (B, T, *spatial, C) float32 inputs, channels = input variables (+ mask), NaN -> 0.
    y: (B, L, *target_spatial) float32 targets, NaN -> 0.
    y_valid: like ``y``; 1.0 where the target was finite (0.0 also on padding rows).
    target_history: (B, T, *target_spatial) float32, the target over the input steps, NaN -> 0.
    weight: (B,) float32, 1 for real samples, 0 for padding rows of the last batch.
    anchor: (B,) int64 time index of each sample's last input step, -1 for padding.
    """

    x: Any
    y: Any
    y_valid: Any
    target_history: Any
    weight: Any
    anchor: np.ndarray
