"""Temporal CNN: 1-D convolutions over the time axis of a (multivariate) series.

``(B, T, *spatial, C)`` is read as ``T`` steps of ``F = prod(spatial) * C`` features, then
``[conv over time (kernel k_i, filters f_i, dilation d_i) → activation] × n``, a global average
over time (or, with ``pool="last"``, the features of the last step), and a dense head to
``(B, *output_shape)``.

Padding keeps all ``T`` steps. ``same`` centres each kernel on its step (it sees the past and
the future of the window); ``causal`` pads only the past, so the feature at step ``t`` depends on
steps ``<= t`` alone, as in WaveNet (van den Oord et al. 2016) and TCNs (Bai et al. 2018).
With dilations ``1, 2, 4, ...`` a causal stack covers ``1 + sum((k_i - 1) * d_i)`` steps, and
its last step summarizes exactly that span ending at the forecast time: ``pool="last"`` reads it
there, where an average over the window would dilute the most recent steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models._activations import activation
from climml.models._dense import DenseHead
from climml.models.registry import register
from climml.types import IOSpec

PADDINGS = {"same": "SAME", "causal": "CAUSAL"}
POOLS = ("mean", "last")


@dataclass(frozen=True)
class TemporalCNNConfig:
    """Hyperparameters; ``kernel_size`` and ``dilation`` give one value per conv layer (or one
    value for all of them)."""

    name: str = "temporal_cnn"
    filters: tuple[int, ...] = (16, 32)  # one conv layer per entry
    kernel_size: tuple[int, ...] = (3,)  # time steps
    dilation: tuple[int, ...] = (1,)
    padding: str = "same"  # same | causal
    pool: str = "mean"  # mean (global average over time) | last (features of the last step)
    activation: str = "relu"
    hidden: tuple[int, ...] = ()  # dense layers between the pooled features and the output
    dropout: float = 0.0


def _per_layer(values: tuple[int, ...], layers: int, field: str) -> tuple[int, ...]:
    """``values`` as one positive int per layer (a single value is repeated)."""
    if len(values) == 1:
        values = values * layers
    if len(values) != layers or any(not isinstance(v, int) or v < 1 for v in values):
        want = f"1 or {layers} positive ints (one per filters entry)"
        raise ConfigError(expected(field, want, repr(values)))
    return tuple(values)


class TemporalCNN(nnx.Module):
    """``(B, T, *spatial, C) → (B, *output_shape)``; see the module docstring."""

    def __init__(self, cfg: TemporalCNNConfig, spec: IOSpec, rngs: nnx.Rngs):
        layers = len(cfg.filters)
        if layers == 0 or any(not isinstance(f, int) or f < 1 for f in cfg.filters):
            raise ConfigError(expected("model.filters", "positive ints", repr(cfg.filters)))
        kernels = _per_layer(cfg.kernel_size, layers, "model.kernel_size")
        dilations = _per_layer(cfg.dilation, layers, "model.dilation")
        if cfg.padding not in PADDINGS:
            raise ConfigError(expected("model.padding", f"one of {sorted(PADDINGS)}", cfg.padding))
        if cfg.pool not in POOLS:
            raise ConfigError(expected("model.pool", f"one of {list(POOLS)}", repr(cfg.pool)))
        if len(spec.input_shape) < 2:
            raise ConfigError(expected("input_shape", "(steps, ..., channels)", spec.input_shape))
        self.in_features = math.prod(spec.input_shape[1:])
        self.pool = cfg.pool
        self.act = activation(cfg.activation)
        width = self.in_features
        convs = []
        for out, kernel, dil in zip(cfg.filters, kernels, dilations, strict=True):
            conv = nnx.Conv(
                width,
                out,
                kernel_size=(kernel,),
                kernel_dilation=(dil,),
                padding=PADDINGS[cfg.padding],
                rngs=rngs,
            )
            convs.append(conv)
            width = out
        self.convs = nnx.List(convs)
        self.head = DenseHead(width, cfg.hidden, spec.output_shape, self.act, cfg.dropout, rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Per-step features of the last conv layer: ``(B, T, filters[-1])``."""
        if x.ndim < 3 or math.prod(x.shape[2:]) != self.in_features:
            want = f"(batch, steps, ...) with {self.in_features} features per step"
            raise DataError(expected("x", want, x.shape))
        x = x.reshape(*x.shape[:2], -1)
        for conv in self.convs:
            x = self.act(conv(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.features(x)
        pooled = features.mean(axis=1) if self.pool == "mean" else features[:, -1]
        return self.head(pooled)


@register("temporal_cnn", TemporalCNNConfig)
def build_temporal_cnn(cfg: TemporalCNNConfig, spec: IOSpec, rngs: nnx.Rngs) -> TemporalCNN:
    return TemporalCNN(cfg, spec, rngs)
