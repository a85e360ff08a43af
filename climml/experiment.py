"""What the pipeline hands its stages: the prepared data and a predictor.

The task modules (``climml.tasks``) and the explain stage (``climml.explain.stage``) receive an
``Experiment`` (the checked config, the loaded and the normalized dataset, the training-split
statistics and the split anchors) and a ``Predictor`` (a named batch → forecast function: the
trained model, or a baseline). They read everything from these two objects and never reach back
into ``climml.pipeline``, so a research script can call a task with its own model and data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax
import numpy as np
import xarray as xr

from climml.config import Config
from climml.data.loader import WindowLoader
from climml.data.normalize import Normalizer
from climml.data.rain import RainCrop
from climml.errors import ConfigError, expected
from climml.types import Batch, IOSpec


@runtime_checkable
class Predictor(Protocol):
    """A named forecast: ``predict(batch)`` → ``(B, *output_shape)`` in normalized target units
    (class scores for segmentation). The trained model and every baseline satisfy it."""

    name: str

    def predict(self, batch: Batch) -> np.ndarray: ...


@runtime_checkable
class DifferentiablePredictor(Predictor, Protocol):
    """A ``Predictor`` that also offers a pure JAX function of the inputs, which permutation
    importance vmaps and saliency differentiates."""

    def predict_fn(self) -> Callable[[jax.Array], jax.Array]: ...


@dataclass
class Experiment:
    """A config with its data prepared: normalized (lazy) dataset, statistics and split anchors."""

    cfg: Config
    raw: xr.Dataset  # as loaded and conformed (lat/lon named and sorted), physical units
    dataset: xr.Dataset  # normalized, still lazy
    normalizer: Normalizer  # fitted on the training split
    anchors: dict[str, np.ndarray]  # split -> time index of each sample's last input step

    @property
    def time(self) -> np.ndarray:
        """``(T,)`` datetime64 time coordinate of the source."""
        return self.raw["time"].values

    def loader(self, split: str, *, training: bool = False) -> WindowLoader:
        """A ``WindowLoader`` over ``split``; shuffled only for training."""
        d = self.cfg.data
        if split not in self.anchors:
            raise ConfigError(expected("eval.split", f"one of {sorted(self.anchors)}", split))
        return WindowLoader(
            self.dataset,
            inputs=list(d.inputs),
            target=d.target,
            input_steps=d.input_steps,
            leads=list(d.leads),
            anchors=self.anchors[split],
            batch_size=d.batch_size,
            shuffle=training and d.shuffle,
            seed=self.cfg.seed,
            drop_last=False,
            mask_channel=d.mask_channel,
            prefetch=d.prefetch,
            crop=RainCrop(d.crop.size, d.crop.rain_bias) if training and d.crop.size else None,
        )

    @property
    def spec(self) -> IOSpec:
        """Per-sample input and output shapes of the models this experiment trains."""
        spec = self.loader("train").spec
        if self.cfg.data.num_classes is None:
            return spec
        return IOSpec(spec.input_shape, spec.output_shape, self.cfg.data.num_classes)
