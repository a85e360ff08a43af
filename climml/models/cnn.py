"""Ham et al. (2019)-style CNN for gridded regression (e.g. Niño3.4 at several leads from maps).

The input window ``(B, T, lat, lon, C)`` is folded into ``T * C`` channels (Ham et al. stack the
last three months of SST and heat content), then ``[conv → activation → max-pool] × n``, a dense
stack, and one linear output per lead (or per output element).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from climml.errors import ConfigError, expected
from climml.models._activations import activation
from climml.models._dense import DenseHead
from climml.models.registry import register
from climml.types import IOSpec


@dataclass(frozen=True)
class CNNConfig:
    name: str = "cnn"
    filters: tuple[int, ...] = (16, 32)  # one conv block per entry
    kernel_size: tuple[int, int] = (4, 8)  # (lat, lon) cells; Ham et al. use 4x8
    activation: str = "tanh"
    pool: int = 2  # max-pool window and stride after each conv
    hidden: tuple[int, ...] = (32,)  # dense layers before the output
    dropout: float = 0.0


class CNN(nnx.Module):
    """``(B, T, H, W, C) → (B, *output_shape)``."""

    def __init__(self, cfg: CNNConfig, spec: IOSpec, rngs: nnx.Rngs):
        if len(spec.input_shape) != 4:
            raise ConfigError(
                expected(
                    "model.name=cnn input", "(time, lat, lon, channel) samples", spec.input_shape
                )
            )
        steps, height, width, channels = spec.input_shape
        self.act = activation(cfg.activation)
        self.pool = cfg.pool
        in_ch = steps * channels
        convs = []
        for out_ch in cfg.filters:
            convs.append(nnx.Conv(in_ch, out_ch, cfg.kernel_size, padding="SAME", rngs=rngs))
            in_ch = out_ch
            height, width = height // cfg.pool, width // cfg.pool
        if height < 1 or width < 1:
            raise ConfigError(
                expected("model.filters", "few enough pooling stages for the grid", cfg.filters)
            )
        self.convs = nnx.List(convs)
        self.head = DenseHead(
            in_ch * height * width, cfg.hidden, spec.output_shape, self.act, cfg.dropout, rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        x = jnp.moveaxis(x, 1, 3).reshape(b, h, w, t * c)  # time steps become channels
        for conv in self.convs:
            x = self.act(conv(x))
            x = nnx.max_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool))
        return self.head(x.reshape(b, -1))


@register("cnn", CNNConfig)
def build_cnn(cfg: CNNConfig, spec: IOSpec, rngs: nnx.Rngs) -> CNN:
    return CNN(cfg, spec, rngs)
