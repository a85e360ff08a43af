"""Generative radar nowcaster after Ravuri et al. (2021, Nature), "DGMR": a conditional GAN whose
generator turns the last radar frames and a Gaussian latent into sharp future rain, and whose
ensembles come from several latent draws.

Generator (``NowcastGenerator``), for a crop of ``H x W`` pixels (both divisible by 32):

* context-conditioning stack: each input frame goes through space-to-depth (2x) and four
  downsampling residual blocks (``DBlock``); at each of the 4 scales (H/4 ... H/32) the frames'
  features are concatenated and mixed by a 3x3 convolution: the ConvGRU initial states.
* latent-conditioning stack: Gaussian noise at H/32 x W/32 (one draw per example), a 3x3
  convolution, residual blocks (``LBlock``) raising the channels, spatial self-attention and a
  last residual block.
* sampler: at every lead time, a ConvGRU per scale, coarsest first, each followed by a 1x1
  convolution and an upsampling residual block (``GBlock``) whose output feeds the next finer
  ConvGRU; unrolled over the leads with ``jax.lax.scan``; the finest output is depth-to-space'd
  (2x) to the full grid: a log-ratio ``delta`` per pixel and lead against the last observed
  frame, rain ``max((last + 0.1) * exp(delta) - 0.1, 0)`` in mm/h (dry stays exactly dry
  unless ``delta`` grows it). The paper emits rain directly; a
  fresh spectrally normalized stack emits nearly constant fields (signals shrink layer by
  layer, and the paper's batch norm is left out), which minutes of CPU training never get past:
  under the grid-cell loss on mostly dry radar Adam walks a constant output to zero rain. Anchored
  to the last frame, the untrained generator is persistence and learns the change.

Discriminators (``NowcastDiscriminator``), on whole sequences ``(B, T + L, H, W)`` of rain
(history and future) in mm/h, which they see as ``ln(1 + R / 0.1)`` (see ``_log_rain``):

* spatial: ``disc_frames`` lead frames drawn without replacement per example, each 2x average
  pooled, space-to-depth'd and scored alone by 2-D residual blocks; scores summed over frames.
* temporal: a random ``disc_crop`` x ``disc_crop`` crop of the sequence, scored by 3-D
  residual blocks over (time, y, x), then 2-D blocks per frame; scores summed over frames.

Every convolution and dense layer of both networks is spectrally normalized as in the paper
(``SNConv``, ``SNDense``: one power iteration per training call, the singular-vector estimate
kept as state). Where the paper's sampler has batch norm (before each activation of an
upsampling block) this one standardizes each example over ``(H, W, C)`` instead (layer norm,
Ba et al. 2016): batch statistics would couple the ensemble members and the loader's padding
rows. The normalization is what keeps the latent path alive: spectrally normalized layers
never amplify, so without it the ConvGRU states, relus and poolings shrink the noise's share of
the output to ~2 % at init (member spread ~1e-5 mm/h after CPU training); with it the latent
accounts for ~30 % of the fresh generator's log-ratio, and the training's scoring-rule term
(``crps_weight``) calibrates that spread. Sizes come from ``NowcastGANConfig``:
``base_channels=24``, 4 -> 18 frames on 256 x 256 crops is the paper's generator (``PAPER``);
the default is a size that trains on a CPU in minutes. The training hyperparameters (learning
rates, discriminator steps, regularizer weight) live here too, since only this family uses them
(``climml.train.adversarial``).

Shapes: ``generator(x (B, T, H, W, C), key, last (B, H, W) mm/h) -> (B, L, H, W)`` mm/h;
``sample(x, last, keys (M,)) -> (B, M, L, H, W)``, one member per key in one ``vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from climml.errors import ConfigError, expected
from climml.models.conv import conv_function
from climml.models.registry import register
from climml.types import IOSpec

GRID_MULTIPLE = 32  # space-to-depth 2 and four 2x downsamplings
RAIN_OFFSET = 0.1  # mm/h: the generator scales last + offset, so rain can start in dry pixels


@dataclass(frozen=True)
class NowcastGANConfig:
    """DGMR-style GAN nowcaster (the YAML ``model:`` section with ``name: nowcast_gan``).

    base_channels: ``c``; per-frame context features have 2c, 4c, 8c, 16c channels at H/4 ...
        H/32, the ConvGRU states T*c ... 8*T*c (paper: 24).
    latent_channels: channels of the H/32 Gaussian noise (paper: 8).
    disc_channels: channels of the discriminators' first block, doubled per block (paper: 48).
    disc_frames: lead frames the spatial discriminator scores per example (paper: 8 of 18).
    disc_crop: side of the temporal discriminator's random crop (paper: 128); clipped to the
        grid.
    attention: spatial self-attention in the latent stack.
    spectral_norm: spectral normalization of every layer (paper: yes).
    conv_impl: ``"patches"`` (im2col + one matmul, 2.2x faster per CPU training step at the CPU
        size than XLA's convolutions) or ``"xla"``; same parameters (``climml.models.conv``).
    lr_generator / lr_discriminator: Adam learning rates (paper: 5e-5 / 2e-4).
    beta1 / beta2: Adam's moment decays (paper: 0 / 0.999).
    disc_steps: discriminator updates per generator update (paper: 2).
    reg_weight: lambda of the grid-cell regularizer (paper: 20).
    reg_samples: generator samples per example whose mean the regularizer sees (paper: 6).
    crps_weight: weight of the fair CRPS of those samples in the generator loss (not in the
        paper; Pacchiardi & Dutta 2022): it keeps the ensemble from collapsing onto one member
        (``climml.train.adversarial.fair_crps_loss``); needs ``reg_samples >= 2``.
    max_weight: intensity weights are the observed rain clipped to [1, max_weight] mm/h
        (paper: 24).
    """

    name: str = "nowcast_gan"
    base_channels: int = 4
    latent_channels: int = 8
    disc_channels: int = 8
    disc_frames: int = 4
    disc_crop: int = 32
    attention: bool = True
    spectral_norm: bool = True
    conv_impl: str = "patches"
    lr_generator: float = 5e-5
    lr_discriminator: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    disc_steps: int = 2
    reg_weight: float = 20.0
    reg_samples: int = 2
    crps_weight: float = 0.0
    max_weight: float = 24.0


PAPER = NowcastGANConfig(
    base_channels=24, disc_channels=48, disc_frames=8, disc_crop=128, reg_samples=6
)
"""The paper's sizes (with ``data.input_steps: 4``, 18 leads and 256 x 256 crops)."""


# --------------------------------------------------------------------------- layers


class SigmaU(nnx.Variable):
    """The power iteration's estimate of a weight's leading right singular vector (state)."""


class _Spectral(nnx.Module):
    """A weight ``w`` (``(..., out)``) divided by its largest singular value, estimated by one
    power iteration per training call on the ``(-1, out)`` matrix (Miyato et al., 2018)."""

    def _init_sn(self, out: int, enabled: bool, rngs: nnx.Rngs) -> None:
        self.enabled = enabled
        self.update_sigma = True  # False in eval mode: the estimate stays fixed
        u = jax.random.normal(rngs.params(), (out,))
        self.u = SigmaU(u / jnp.linalg.norm(u)) if enabled else None

    def normalized(self, w: jax.Array) -> jax.Array:
        if not self.enabled:
            return w
        mat = w.reshape(-1, w.shape[-1])
        u = self.u[...]
        v = _unit(mat @ u)
        u_new = lax.stop_gradient(_unit(mat.T @ v))
        v = lax.stop_gradient(v)
        if self.update_sigma:
            self.u[...] = u_new
        sigma = v @ mat @ u_new
        return w / sigma


def _unit(v: jax.Array) -> jax.Array:
    return v / (jnp.linalg.norm(v) + 1e-12)


class SNConv(_Spectral):
    """N-D channels-last convolution (stride 1, "SAME") with spectral normalization.

    ``weights()`` returns the normalized kernel and the bias once (updating the singular-vector
    estimate), ``apply(weights, x)`` is pure: the sampler computes the weights before its
    ``lax.scan`` and reuses them at every lead.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, *, dims: int = 2, sn: bool, rngs):
        shape = (kernel,) * dims + (c_in, c_out)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((c_out,)))
        self.dims = dims
        self._init_sn(c_out, sn, rngs)
        self.conv_impl = "patches"  # NowcastGAN sets model.conv_impl

    def weights(self) -> tuple[jax.Array, jax.Array]:
        return self.normalized(self.kernel[...]), self.bias[...]

    def apply(self, weights: tuple[jax.Array, jax.Array], x: jax.Array) -> jax.Array:
        kernel, bias = weights
        spatial = "DHW"[-self.dims :]
        numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        y = conv_function(self.conv_impl)(
            x, kernel.astype(x.dtype), (1,) * self.dims, "SAME", dimension_numbers=numbers
        )
        return y + bias.astype(x.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply(self.weights(), x)


class SNDense(_Spectral):
    """Dense layer with spectral normalization."""

    def __init__(self, c_in: int, c_out: int, *, sn: bool, rngs):
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (c_in, c_out)))
        self.bias = nnx.Param(jnp.zeros((c_out,)))
        self._init_sn(c_out, sn, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.normalized(self.kernel[...]) + self.bias[...]


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """``(..., H, W, C) -> (..., H/f, W/f, f*f*C)``."""
    *lead, h, w, c = x.shape
    x = x.reshape(*lead, h // factor, factor, w // factor, factor, c)
    x = jnp.moveaxis(x, -4, -3)  # (..., H/f, W/f, f, f, C)
    return x.reshape(*lead, h // factor, w // factor, factor * factor * c)


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """Inverse of ``space_to_depth``: ``(..., H, W, f*f*C) -> (..., H*f, W*f, C)``."""
    *lead, h, w, c = x.shape
    x = x.reshape(*lead, h, w, factor, factor, c // (factor * factor))
    x = jnp.moveaxis(x, -3, -4)  # (..., H, f, W, f, C)
    return x.reshape(*lead, h * factor, w * factor, c // (factor * factor))


def _pool(x: jax.Array, dims: int) -> jax.Array:
    """2x average pooling over the last ``dims`` spatial axes of a channels-last array."""
    window = (1,) + (2,) * dims + (1,)
    return lax.reduce_window(x, 0.0, lax.add, window, window, "VALID") / 2**dims


def _layer_norm(x: jax.Array) -> jax.Array:
    """``(B, H, W, C)`` standardized per example over ``(H, W, C)``, no learned scale (the
    spectrally normalized convolution after it has its own)."""
    mean = x.mean(axis=(-3, -2, -1), keepdims=True)
    var = jnp.square(x - mean).mean(axis=(-3, -2, -1), keepdims=True)
    return (x - mean) * lax.rsqrt(var + 1e-5)


def _upsample(x: jax.Array) -> jax.Array:
    """2x nearest-neighbour upsampling of ``(B, H, W, C)``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class DBlock(nnx.Module):
    """Residual block that (optionally) halves the grid: ``relu -> conv3 -> relu -> conv3 ->
    pool`` plus a 1x1-convolved, pooled shortcut. ``dims`` 2 or 3 (3-D: time too)."""

    def __init__(self, c_in, c_out, *, dims=2, down=True, first_relu=True, sn, rngs):
        self.conv1 = SNConv(c_in, c_out, 3, dims=dims, sn=sn, rngs=rngs)
        self.conv2 = SNConv(c_out, c_out, 3, dims=dims, sn=sn, rngs=rngs)
        self.skip = SNConv(c_in, c_out, 1, dims=dims, sn=sn, rngs=rngs)
        self.dims, self.down, self.first_relu = dims, down, first_relu

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(x) if self.first_relu else x
        h = self.conv2(jax.nn.relu(self.conv1(h)))
        s = self.skip(x)
        if self.down:
            h, s = _pool(h, self.dims), _pool(s, self.dims)
        return h + s


class LBlock(nnx.Module):
    """Latent-stack residual block raising the channels: ``relu -> conv3 -> relu -> conv3``
    plus the input concatenated with a 1x1 convolution of it (the extra channels)."""

    def __init__(self, c_in, c_out, *, sn, rngs):
        self.conv1 = SNConv(c_in, c_out, 3, sn=sn, rngs=rngs)
        self.conv2 = SNConv(c_out, c_out, 3, sn=sn, rngs=rngs)
        self.extra = SNConv(c_in, c_out - c_in, 1, sn=sn, rngs=rngs) if c_out > c_in else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv2(jax.nn.relu(self.conv1(jax.nn.relu(x))))
        s = x if self.extra is None else jnp.concatenate([x, self.extra(x)], axis=-1)
        return h + s


class Attention(nnx.Module):
    """Spatial self-attention over the H x W positions, added with a learned gain (0 at init,
    so the block starts as the identity)."""

    def __init__(self, c: int, *, sn, rngs):
        inner = max(c // 8, 1)
        self.q = SNConv(c, inner, 1, sn=sn, rngs=rngs)
        self.k = SNConv(c, inner, 1, sn=sn, rngs=rngs)
        self.v = SNConv(c, c // 2 or 1, 1, sn=sn, rngs=rngs)
        self.out = SNConv(c // 2 or 1, c, 1, sn=sn, rngs=rngs)
        self.gain = nnx.Param(jnp.zeros(()))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        q = self.q(x).reshape(b, h * w, -1)
        k = self.k(x).reshape(b, h * w, -1)
        v = self.v(x).reshape(b, h * w, -1)
        att = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k), axis=-1)
        o = jnp.einsum("bqk,bkc->bqc", att, v).reshape(b, h, w, -1)
        return x + self.gain[...] * self.out(o)


class GBlock(nnx.Module):
    """Upsampling residual block: ``norm -> relu -> up 2x -> conv3 -> norm -> relu -> conv3``
    plus an upsampled, 1x1-convolved shortcut (``norm``: per-example layer norm, where the paper
    has batch norm). Pure ``apply`` over precomputed ``weights()`` (see ``SNConv``)."""

    def __init__(self, c_in, c_out, *, sn, rngs):
        self.conv1 = SNConv(c_in, c_out, 3, sn=sn, rngs=rngs)
        self.conv2 = SNConv(c_out, c_out, 3, sn=sn, rngs=rngs)
        self.skip = SNConv(c_in, c_out, 1, sn=sn, rngs=rngs)

    def weights(self):
        return self.conv1.weights(), self.conv2.weights(), self.skip.weights()

    def apply(self, w, x: jax.Array) -> jax.Array:
        up = _upsample(x)
        h = self.conv1.apply(w[0], _upsample(jax.nn.relu(_layer_norm(x))))
        h = self.conv2.apply(w[1], jax.nn.relu(_layer_norm(h)))
        return h + self.skip.apply(w[2], up)


class ConvGRU(nnx.Module):
    """Convolutional GRU cell (3x3 gates over the input and state concatenated)."""

    def __init__(self, c_in, c_hidden, *, sn, rngs):
        self.gates = SNConv(c_in + c_hidden, 2 * c_hidden, 3, sn=sn, rngs=rngs)
        self.candidate = SNConv(c_in + c_hidden, c_hidden, 3, sn=sn, rngs=rngs)

    def weights(self):
        return self.gates.weights(), self.candidate.weights()

    def apply(self, w, x: jax.Array, h: jax.Array) -> jax.Array:
        read, update = jnp.split(
            jax.nn.sigmoid(self.gates.apply(w[0], jnp.concatenate([x, h], -1))), 2, axis=-1
        )
        cand = jnp.tanh(self.candidate.apply(w[1], jnp.concatenate([x, read * h], -1)))
        return update * h + (1.0 - update) * cand


# --------------------------------------------------------------------------- generator


class NowcastGenerator(nnx.Module):
    """``(x (B, T, H, W, C) normalized, key, last (B, H, W) mm/h) -> rain (B, L, H, W)`` in
    mm/h (>= 0), relative to the last observed frame ``last``; see the module doc."""

    def __init__(self, cfg: NowcastGANConfig, spec: IOSpec, rngs: nnx.Rngs):
        steps, h, w, channels = _check_spec(spec)
        sn, c = cfg.spectral_norm, cfg.base_channels
        self.leads = spec.output_shape[0]
        self.latent_channels = cfg.latent_channels
        per_frame = [2 * c, 4 * c, 8 * c, 16 * c]  # H/4 ... H/32
        states = [steps * f // 2 for f in per_frame]  # T*c ... 8*T*c
        ins = [4 * channels, *per_frame[:-1]]
        self.context_blocks = nnx.List(
            [
                DBlock(a, b, first_relu=i > 0, sn=sn, rngs=rngs)
                for i, (a, b) in enumerate(zip(ins, per_frame, strict=True))
            ]
        )
        self.context_mix = nnx.List(
            [
                SNConv(steps * f, s, 3, sn=sn, rngs=rngs)
                for f, s in zip(per_frame, states, strict=True)
            ]
        )
        lat = cfg.latent_channels
        self.latent_in = SNConv(lat, lat, 3, sn=sn, rngs=rngs)
        blocks, width = [], lat
        for target in (c, 2 * c, 8 * c):  # paper: 8 -> 24 -> 48 -> 192 channels
            blocks.append(LBlock(width, max(target, width), sn=sn, rngs=rngs))
            width = max(target, width)
        self.latent_blocks = nnx.List(blocks)
        self.attention = Attention(width, sn=sn, rngs=rngs) if cfg.attention else None
        top = max(states[-1], width)  # paper: 768
        self.latent_out = LBlock(width, top, sn=sn, rngs=rngs)
        # Sampler, coarsest scale first: GRU inputs are the latent (coarsest) or the upsampled
        # output of the next coarser scale (states[i] channels).
        coarse_first = states[::-1]
        gru_in = [top, *coarse_first[1:]]
        self.grus = nnx.List(
            [ConvGRU(a, s, sn=sn, rngs=rngs) for a, s in zip(gru_in, coarse_first, strict=True)]
        )
        self.gru_out = nnx.List([SNConv(s, s, 1, sn=sn, rngs=rngs) for s in coarse_first])
        outs = [*coarse_first[1:], max(states[0] // 2, 1)]
        self.ups = nnx.List(
            [GBlock(s, o, sn=sn, rngs=rngs) for s, o in zip(coarse_first, outs, strict=True)]
        )
        self.head = SNConv(outs[-1], 4, 1, sn=sn, rngs=rngs)

    def context(self, x: jax.Array) -> list[jax.Array]:
        """ConvGRU initial states at H/4 ... H/32 from ``x (B, T, H, W, C)``."""
        b, t = x.shape[:2]
        h = space_to_depth(x.reshape(b * t, *x.shape[2:]), 2)
        out = []
        for block, mix in zip(self.context_blocks, self.context_mix, strict=True):
            h = block(h)
            frames = h.reshape(b, t, *h.shape[1:])  # frames side by side in channels
            stacked = jnp.moveaxis(frames, 1, -2).reshape(b, *h.shape[1:3], -1)
            out.append(jax.nn.relu(mix(stacked)))
        return out

    def latent(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """The latent stack's output from one Gaussian draw per example: noise of ``(B, H/32,
        W/32, latent_channels)`` for inputs ``shape (B, T, H, W, C)``, so a generator trained on
        crops forecasts any grid whose sides are multiples of 32."""
        b, _, h, w, _ = shape
        grid = (h // GRID_MULTIPLE, w // GRID_MULTIPLE)
        z = jax.random.normal(key, (b, *grid, self.latent_channels))
        h = self.latent_in(z)
        for block in self.latent_blocks:
            h = block(h)
        if self.attention is not None:
            h = self.attention(h)
        return self.latent_out(h)

    def __call__(self, x: jax.Array, key: jax.Array, last: jax.Array) -> jax.Array:
        states = self.context(x)[::-1]  # coarsest first
        z = self.latent(key, x.shape)
        # Weights once, outside the scan: the spectral-norm state updates once per call.
        weights = (
            [g.weights() for g in self.grus],
            [c.weights() for c in self.gru_out],
            [u.weights() for u in self.ups],
            self.head.weights(),
        )
        grus, gru_out, ups, head = self.grus, self.gru_out, self.ups, self.head

        def lead_step(hidden, _):
            w_gru, w_out, w_up, w_head = weights
            inp, new_hidden = z, []
            for i in range(len(hidden)):
                h = grus[i].apply(w_gru[i], inp, hidden[i])
                new_hidden.append(h)
                inp = ups[i].apply(w_up[i], gru_out[i].apply(w_out[i], h))
            delta = depth_to_space(head.apply(w_head, jax.nn.relu(inp)), 2)[..., 0]
            # capped: exp(8) = 3000x the last frame is beyond any storm's growth in a lead
            scaled = (last + RAIN_OFFSET) * jnp.exp(jnp.minimum(delta, 8.0)) - RAIN_OFFSET
            return new_hidden, jax.nn.relu(scaled)

        _, frames = lax.scan(lead_step, states, None, length=self.leads)
        return jnp.moveaxis(frames, 0, 1)  # (B, L, H, W)


# --------------------------------------------------------------------------- discriminators


class _Scorer2D(nnx.Module):
    """Per-frame score: space-to-depth 2, downsampling blocks, ReLU, sum over space, dense."""

    def __init__(self, c_in: int, widths: Sequence[int], *, sn, rngs):
        ins = [4 * c_in, *widths[:-1]]
        self.blocks = nnx.List(
            [
                DBlock(a, b, first_relu=i > 0, sn=sn, rngs=rngs)
                for i, (a, b) in enumerate(zip(ins, widths, strict=True))
            ]
        )
        self.dense = SNDense(widths[-1], 1, sn=sn, rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        """``(N, H, W, C) -> (N,)``."""
        h = space_to_depth(frames, 2)
        for block in self.blocks:
            h = block(h)
        return self.dense(jnp.sum(jax.nn.relu(h), axis=(1, 2)))[:, 0]


class NowcastDiscriminator(nnx.Module):
    """Spatial and temporal discriminators: ``(seq (B, T + L, H, W) rain, key) ->
    (spatial (B,), temporal (B,))`` scores (higher: judged real)."""

    def __init__(self, cfg: NowcastGANConfig, spec: IOSpec, rngs: nnx.Rngs):
        steps, h, w, _ = _check_spec(spec)
        sn, d = cfg.spectral_norm, cfg.disc_channels
        self.steps, self.leads = steps, spec.output_shape[0]
        self.frames = min(cfg.disc_frames, self.leads)
        # space-to-depth, two 3-D and one 2-D pooling: a multiple of 16
        self.crop = min(cfg.disc_crop, h, w) // 16 * 16
        if self.crop < 16:
            raise ConfigError(expected("model.disc_crop", ">= 16 pixels", cfg.disc_crop))
        if steps + self.leads < 4:  # the 3-D blocks halve time twice
            raise ConfigError(expected("data.input_steps + leads", ">= 4", steps + self.leads))
        # Spatial: frames pooled 2x, then 2x s2d: H/4 in; 4 blocks down to H/64 (>= 1 pixel).
        depth = max(1, min(4, (min(h, w) // 4).bit_length() - 1))
        self.spatial = _Scorer2D(1, [d * 2**i for i in range(depth)], sn=sn, rngs=rngs)
        self.temporal3d = nnx.List(
            [
                DBlock(4, d, dims=3, first_relu=False, sn=sn, rngs=rngs),
                DBlock(d, 2 * d, dims=3, sn=sn, rngs=rngs),
            ]
        )
        self.temporal2d = nnx.List(
            [
                DBlock(2 * d, 4 * d, sn=sn, rngs=rngs),
                DBlock(4 * d, 8 * d, down=False, sn=sn, rngs=rngs),
            ]
        )
        self.temporal_dense = SNDense(8 * d, 1, sn=sn, rngs=rngs)

    def __call__(self, seq: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.score_spatial(seq, key), self.score_temporal(seq, key)

    def score_spatial(self, seq: jax.Array, key: jax.Array) -> jax.Array:
        seq = _log_rain(seq)
        b = seq.shape[0]
        keys = jax.random.split(jax.random.fold_in(key, 0), b)  # a subset per example
        pick = jax.vmap(lambda k: jax.random.permutation(k, self.leads)[: self.frames])(keys)
        future = seq[:, self.steps :]
        frames = jnp.take_along_axis(future, pick[:, :, None, None], axis=1)  # (B, F, H, W)
        frames = _pool(frames.reshape(b * self.frames, *frames.shape[2:], 1), 2)
        return self.spatial(frames).reshape(b, self.frames).sum(axis=1)

    def score_temporal(self, seq: jax.Array, key: jax.Array) -> jax.Array:
        seq = _log_rain(seq)
        b, t, h, w = seq.shape
        ky, kx = jax.random.split(jax.random.fold_in(key, 1))
        y0 = jax.random.randint(ky, (), 0, h - self.crop + 1)
        x0 = jax.random.randint(kx, (), 0, w - self.crop + 1)
        crop = lax.dynamic_slice(seq, (0, 0, y0, x0), (b, t, self.crop, self.crop))
        x = space_to_depth(crop[..., None], 2)  # (B, T, c/2, c/2, 4)
        for block in self.temporal3d:
            x = block(x)  # pools time too: T -> T / 4 (floored)
        bt = x.shape[0] * x.shape[1]
        x = x.reshape(bt, *x.shape[2:])
        for block in self.temporal2d:
            x = block(x)
        scores = self.temporal_dense(jnp.sum(jax.nn.relu(x), axis=(1, 2)))[:, 0]
        return scores.reshape(b, -1).sum(axis=1)


def _log_rain(rain: jax.Array) -> jax.Array:
    """``ln(1 + R / 0.1)`` of rain in mm/h: 0 when dry, ~5 at 15 mm/h. Radar rain is mostly
    dry with mean ~0.05 mm/h; on raw rates the first Adam steps (each weight and bias moves by
    ~lr) outgrow the discriminators' activations and kill their ReLUs, leaving constant scores
    (hinge loss 2.0) and no adversarial gradient."""
    return jnp.log1p(rain / RAIN_OFFSET)


# --------------------------------------------------------------------------- the pair


class NowcastGAN(nnx.Module):
    """Generator and discriminators of one GAN nowcaster; ``cfg`` keeps the training settings.

    ``model(x, key, last) -> (B, L, H, W)``: one sample; ``sample(x, last, keys) -> (B, M, L,
    H, W)``; ``last (B, H, W)``: the last observed rain, mm/h.
    """

    def __init__(self, cfg: NowcastGANConfig, spec: IOSpec, rngs: nnx.Rngs):
        _check_config(cfg, spec)
        self.cfg = cfg
        self.generator = NowcastGenerator(cfg, spec, rngs)
        self.discriminator = NowcastDiscriminator(cfg, spec, rngs)
        conv_function(cfg.conv_impl)  # a ConfigError naming model.conv_impl if unknown
        for _, sub in nnx.iter_graph(self):
            if isinstance(sub, SNConv):
                sub.conv_impl = cfg.conv_impl

    def __call__(self, x: jax.Array, key: jax.Array, last: jax.Array) -> jax.Array:
        return self.generator(x, key, last)

    def sample(self, x: jax.Array, last: jax.Array, keys: jax.Array) -> jax.Array:
        return sample(self.generator, x, last, keys)


def sample(
    generator: NowcastGenerator, x: jax.Array, last: jax.Array, keys: jax.Array
) -> jax.Array:
    """Ensemble ``(B, M, L, H, W)`` from ``M`` latent ``keys``, members in one ``vmap``. Every
    member normalizes with the same spectral-norm estimate; the module is not changed."""
    graphdef, state = nnx.split(generator)

    def one(state, key):  # a copy per member: its power-iteration update is discarded
        return nnx.merge(graphdef, state)(x, key, last)

    return jnp.moveaxis(jax.vmap(one, in_axes=(None, 0))(state, keys), 0, 1)


def set_sigma_updates(module: nnx.Module, on: bool) -> None:
    """Switch the power-iteration updates of every spectral-normalized layer in ``module``."""
    for _, sub in nnx.iter_graph(module):
        if isinstance(sub, _Spectral):
            sub.update_sigma = on


def _check_spec(spec: IOSpec) -> tuple[int, int, int, int]:
    if len(spec.input_shape) != 4 or len(spec.output_shape) != 3 or spec.num_classes:
        raise ConfigError(
            expected(
                "model 'nowcast_gan' input/output",
                "(T, H, W, C) -> (L, H, W) gridded rain",
                f"{spec.input_shape} -> {spec.output_shape}",
            )
        )
    steps, h, w, channels = spec.input_shape
    if spec.output_shape[1:] != (h, w) or h % GRID_MULTIPLE or w % GRID_MULTIPLE:
        raise ConfigError(
            expected(
                "model 'nowcast_gan' grid",
                f"input and target grids equal, sides divisible by {GRID_MULTIPLE}",
                f"{(h, w)} -> {spec.output_shape[1:]}",
            )
        )
    return steps, h, w, channels


def _check_config(cfg: NowcastGANConfig, spec: IOSpec) -> None:
    if cfg.max_weight < 1:
        raise ConfigError(expected("model.max_weight", ">= 1 (mm/h)", cfg.max_weight))
    if cfg.crps_weight and cfg.reg_samples < 2:
        raise ConfigError(
            expected("model.reg_samples", ">= 2 with model.crps_weight > 0", cfg.reg_samples)
        )
    if not 0 <= cfg.beta1 < 1 or not 0 <= cfg.beta2 < 1:
        raise ConfigError(expected("model.beta1/beta2", "in [0, 1)", (cfg.beta1, cfg.beta2)))
    if spec.input_shape[0] * cfg.base_channels < 2:
        raise ConfigError(
            expected("model.base_channels", ">= 1 with >= 2 input steps", cfg.base_channels)
        )


@register("nowcast_gan", NowcastGANConfig)
def build(cfg: NowcastGANConfig, spec: IOSpec, rngs: nnx.Rngs) -> NowcastGAN:
    return NowcastGAN(cfg, spec, rngs)


def paper_config(**overrides: Any) -> NowcastGANConfig:
    """``PAPER`` with ``overrides`` replaced."""
    return replace(PAPER, **overrides)
