"""Running predictors over an evaluation loader, shared by the task modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from climml.types import Batch


def collect(
    loader: Iterable[Batch], predictors: Mapping[str, Callable[[Batch], Any]]
) -> dict[str, np.ndarray]:
    """Run every predictor over one epoch of ``loader``, padding rows dropped.

    ``predictors`` maps an output name to ``predict(batch) -> (B, L, *target)``. Returns those
    names plus ``observed``, ``valid`` and ``anchor``, each concatenated over batches: ``(N, ...)``.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for batch in loader.epoch(0):
        keep = np.asarray(batch.weight) > 0
        fields = {"observed": batch.y, "valid": batch.y_valid, "anchor": batch.anchor}
        fields |= {name: predict(batch) for name, predict in predictors.items()}
        for name, value in fields.items():
            parts.setdefault(name, []).append(np.asarray(value)[keep])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}
