"""Adversarial training of the GAN nowcaster (``climml.models.nowcast_gan``), after Ravuri et al.
(2021): hinge losses, a grid-cell regularizer, separate Adam optimizers, ``disc_steps``
discriminator updates per generator update; checkpointed and resumable like ``climml.train.fit``.

Losses, with ``D = D_spatial + D_temporal`` scores of whole sequences (history + future, mm/h):

* discriminator: ``mean relu(1 - D(real)) + mean relu(1 + D(fake))`` for each discriminator;
* generator: ``-mean D(fake)`` (the hinge applied to the discriminators' scores) plus
  ``reg_weight`` x the grid-cell regularizer ``|mean_s G(z_s) - y| * clip(y, 1, max_weight)``
  summed over leads and pixels, divided by ``L * H * W`` and averaged over the examples; the
  mean is over ``reg_samples`` generator samples per example; plus ``crps_weight`` x the fair
  CRPS of those samples, weighted and normalized alike (``fair_crps_loss``): the regularizer on
  the mean is blind to the members' spread and the adversarial term alone lets a conditional
  generator ignore its noise, so the spread collapses; a proper scoring rule over the members
  rewards the spread the data call for.

Choices that the public PyTorch port gets wrong and this module pins down (tests check them):
one latent draw per example (the noise has a batch axis), the generator is not differentiated in
the discriminator step (its sample is a ``stop_gradient`` constant and only the discriminator's
parameters get gradients), and the regularizer's weights and normalization are as above. The
real and fake sequences of a discriminator step go through the discriminators in one call, so
both are judged on the same random temporal crop.

The steps are pure jitted functions of a ``GANState`` pytree (both networks' parameters, their
spectral-norm state, both optimizer states and the step count): ``d_step(state, batch, key)``,
``g_step(state, batch, key)``. The batch they take is ``{"x": normalized inputs (B, T, H, W,
C), "history": past rain (B, T, H, W) mm/h, "y": future rain (B, L, H, W) mm/h, "y_valid",
"weight"}``; ``fit_gan`` makes it from a loader ``Batch`` with the run's normalizer
(``RainCodec``). Keys depend only on ``(seed, step)``, and a checkpoint records the loader
position, so a killed run resumes to the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from climml.config import TrainConfig
from climml.errors import CheckpointError, ConfigError, expected
from climml.models.nowcast_gan import NowcastGAN, NowcastGANConfig, sample, set_sigma_updates
from climml.train.checkpoint import Checkpointer
from climml.train.loop import FitResult, Progress
from climml.train.progress import step_bar

# --------------------------------------------------------------------------- losses


def _wmean(values: jax.Array, weight: jax.Array) -> jax.Array:
    return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def hinge_discriminator(real: jax.Array, fake: jax.Array, weight: jax.Array) -> jax.Array:
    """``mean relu(1 - real) + mean relu(1 + fake)`` over the examples (``weight`` 0: padding)."""
    return _wmean(jax.nn.relu(1.0 - real), weight) + _wmean(jax.nn.relu(1.0 + fake), weight)


def hinge_generator(fake: jax.Array, weight: jax.Array) -> jax.Array:
    """``-mean fake``: the generator raises the discriminator's scores of its samples."""
    return -_wmean(fake, weight)


def grid_cell_loss(
    samples: jax.Array, y: jax.Array, valid: jax.Array, weight: jax.Array, max_weight: float
) -> jax.Array:
    """Grid-cell regularizer: ``samples (S, B, L, H, W)`` averaged over ``S``, absolute error
    against ``y (B, L, H, W)`` weighted by ``clip(y, 1, max_weight)`` (mm/h), summed over the
    cells and divided by ``L * H * W``, then averaged over the examples. ``valid`` masks
    missing observations, ``weight (B,)`` padding rows."""
    err = jnp.abs(samples.mean(axis=0) - y) * jnp.clip(y, 1.0, max_weight) * valid
    per_example = err.reshape(err.shape[0], -1).sum(axis=1) / np.prod(y.shape[1:])
    return _wmean(per_example, weight)


def fair_crps_loss(
    samples: jax.Array, y: jax.Array, valid: jax.Array, weight: jax.Array, max_weight: float
) -> jax.Array:
    """Ensemble scoring-rule term: the fair CRPS of the ``S >= 2`` members ``samples (S, B, L,
    H, W)`` at each cell, ``mean_i |x_i - y| - sum_{i != j} |x_i - x_j| / (2 S (S - 1))``,
    weighted, summed and normalized like ``grid_cell_loss``.

    The CRPS is a proper scoring rule: its expectation is lowest when the members are draws
    from the predictive distribution of ``y``, so unlike the regularizer on the members' mean
    (indifferent to their spread) it rewards spread where the future is uncertain and penalizes
    it where it is not; the fair form (Ferro 2014) is unbiased for any ``S``. Training a
    generator by scoring-rule minimization over its samples is Pacchiardi & Dutta (2022,
    "Probabilistic forecasting with generative networks via scoring rule minimization"); the
    conditional GAN's generator otherwise learns to ignore its noise (Isola et al. 2017).
    """
    s = samples.shape[0]
    skill = jnp.abs(samples - y).mean(axis=0)
    pairs = jnp.abs(samples[:, None] - samples[None, :]).sum(axis=(0, 1))  # i == j terms are 0
    crps = skill - pairs / (2 * s * (s - 1))
    err = crps * jnp.clip(y, 1.0, max_weight) * valid
    per_example = err.reshape(err.shape[0], -1).sum(axis=1) / np.prod(y.shape[1:])
    return _wmean(per_example, weight)


# --------------------------------------------------------------------------- state and steps


class GANState(NamedTuple):
    """Everything adversarial training changes, as a pytree of arrays."""

    g_params: nnx.State
    g_rest: nnx.State  # spectral-norm singular-vector estimates
    d_params: nnx.State
    d_rest: nnx.State
    g_opt: optax.OptState
    d_opt: optax.OptState
    step: jax.Array  # int32: generator steps taken


def optimizers(cfg: NowcastGANConfig) -> tuple[optax.GradientTransformation, ...]:
    """Adam for the generator and for the discriminators (``b1 = beta1``, ``b2 = beta2``)."""
    return (
        optax.adam(cfg.lr_generator, b1=cfg.beta1, b2=cfg.beta2),
        optax.adam(cfg.lr_discriminator, b1=cfg.beta1, b2=cfg.beta2),
    )


def init_gan_state(model: NowcastGAN) -> GANState:
    tx_g, tx_d = optimizers(model.cfg)
    _, g_params, g_rest = nnx.split(model.generator, nnx.Param, ...)
    _, d_params, d_rest = nnx.split(model.discriminator, nnx.Param, ...)
    return GANState(
        g_params,
        g_rest,
        d_params,
        d_rest,
        tx_g.init(g_params),
        tx_d.init(d_params),
        jnp.zeros((), jnp.int32),
    )


def _defs(module: nnx.Module) -> tuple[Any, Any]:
    """Graph definitions of ``module`` updating its spectral-norm estimates, and frozen."""
    live = nnx.split(module, nnx.Param, ...)[0]
    set_sigma_updates(module, False)
    frozen = nnx.split(module, nnx.Param, ...)[0]
    set_sigma_updates(module, True)
    return live, frozen


def _fresh(tree: Any) -> Any:
    # New Variable objects at the current trace level, so the power iteration may update them.
    return jax.tree.map(lambda v: v, tree)


Step = Callable[[GANState, dict, jax.Array], tuple[GANState, jax.Array]]


def make_steps(model: NowcastGAN) -> tuple[Step, Step]:
    """``(d_step, g_step)``, each ``(state, batch, key) -> (state, loss)``, jitted; models of
    the same structure and settings share them (one compilation per shape, e.g. across a
    resume in the same process)."""
    return _steps(*_defs(model.generator), *_defs(model.discriminator), model.cfg)


@functools.lru_cache(maxsize=8)
def _steps(g_live, g_frozen, d_live, d_frozen, cfg: NowcastGANConfig) -> tuple[Step, Step]:
    tx_g, tx_d = optimizers(cfg)

    @jax.jit
    def d_step(state: GANState, batch, key):
        kz, kd = jax.random.split(key)
        generator = nnx.merge(g_frozen, state.g_params, state.g_rest)
        history, w = batch["history"], batch["weight"]
        fake = jax.lax.stop_gradient(generator(batch["x"], kz, history[:, -1]))  # no G gradient
        both = jnp.concatenate(
            [jnp.concatenate([history, batch["y"]], 1), jnp.concatenate([history, fake], 1)], 0
        )
        b = history.shape[0]

        def loss_fn(d_params):
            disc = nnx.merge(d_live, d_params, _fresh(state.d_rest))
            # real and fake in one call: the spectral-norm estimate updates once per step
            spatial = disc.score_spatial(both, kd)
            temporal = disc.score_temporal(both, kd)
            loss = hinge_discriminator(spatial[:b], spatial[b:], w) + hinge_discriminator(
                temporal[:b], temporal[b:], w
            )
            return loss, nnx.split(disc, nnx.Param, ...)[2]

        (loss, d_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
        updates, d_opt = tx_d.update(grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, updates)
        return state._replace(d_params=d_params, d_rest=d_rest, d_opt=d_opt), loss

    @jax.jit
    def g_step(state: GANState, batch, key):
        kz, kd = jax.random.split(key)
        s, b = cfg.reg_samples, batch["x"].shape[0]
        # S samples per example in one call: the batch tiled S times, one latent draw per row
        x = jnp.tile(batch["x"], (s,) + (1,) * (batch["x"].ndim - 1))
        history = jnp.tile(batch["history"], (s, 1, 1, 1))
        w = batch["weight"]

        def loss_fn(g_params):
            generator = nnx.merge(g_live, g_params, _fresh(state.g_rest))
            fake = generator(x, kz, history[:, -1])  # (S * B, L, H, W)
            disc = nnx.merge(d_frozen, state.d_params, state.d_rest)
            seq = jnp.concatenate([history, fake], 1)
            scores = disc.score_spatial(seq, kd) + disc.score_temporal(seq, kd)
            adversarial = hinge_generator(scores, jnp.tile(w, s))
            samples = fake.reshape(s, b, *fake.shape[1:])
            terms = samples, batch["y"], batch["y_valid"], w, cfg.max_weight
            loss = adversarial + cfg.reg_weight * grid_cell_loss(*terms)
            if cfg.crps_weight:
                loss = loss + cfg.crps_weight * fair_crps_loss(*terms)
            return loss, nnx.split(generator, nnx.Param, ...)[2]

        (loss, g_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
        updates, g_opt = tx_g.update(grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        new = state._replace(g_params=g_params, g_rest=g_rest, g_opt=g_opt, step=state.step + 1)
        return new, loss

    return d_step, g_step


def train_step(d_step: Step, g_step: Step, disc_steps: int, state: GANState, batch, key):
    """``disc_steps`` discriminator updates then one generator update on ``batch``; keys from
    ``key`` only. Returns ``(state, d_loss (mean), g_loss)``."""
    d_losses = []
    for i in range(disc_steps):
        state, d_loss = d_step(state, batch, jax.random.fold_in(key, i))
        d_losses.append(d_loss)
    state, g_loss = g_step(state, batch, jax.random.fold_in(key, disc_steps))
    return state, sum(d_losses) / disc_steps, g_loss


def make_sampler(
    model: NowcastGAN,
) -> Callable[[nnx.State, nnx.State, jax.Array, jax.Array], jax.Array]:
    """``sampler(g_params, g_rest, x, last (B, H, W) mm/h, keys (M,)) -> (B, M, L, H, W)``,
    jitted."""
    g_def = nnx.split(model.generator, nnx.Param, ...)[0]

    @jax.jit
    def sampler(g_params, g_rest, x, last, keys):
        return sample(nnx.merge(g_def, g_params, g_rest), x, last, keys)

    return sampler


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class RainCodec:
    """Between a run's normalized target and rain in mm/h (its ``Normalizer``, host side).

    ``to_rain(z)`` for arrays whose trailing axes are the target's grid, ``from_rain(r)`` back.
    """

    normalizer: Any
    target: str

    def __post_init__(self):
        if self.normalizer.climatology:
            raise ConfigError(
                expected("data.normalize.climatology", "false for model 'nowcast_gan'", True)
            )

    def to_rain(self, z: Any) -> np.ndarray:
        rain = self.normalizer.invert(np.asarray(z, np.float32), self.target)
        return np.maximum(np.asarray(rain, np.float32), 0.0)

    def from_rain(self, rain: Any) -> np.ndarray:
        n = self.normalizer
        values = np.asarray(rain, np.float32)
        if n.transform is not None:
            values = n.transform.forward(values)
        mean = np.asarray(n.mean[self.target].values, np.float32)
        std = np.asarray(n.std[self.target].values, np.float32)
        return ((values - mean) / std).astype(np.float32)


def gan_batch(batch: Any, codec: RainCodec) -> dict[str, np.ndarray]:
    """The arrays the adversarial steps take from a loader ``Batch``."""
    return {
        "x": np.asarray(batch.x, np.float32),
        "history": codec.to_rain(batch.target_history),
        "y": codec.to_rain(batch.y) * np.asarray(batch.y_valid, np.float32),
        "y_valid": np.asarray(batch.y_valid, np.float32),
        "weight": np.asarray(batch.weight, np.float32),
    }


# --------------------------------------------------------------------------- the loop


def fit_gan(
    model: NowcastGAN,
    train_loader: Any,
    val_loader: Any,
    cfg: TrainConfig,
    codec: RainCodec,
    *,
    seed: int,
    workdir: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` adversarially for ``cfg.epochs`` epochs of ``train_loader``.

    A GAN's losses do not measure its forecasts, so there is no early stopping: the result is
    the last generator. Each epoch's history entry has the mean discriminator and generator
    losses and ``val_loss``, the grid-cell regularizer on ``val_loader`` (mean of
    ``reg_samples`` samples). With ``workdir``, checkpoints go to ``workdir/checkpoints`` every
    ``cfg.checkpoint_every`` generator steps and after each epoch, and an existing checkpoint is
    resumed from. ``on_step(n)`` is called after generator step ``n`` (tests raise in it to
    simulate a kill). The returned ``params`` / ``rest`` are the generator's; ``model`` is
    updated in place.
    """
    gcfg = model.cfg
    d_step, g_step = make_steps(model)
    sampler = make_sampler(model)
    ckpt = Checkpointer(Path(workdir) / "checkpoints", cfg.keep_checkpoints) if workdir else None
    state, pos = init_gan_state(model), Progress()
    if ckpt is not None and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        pos = Progress.from_json(meta)
    base = jax.random.key(seed)
    n_batches = len(train_loader)
    bar = step_bar(
        epochs=cfg.epochs,
        steps_per_epoch=n_batches,
        epoch=pos.epoch,
        batch=pos.batch,
        enabled=progress,
    )

    def save():
        if ckpt is not None:
            ckpt.save(int(state.step), state, pos.to_json())

    try:
        while pos.epoch < cfg.epochs:
            started = time.perf_counter()
            for batch in train_loader.epoch(pos.epoch, start_batch=pos.batch):
                key = jax.random.fold_in(base, int(state.step))
                state, d_loss, g_loss = train_step(
                    d_step, g_step, gcfg.disc_steps, state, gan_batch(batch, codec), key
                )
                pos.batch += 1
                pos.epoch_loss_sum += float(g_loss)
                bar.update()
                bar.set_postfix(d=f"{float(d_loss):.3g}", g=f"{float(g_loss):.3g}", refresh=False)
                if on_step is not None:
                    on_step(int(state.step))
                if pos.batch < n_batches and int(state.step) % cfg.checkpoint_every == 0:
                    save()
                    if log is not None:
                        loss = pos.epoch_loss_sum / pos.batch
                        step = int(state.step)
                        log({"event": "step", "epoch": pos.epoch + 1, "step": step, "loss": loss})
            val = _validate(sampler, state, val_loader, codec, gcfg, base)
            entry = {
                "epoch": pos.epoch + 1,
                "train_loss": pos.epoch_loss_sum / max(n_batches, 1),
                "val_loss": val,
                "wall_s": time.perf_counter() - started,
            }
            pos.history.append(entry)
            pos.epoch, pos.batch, pos.epoch_loss_sum = pos.epoch + 1, 0, 0.0
            pos.finished = pos.epoch >= cfg.epochs
            save()
            if log is not None:
                log({"event": "epoch", "step": int(state.step), **entry})
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    nnx.update(model.generator, state.g_params, state.g_rest)
    nnx.update(model.discriminator, state.d_params, state.d_rest)
    return FitResult(state.g_params, state.g_rest, pos.history, stopped_early=False, model=model)


def _validate(sampler, state: GANState, loader, codec: RainCodec, cfg, base) -> float:
    """Grid-cell regularizer of ``reg_samples`` samples per window, mean over windows."""
    total, count = 0.0, 0.0
    keys = jax.random.split(jax.random.fold_in(base, 2**31 - 1), cfg.reg_samples)  # fixed per run
    for batch in loader.epoch(0):
        b = gan_batch(batch, codec)
        members = sampler(state.g_params, state.g_rest, b["x"], b["history"][:, -1], keys)
        loss = grid_cell_loss(
            jnp.moveaxis(members, 1, 0), b["y"], b["y_valid"], b["weight"], cfg.max_weight
        )
        n = float(np.sum(b["weight"]))
        total, count = total + float(loss) * n, count + n
    return total / count if count else float("nan")


def load_gan(model: NowcastGAN, cfg: TrainConfig, workdir: str | Path) -> FitResult:
    """The last generator saved in ``workdir/checkpoints``, without training further."""
    directory = Path(workdir) / "checkpoints"
    ckpt = Checkpointer(directory, cfg.keep_checkpoints) if directory.is_dir() else None
    if ckpt is None or ckpt.latest_step() is None:
        raise CheckpointError(
            expected(str(directory), "a trained run (run `climml train` first)", "no checkpoints")
        )
    try:
        state, meta = ckpt.restore(init_gan_state(model))
    finally:
        ckpt.close()
    nnx.update(model.generator, state.g_params, state.g_rest)
    history = Progress.from_json(meta).history
    return FitResult(state.g_params, state.g_rest, history, stopped_early=False, model=model)


class GANPredictor:
    """A trained GAN as the nowcast task's ensemble predictor: ``predict(batch) -> (B, M, L, H,
    W)`` in normalized units (the task inverts them to mm/h), ``members`` latent draws per
    window from keys fixed by ``seed``."""

    name = "model"

    def __init__(
        self, model: NowcastGAN, result: FitResult, codec: RainCodec, *, members: int, seed: int
    ):
        self.members, self.codec, self.history = members, codec, result.history
        self.params, self.rest = result.params, result.rest
        self._sample = make_sampler(model)
        self._keys = jax.random.split(jax.random.key(seed), members)

    def rain(self, x: Any, last: Any) -> np.ndarray:
        """Ensemble ``(B, M, L, H, W)`` in mm/h for normalized inputs ``x`` and the last observed
        rain ``last (B, H, W)`` in mm/h."""
        args = (jnp.asarray(x), jnp.asarray(last, jnp.float32), self._keys)
        return np.asarray(self._sample(self.params, self.rest, *args))

    def predict(self, batch: Any) -> np.ndarray:
        last = self.codec.to_rain(batch.target_history)[:, -1]
        return self.codec.from_rain(self.rain(batch.x, last))


# --------------------------------------------------------------------------- pipeline


def check(cfg: Any) -> None:
    """What a run of model ``nowcast_gan`` needs of the rest of its config."""
    if cfg.eval.task != "nowcast":
        raise ConfigError(expected("eval.task", "'nowcast' for model 'nowcast_gan'", cfg.eval.task))
    if cfg.train.ensemble_members != 1:
        want = "1 for model 'nowcast_gan' (its members are latent draws: eval.nowcast.members)"
        raise ConfigError(expected("train.ensemble_members", want, cfg.train.ensemble_members))
    leads = list(cfg.data.leads)
    if leads != list(range(1, len(leads) + 1)):
        want = (
            "consecutive steps 1, 2, ... for model 'nowcast_gan' (its sampler steps once per lead)"
        )
        raise ConfigError(expected("data.leads", want, leads))
    if cfg.data.normalize.climatology:
        raise ConfigError(
            expected("data.normalize.climatology", "false for model 'nowcast_gan'", True)
        )


def predictor(exp: Any, model: NowcastGAN, workdir: str | Path) -> GANPredictor:
    """The GAN trained in ``workdir`` as the nowcast task's ensemble predictor, with
    ``eval.nowcast.members`` members."""
    cfg = exp.cfg
    result = load_gan(model, cfg.train, workdir)
    codec = RainCodec(exp.normalizer, cfg.data.target)
    return GANPredictor(model, result, codec, members=cfg.eval.nowcast.members, seed=cfg.seed)
