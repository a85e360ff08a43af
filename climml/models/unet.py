"""U-Net (Ronneberger et al., 2015) for per-pixel classification of gridded fields.

The ClimateNet use case: from a few channels on a lat/lon grid (water vapour, winds, pressure)
predict a class per grid point (background / tropical cyclone / atmospheric river). An encoder
of ``depth`` levels halves the grid and doubles the filters at each level; a decoder upsamples
back, concatenating at each level the encoder's features of the same resolution (the skip
connections that carry the fine spatial detail).

With ``lon_periodic=True`` every convolution wraps around in longitude (zeros along latitude),
so that on a global grid the prediction for a longitude-rolled input is the rolled prediction
(exactly so for rolls by a multiple of ``2**depth`` points, which keep the pooling grid aligned).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models.conv import CONV_IMPLS, Conv
from climml.models.registry import register
from climml.types import IOSpec

NORMALIZATIONS = ("batch", "group", "none")


@dataclass(frozen=True)
class UNetConfig:
    """U-Net hyperparameters (the YAML ``model:`` section with ``name: unet``).

    depth: number of 2x down-samplings; the grid must be divisible by ``2**depth``.
    base_filters: filters of the full-resolution block, doubled at each level down.
    normalization: ``"batch"``, ``"group"`` (8 groups or fewer) or ``"none"``.
    dropout: dropout rate after every block (0 disables it).
    skip_connections: concatenate encoder features into the decoder (the U in U-Net).
    lon_periodic: wrap-around padding along longitude for global grids.
    kernel_size: side of the square convolution windows.
    conv_impl: ``"xla"`` (``lax.conv_general_dilated``, the faster one measured on CPU) or
        ``"patches"`` (im2col + one matmul); same parameters and outputs, see
        ``climml.models.conv``.
    """

    name: str = "unet"
    depth: int = 3
    base_filters: int = 16
    normalization: str = "batch"
    dropout: float = 0.0
    skip_connections: bool = True
    lon_periodic: bool = False
    kernel_size: int = 3
    conv_impl: str = "xla"


def _norm(kind: str, features: int, rngs: nnx.Rngs) -> nnx.Module | None:
    if kind == "batch":
        return nnx.BatchNorm(features, momentum=0.9, rngs=rngs)
    if kind == "group":
        return nnx.GroupNorm(features, num_groups=min(8, features), rngs=rngs)
    return None


class ConvBlock(nnx.Module):
    """Two (conv -> norm -> ReLU) layers, then dropout: (B, H, W, c_in) -> (B, H, W, c_out)."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig, rngs: nnx.Rngs):
        bias = cfg.normalization == "none"  # a norm layer's offset makes the conv bias redundant
        k = (cfg.kernel_size, cfg.kernel_size)
        opts = dict(use_bias=bias, lon_periodic=cfg.lon_periodic, conv_impl=cfg.conv_impl)
        self.conv1 = Conv(c_in, c_out, k, **opts, rngs=rngs)
        self.norm1 = _norm(cfg.normalization, c_out, rngs)
        self.conv2 = Conv(c_out, c_out, k, **opts, rngs=rngs)
        self.norm2 = _norm(cfg.normalization, c_out, rngs)
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs) if cfg.dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            x = conv(x)
            x = norm(x) if norm is not None else x
            x = jax.nn.relu(x)
        return self.dropout(x) if self.dropout is not None else x


def max_pool_2x(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2: (B, H, W, C) -> (B, H/2, W/2, C), H and W even."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Upsample2x(nnx.Module):
    """Transposed 2x2 convolution with stride 2: (B, H, W, c_in) -> (B, 2H, 2W, c_out).

    Written as one matmul to ``4 * c_out`` channels followed by a depth-to-space reshape, which
    is the same linear map as ``ConvTranspose2d(c_in, c_out, 2, stride=2)`` (the windows of a
    stride-2 2x2 transposed conv do not overlap) but runs as a single dense matmul.
    """

    def __init__(self, c_in: int, c_out: int, rngs: nnx.Rngs):
        self.proj = nnx.Linear(c_in, 4 * c_out, use_bias=False, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((c_out,)))
        self.c_out = c_out

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        y = self.proj(x).reshape(b, h, w, 2, 2, self.c_out)
        y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.c_out)
        return y + self.bias[...]


class UNet(nnx.Module):
    """U-Net mapping (B, T, H, W, C) inputs to per-pixel outputs.

    Input steps and channels are stacked into T*C features. Output: logits
    (B, leads, H, W, num_classes) when ``num_classes`` is set, else values (B, leads, H, W).
    """

    def __init__(
        self,
        cfg: UNetConfig,
        in_features: int,
        leads: int,
        num_classes: int | None,
        rngs: nnx.Rngs,
    ):
        self.depth = cfg.depth
        self.skip_connections = cfg.skip_connections
        self.leads, self.num_classes = leads, num_classes
        widths = [cfg.base_filters * 2**i for i in range(cfg.depth + 1)]
        ins = [in_features, *widths[:-2]]
        self.down = nnx.List([ConvBlock(ins[i], widths[i], cfg, rngs) for i in range(cfg.depth)])
        self.bottleneck = ConvBlock(widths[-2], widths[-1], cfg, rngs)
        self.up = nnx.List([Upsample2x(widths[i + 1], widths[i], rngs) for i in range(cfg.depth)])
        merged = [(2 if cfg.skip_connections else 1) * widths[i] for i in range(cfg.depth)]
        self.up_blocks = nnx.List(
            [ConvBlock(merged[i], widths[i], cfg, rngs) for i in range(cfg.depth)]
        )
        self.head = nnx.Linear(widths[0], leads * (num_classes or 1), rngs=rngs)

    def encode(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """(B, H, W, F) features -> bottleneck (B, H/2^d, W/2^d, F_d) and per-level skips."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = max_pool_2x(x)
        return self.bottleneck(x), skips

    def decode(self, x: jax.Array, skips: list[jax.Array]) -> jax.Array:
        """Bottleneck and skips (finest first) -> (B, H, W, base_filters) features."""
        for level in reversed(range(self.depth)):
            x = self.up[level](x)
            if self.skip_connections:
                x = jnp.concatenate([x, skips[level]], axis=-1)
            x = self.up_blocks[level](x)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        factor = 2**self.depth
        if h % factor or w % factor:
            want = f"multiples of 2**depth={factor}"
            raise DataError(expected("x grid (lat, lon)", want, (h, w)))
        feats = x.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)
        bottleneck, skips = self.encode(feats)
        y = self.head(self.decode(bottleneck, skips))  # (B, H, W, leads * classes)
        y = y.reshape(b, h, w, self.leads, self.num_classes or 1).transpose(0, 3, 1, 2, 4)
        return y if self.num_classes else y[..., 0]


def _check(cfg: UNetConfig, spec: IOSpec) -> tuple[int, int]:
    """Validate ``cfg`` against ``spec``; return (input features T*C, leads)."""
    if cfg.depth < 1:
        raise ConfigError(expected("model.depth", "an integer >= 1", cfg.depth))
    if cfg.base_filters < 1:
        raise ConfigError(expected("model.base_filters", "an integer >= 1", cfg.base_filters))
    if cfg.normalization not in NORMALIZATIONS:
        raise ConfigError(expected("model.normalization", NORMALIZATIONS, cfg.normalization))
    if cfg.conv_impl not in CONV_IMPLS:
        raise ConfigError(expected("model.conv_impl", CONV_IMPLS, cfg.conv_impl))
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(expected("model.dropout", "a rate in [0, 1)", cfg.dropout))
    if cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
        raise ConfigError(expected("model.kernel_size", "an odd integer >= 1", cfg.kernel_size))
    if len(spec.input_shape) != 4:
        raise ConfigError(expected("input shape", "(steps, lat, lon, channels)", spec.input_shape))
    steps, h, w, channels = spec.input_shape
    factor = 2**cfg.depth
    if h % factor or w % factor:
        raise ConfigError(
            expected("model.depth", f"2**depth dividing the grid {(h, w)}", f"2**{cfg.depth}")
        )
    out = spec.output_shape
    if tuple(out[1:3]) != (h, w):
        raise ConfigError(expected("output grid", (h, w), tuple(out[1:3])))
    return steps * channels, out[0]


@register("unet", UNetConfig)
def build_unet(cfg: UNetConfig, spec: IOSpec, rngs: nnx.Rngs) -> UNet:
    """Build a :class:`UNet` for ``spec``: input (T, lat, lon, C), output (leads, lat, lon[, K])."""
    in_features, leads = _check(cfg, spec)
    return UNet(cfg, in_features, leads, spec.num_classes, rngs)
