"""Convolutional autoencoder (optionally variational) for compression and anomaly detection.

The encoder halves the grid once per entry of ``filters`` (stride-2 convolutions) and maps the
result to a ``latent_dim`` vector; the decoder mirrors it back to the grid. Trained to reproduce
normal fields, it reproduces unusual structures badly: the per-pixel squared reconstruction
error is an anomaly map (Sakurada & Yairi 2014); ``climml.tasks.reconstruction`` writes it.

With ``variational=True`` the encoder outputs a mean and log-variance; in training mode the
latent is sampled with the reparameterization trick from the ``dropout`` RNG stream (the stream
the train step reseeds every step) and the KL divergence to N(0, I), times ``kl_weight``, is kept
in an :class:`AuxLoss` variable that :func:`aux_loss` returns for adding to the training loss
(Kingma & Welling 2014). In eval mode the latent is the mean: predictions are deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from climml.errors import ConfigError, DataError, expected
from climml.models._aux_loss import AuxLoss
from climml.models.conv import Conv
from climml.models.registry import register
from climml.models.unet import Upsample2x
from climml.types import IOSpec


@dataclass(frozen=True)
class AutoencoderConfig:
    """Autoencoder hyperparameters (the YAML ``model:`` section with ``name: autoencoder``).

    filters: channels of each stride-2 encoder level (mirrored by the decoder); the grid must
        be divisible by ``2 ** len(filters)``.
    latent_dim: size of the bottleneck vector (the compression).
    variational: a VAE: Gaussian latent, KL term (``kl_weight``) in :func:`aux_loss`.
    lon_periodic: wrap-around padding along longitude for global grids.
    """

    name: str = "autoencoder"
    filters: tuple[int, ...] = (16, 32, 64)
    latent_dim: int = 32
    variational: bool = False
    kl_weight: float = 1e-3
    lon_periodic: bool = False


def kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over the latent, averaged over the batch."""
    per_sample = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
    return jnp.mean(per_sample)


class Autoencoder(nnx.Module):
    """(B, T, H, W, C) -> (B, leads, H, W): reconstructs the target field through a latent."""

    def __init__(self, cfg: AutoencoderConfig, spec: IOSpec, rngs: nnx.Rngs):
        steps, h, w, channels = spec.input_shape
        self.factor = 2 ** len(cfg.filters)
        self.coarse = (h // self.factor, w // self.factor, cfg.filters[-1])
        self.leads = spec.output_shape[0]
        self.variational = cfg.variational
        self.kl_weight = cfg.kl_weight
        wrap = cfg.lon_periodic
        c_in, down = steps * channels, []
        for f in cfg.filters:
            down.append(Conv(c_in, f, (3, 3), strides=2, lon_periodic=wrap, rngs=rngs))
            down.append(Conv(f, f, (3, 3), lon_periodic=wrap, rngs=rngs))
            c_in = f
        self.down = nnx.List(down)
        flat = math.prod(self.coarse)
        self.to_latent = nnx.Linear(flat, cfg.latent_dim * (2 if cfg.variational else 1), rngs=rngs)
        self.from_latent = nnx.Linear(cfg.latent_dim, flat, rngs=rngs)
        widths = list(cfg.filters[::-1]) + [cfg.filters[0]]
        up = []
        for c_hi, c_lo in zip(widths[:-1], widths[1:], strict=True):
            up.append(Upsample2x(c_hi, c_lo, rngs))
            up.append(Conv(c_lo, c_lo, (3, 3), lon_periodic=wrap, rngs=rngs))
        self.up = nnx.List(up)
        self.head = nnx.Linear(cfg.filters[0], self.leads, rngs=rngs)
        self.sampling = nnx.Rngs(dropout=rngs.dropout()) if cfg.variational else None
        self.kl = AuxLoss(jnp.zeros(())) if cfg.variational else None
        self.deterministic = False  # set by model.eval() / model.train(), as for nnx.Dropout

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """(B, T, H, W, C) -> latent mean (B, latent_dim) and log-variance (VAE) or None."""
        b, t, h, w, c = x.shape
        if h % self.factor or w % self.factor:
            raise DataError(expected("x grid (lat, lon)", f"multiples of {self.factor}", (h, w)))
        z = x.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)
        for layer in self.down:
            z = jax.nn.relu(layer(z))
        z = self.to_latent(z.reshape(b, -1))
        if self.variational:
            mean, log_var = jnp.split(z, 2, axis=-1)
            return mean, log_var
        return z, None

    def decode(self, z: jax.Array) -> jax.Array:
        """Latent (B, latent_dim) -> reconstruction (B, leads, H, W)."""
        y = jax.nn.relu(self.from_latent(z)).reshape(z.shape[0], *self.coarse)
        for layer in self.up:
            y = jax.nn.relu(layer(y)) if isinstance(layer, Conv) else layer(y)
        return self.head(y).transpose(0, 3, 1, 2)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, log_var = self.encode(x)
        if not self.variational:
            return self.decode(mean)
        self.kl[...] = self.kl_weight * kl_to_standard_normal(mean, log_var)
        if self.deterministic:
            return self.decode(mean)
        noise = jax.random.normal(self.sampling.dropout(), mean.shape, mean.dtype)
        return self.decode(mean + jnp.exp(0.5 * log_var) * noise)


def _check(cfg: AutoencoderConfig, spec: IOSpec) -> None:
    if not cfg.filters or min(cfg.filters) < 1:
        raise ConfigError(expected("model.filters", "one or more positive ints", cfg.filters))
    if cfg.latent_dim < 1:
        raise ConfigError(expected("model.latent_dim", "an integer >= 1", cfg.latent_dim))
    if cfg.kl_weight < 0:
        raise ConfigError(expected("model.kl_weight", ">= 0", cfg.kl_weight))
    if len(spec.input_shape) != 4:
        raise ConfigError(expected("input shape", "(steps, lat, lon, channels)", spec.input_shape))
    h, w = spec.input_shape[1:3]
    factor = 2 ** len(cfg.filters)
    if h % factor or w % factor:
        want = f"2**len(filters) dividing the grid {(h, w)}"
        raise ConfigError(expected("model.filters", want, f"{len(cfg.filters)} levels"))
    if tuple(spec.output_shape[1:]) != (h, w) or spec.num_classes is not None:
        raise ConfigError(expected("output shape", f"(leads, {h}, {w})", spec.output_shape))


@register("autoencoder", AutoencoderConfig)
def build_autoencoder(cfg: AutoencoderConfig, spec: IOSpec, rngs: nnx.Rngs) -> Autoencoder:
    """Build an :class:`Autoencoder`: input (T, lat, lon, C), output (leads, lat, lon)."""
    _check(cfg, spec)
    return Autoencoder(cfg, spec, rngs)
