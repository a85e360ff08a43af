"""``fit``: epochs of jitted train steps, validation, early stopping, checkpoints and resume.

The loop is deterministic given the seed: the loader's order depends only on ``(seed, epoch)`` and
each step's dropout key only on ``(seed, step)``. A checkpoint records the loader position
(epoch, batch), so re-running after a kill resumes exactly where the last checkpoint left off and
reaches the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from climml.config import TrainConfig
from climml.errors import CheckpointError, expected
from climml.train import parallel
from climml.train.checkpoint import Checkpointer
from climml.train.losses import make_loss
from climml.train.optimizer import build_optimizer
from climml.train.steps import (
    TrainState,
    graphdefs,
    init_state,
    make_eval_step,
    make_train_step,
    step_batch,
)


@dataclass
class Progress:
    """Loop position and early-stopping bookkeeping; saved as checkpoint metadata."""

    epoch: int = 0  # epoch in progress
    batch: int = 0  # next batch of that epoch
    epoch_loss_sum: float = 0.0  # train loss summed over the epoch's finished batches
    best_val: float = float("inf")
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        best = self.best_val if np.isfinite(self.best_val) else None
        return {**self.__dict__, "best_val": best}

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> Progress:
        best = meta.get("best_val")
        return cls(**{**meta, "best_val": float("inf") if best is None else best})


@dataclass
class FitResult:
    """The best (lowest validation loss) parameters and the per-epoch history."""

    params: nnx.State
    rest: nnx.State
    history: list[dict[str, float]]
    stopped_early: bool


class Trainer:
    """Holds the jitted steps of one model so that they compile once per run."""

    def __init__(
        self, model: nnx.Module, cfg: TrainConfig, *, steps_per_epoch: int, batch_size: int
    ):
        self.cfg = cfg
        self.train_def, self.eval_def = graphdefs(model)
        loss_fn = make_loss(cfg)
        self.tx = build_optimizer(cfg, steps_per_epoch * cfg.epochs)
        self.mesh = parallel.data_mesh(cfg.devices, batch_size)
        self.initial = parallel.replicate(init_state(model, self.tx), self.mesh)
        self.train_step = make_train_step(self.train_def, loss_fn, self.tx)
        self.eval_step = make_eval_step(self.eval_def, loss_fn)

    def device_batch(self, batch: Any) -> dict[str, Any]:
        return parallel.shard_batch(step_batch(batch), self.mesh)

    def evaluate(self, params: nnx.State, rest: nnx.State, batches: Iterable[Any]) -> float:
        """Mean loss per real sample over ``batches`` (padding excluded)."""
        total, count = 0.0, 0.0
        for batch in batches:
            loss_sum, n = self.eval_step(params, rest, self.device_batch(batch))
            total, count = total + float(loss_sum), count + float(n)
        return total / count if count else float("nan")


def fit(
    model: nnx.Module,
    train_loader: Any,
    val_loader: Any,
    cfg: TrainConfig,
    *,
    seed: int,
    workdir: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_loader``, early-stopping on ``val_loader``'s loss.

    With ``workdir``, checkpoints go to ``workdir/checkpoints`` every ``cfg.checkpoint_every``
    steps and after every epoch, and an existing checkpoint there is resumed from. ``on_step(n)``
    is called after each optimizer step (for logging, or to stop a run in tests).
    """
    trainer = Trainer(
        model, cfg, steps_per_epoch=len(train_loader), batch_size=train_loader.batch_size
    )
    ckpt = Checkpointer(Path(workdir) / "checkpoints", cfg.keep_checkpoints) if workdir else None
    state, best, pos = _start(trainer, ckpt)
    base_key = jax.random.key(seed)
    try:
        while not pos.finished and pos.epoch < cfg.epochs:
            state, best = _run_epoch(
                trainer,
                state,
                best,
                pos,
                train_loader,
                val_loader,
                base_key,
                ckpt,
                progress,
                on_step,
            )
    finally:
        if ckpt is not None:
            ckpt.close()
    return FitResult(best[0], best[1], pos.history, stopped_early=pos.epoch < cfg.epochs)


def _start(trainer: Trainer, ckpt: Checkpointer | None) -> tuple[TrainState, tuple, Progress]:
    state = trainer.initial
    best = (state.params, state.rest)
    if ckpt is None or ckpt.latest_step() is None:
        return state, best, Progress()
    tree, meta = ckpt.restore({"state": state, "best": best})
    tree = parallel.replicate(tree, trainer.mesh)
    return tree["state"], tree["best"], Progress.from_json(meta)


def _run_epoch(
    trainer, state, best, pos: Progress, train_loader, val_loader, base_key, ckpt, progress, on_step
):
    cfg = trainer.cfg
    started, waited = time.perf_counter(), 0.0
    step = int(state.step)
    bar = tqdm(
        total=len(train_loader),
        initial=pos.batch,
        disable=not progress,
        leave=False,
        desc=f"epoch {pos.epoch + 1}/{cfg.epochs}",
    )
    batches = iter(train_loader.epoch(pos.epoch, start_batch=pos.batch))
    # Summed on the device: a float() per step would block JAX's asynchronous dispatch.
    loss_sum = jnp.asarray(pos.epoch_loss_sum, jnp.float32)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        state, loss = trainer.train_step(
            state, trainer.device_batch(batch), jax.random.fold_in(base_key, step)
        )
        step, pos.batch = step + 1, pos.batch + 1
        loss_sum = loss_sum + loss
        bar.update()
        if on_step is not None:
            on_step(step)
        end_of_epoch = pos.batch == len(train_loader)  # saved below, after validation
        if ckpt is not None and step % cfg.checkpoint_every == 0 and not end_of_epoch:
            pos.epoch_loss_sum = float(loss_sum)
            ckpt.save(step, {"state": state, "best": best}, pos.to_json())
    bar.close()
    pos.epoch_loss_sum = float(loss_sum)
    best = _end_epoch(
        trainer,
        state,
        best,
        pos,
        len(train_loader),
        val_loader,
        wall=time.perf_counter() - started,
        waited=waited,
    )
    if ckpt is not None:
        ckpt.save(step, {"state": state, "best": best}, pos.to_json())
    return state, best


def _end_epoch(trainer, state, best, pos: Progress, n_batches, val_loader, *, wall, waited):
    """Validate, record history, update early stopping; advance ``pos`` to the next epoch."""
    val_loss = trainer.evaluate(state.params, state.rest, val_loader.epoch(0))
    pos.history.append(
        {
            "epoch": pos.epoch + 1,
            "train_loss": pos.epoch_loss_sum / max(n_batches, 1),
            "val_loss": val_loss,
            "wall_s": wall,
            "data_wait_s": waited,
        }
    )
    if val_loss < pos.best_val:
        pos.best_val, pos.bad_epochs, best = val_loss, 0, (state.params, state.rest)
    else:
        pos.bad_epochs += 1
    patience = trainer.cfg.patience
    pos.epoch, pos.batch, pos.epoch_loss_sum = pos.epoch + 1, 0, 0.0
    pos.finished = pos.epoch >= trainer.cfg.epochs or (
        patience is not None and pos.bad_epochs >= patience
    )
    return best


def load_best(
    model: nnx.Module,
    cfg: TrainConfig,
    workdir: str | Path,
    *,
    steps_per_epoch: int,
    batch_size: int,
) -> FitResult:
    """The best parameters saved in ``workdir/checkpoints``, without training further."""
    directory = Path(workdir) / "checkpoints"
    if not directory.is_dir():
        raise CheckpointError(
            expected(str(directory), "a trained run (run `climml train` first)", "no checkpoints")
        )
    trainer = Trainer(model, cfg, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    ckpt = Checkpointer(directory, cfg.keep_checkpoints)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(expected(str(directory), "a saved checkpoint", "none"))
        _, best, pos = _start(trainer, ckpt)
    finally:
        ckpt.close()
    return FitResult(best[0], best[1], pos.history, stopped_early=pos.epoch < cfg.epochs)
