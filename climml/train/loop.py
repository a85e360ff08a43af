"""``fit``: epochs of jitted train steps, validation, early stopping, checkpoints and resume.

The loop is deterministic given the seed: the loader's order depends only on ``(seed, epoch)`` and
each step's dropout key only on ``(seed, step)``. A checkpoint records the loader position
(epoch, batch), so re-running after a kill resumes exactly where the last checkpoint left off and
reaches the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from climml import native
from climml.config import TrainConfig
from climml.errors import CheckpointError, expected
from climml.train import parallel
from climml.train.checkpoint import Checkpointer
from climml.train.losses import make_loss
from climml.train.optimizer import build_optimizer
from climml.train.progress import step_bar
from climml.train.steps import (
    TrainState,
    compute_dtype,
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
    """The trained model, its best (lowest validation loss) parameters and the history.

    ``model`` is the module passed to ``fit``, updated in place with ``params`` and ``rest`` and
    left in eval mode (dropout off), ready to call; ``None`` from ``load_best``.
    """

    params: nnx.State
    rest: nnx.State
    history: list[dict[str, float]]
    stopped_early: bool
    model: nnx.Module | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM at a step boundary, after a checkpoint was saved.

    ``epoch`` (1-based) and ``step`` (optimizer steps taken) locate the stop; ``checkpoint`` is
    the checkpoint directory, ``None`` when ``fit`` ran without a ``workdir``; ``signum`` is the
    signal that asked for the stop (the CLI exits with 128 + it). A subclass of
    ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working.
    """

    def __init__(self, epoch: int, step: int, checkpoint: Path | None, signum: int = signal.SIGINT):
        super().__init__(f"interrupted at epoch {epoch} step {step}")
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        self.signum = int(signum)


class _StopOnSignal:
    """While active, the first SIGINT / SIGTERM only records a stop request, which the loop
    honours at the next step boundary (after saving a checkpoint) so that the saved state is
    consistent; a second signal interrupts at once. Signal handlers can only be installed from
    the main thread; elsewhere signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum = int(signal.SIGINT)  # of the first request
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, int(signum)

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                previous = signal.signal(sig, self._handle)
                self._previous[sig] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


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
        dtype = compute_dtype(cfg.dtype)
        self.train_step = make_train_step(self.train_def, loss_fn, self.tx, dtype)
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


@dataclass
class _Run:
    """What one ``fit`` call threads through its epochs."""

    trainer: Trainer
    train_loader: Any
    val_loader: Any
    base_key: jax.Array
    ckpt: Checkpointer | None
    bar: Any  # tqdm over all steps of all epochs
    stop: _StopOnSignal
    on_step: Callable[[int], None] | None
    log: Callable[[dict[str, Any]], None] | None = None
    saved_step: int = -1  # last checkpointed step (a step is saved once)

    def save(self, state: TrainState, best: tuple, pos: Progress) -> None:
        step = int(state.step)
        if self.ckpt is not None and step != self.saved_step:
            self.ckpt.save(step, {"state": state, "best": best}, pos.to_json())
            self.saved_step = step

    def stop_if_requested(self, state: TrainState, best: tuple, pos: Progress, epoch: int):
        if self.stop.requested:
            self.save(state, best, pos)
            directory = None if self.ckpt is None else self.ckpt.directory
            raise TrainingInterrupted(epoch, int(state.step), directory, self.stop.signum)


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
    log: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_loader``, early-stopping on ``val_loader``'s loss.

    ``model`` is updated in place with the best parameters (lowest validation loss) and left in
    eval mode; the result holds it too (``result.model is model``), with the history.

    With ``workdir``, checkpoints go to ``workdir/checkpoints`` every ``cfg.checkpoint_every``
    steps and after every epoch, and an existing checkpoint there is resumed from. ``on_step(n)``
    is called after each optimizer step (for logging, or to stop a run in tests). ``log(record)``
    receives ``{"event": "step", "epoch", "step", "loss"}`` every ``cfg.checkpoint_every``
    steps (``loss``: the epoch's mean train loss so far) and ``{"event": "epoch", "step", and
    the history entry}`` after each epoch; it is called where the loop reads the loss anyway, so
    it costs no extra device synchronization. ``progress`` shows one bar over all epochs
    (overall ETA, current loss) and an "early stop" line.

    Ctrl-C or SIGTERM stops at the next step boundary: a checkpoint is saved (with a
    ``workdir``), ``model`` receives the best parameters so far, and ``TrainingInterrupted`` is
    raised; calling ``fit`` again with the same ``workdir`` resumes.

    ``cfg.native_lstm`` asks for the opt-in C++ LSTM kernel for the steps traced here.
    """
    with native.enabled(cfg.native_lstm):
        return _fit(model, train_loader, val_loader, cfg, seed, workdir, progress, on_step, log)


def _fit(model, train_loader, val_loader, cfg, seed, workdir, progress, on_step, log) -> FitResult:
    trainer = Trainer(
        model, cfg, steps_per_epoch=len(train_loader), batch_size=train_loader.batch_size
    )
    if jax.process_count() > 1:  # each process loads its rows of every global batch
        shard = jax.process_index(), jax.process_count()
        train_loader, val_loader = train_loader.shard(*shard), val_loader.shard(*shard)
        progress = progress and jax.process_index() == 0
    ckpt = Checkpointer(Path(workdir) / "checkpoints", cfg.keep_checkpoints) if workdir else None
    state, best, pos = _start(trainer, ckpt)
    steps = len(train_loader)
    bar = step_bar(
        epochs=cfg.epochs, steps_per_epoch=steps, epoch=pos.epoch, batch=pos.batch, enabled=progress
    )
    with _StopOnSignal() as stop:
        run = _Run(
            trainer, train_loader, val_loader, jax.random.key(seed), ckpt, bar, stop, on_step, log
        )
        try:
            while not pos.finished and pos.epoch < cfg.epochs:
                state, best = _run_epoch(run, state, best, pos)
        except TrainingInterrupted:
            nnx.update(model, *best)
            raise
        finally:
            bar.close()
            if ckpt is not None:
                ckpt.close()
    nnx.update(model, *best)
    return FitResult(
        best[0], best[1], pos.history, stopped_early=pos.epoch < cfg.epochs, model=model
    )


def _start(trainer: Trainer, ckpt: Checkpointer | None) -> tuple[TrainState, tuple, Progress]:
    state = trainer.initial
    best = (state.params, state.rest)
    if ckpt is None or ckpt.latest_step() is None:
        return state, best, Progress()
    tree, meta = ckpt.restore({"state": state, "best": best})  # onto the current mesh
    return tree["state"], tree["best"], Progress.from_json(meta)


def _run_epoch(run: _Run, state: TrainState, best: tuple, pos: Progress):
    trainer, cfg, bar = run.trainer, run.trainer.cfg, run.bar
    n_batches = len(run.train_loader)
    started, waited = time.perf_counter(), 0.0
    step = int(state.step)
    bar.set_description(f"epoch {pos.epoch + 1}/{cfg.epochs}")
    batches = iter(run.train_loader.epoch(pos.epoch, start_batch=pos.batch))
    # Summed on the device: a float() per step would block JAX's asynchronous dispatch, so the
    # bar's loss is read only when it is next drawn.
    loss_sum = jnp.asarray(pos.epoch_loss_sum, jnp.float32)
    shown = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        state, loss = trainer.train_step(
            state, trainer.device_batch(batch), jax.random.fold_in(run.base_key, step)
        )
        step, pos.batch = step + 1, pos.batch + 1
        loss_sum = loss_sum + loss
        bar.update()
        if not bar.disable and time.perf_counter() - shown > bar.mininterval:
            bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)
            shown = time.perf_counter()
        if run.on_step is not None:
            run.on_step(step)
        if pos.batch == n_batches:
            break  # the end-of-epoch checkpoint is saved below, after validation
        at_checkpoint = step % cfg.checkpoint_every == 0
        if run.stop.requested or at_checkpoint:
            pos.epoch_loss_sum = float(loss_sum)
            run.save(state, best, pos)
            if at_checkpoint and run.log is not None:
                loss = pos.epoch_loss_sum / pos.batch
                run.log({"event": "step", "epoch": pos.epoch + 1, "step": step, "loss": loss})
        run.stop_if_requested(state, best, pos, pos.epoch + 1)
    pos.epoch_loss_sum = float(loss_sum)
    best = _end_epoch(
        trainer,
        state,
        best,
        pos,
        n_batches,
        run.val_loader,
        wall=time.perf_counter() - started,
        waited=waited,
    )
    last = pos.history[-1]
    if run.log is not None:
        run.log({"event": "epoch", "step": step, **last})
    bar.set_postfix(loss=f"{last['train_loss']:.4g}", val_loss=f"{last['val_loss']:.4g}")
    if pos.finished and pos.epoch < cfg.epochs and not bar.disable:
        best_epoch = min(pos.history, key=lambda h: h["val_loss"])["epoch"]
        bar.write(
            f"early stop at epoch {pos.epoch}: validation loss not improved for "
            f"{cfg.patience} epochs (best {pos.best_val:.4g} at epoch {best_epoch})",
            file=sys.stderr,  # with the bar, off the results on stdout
        )
    run.save(state, best, pos)
    run.stop_if_requested(state, best, pos, pos.epoch)
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


def trained_checkpoints(workdir: str | Path) -> Path:
    """``workdir/checkpoints`` of a trained run (CheckpointError if the run never trained)."""
    directory = Path(workdir) / "checkpoints"
    if not directory.is_dir():
        raise CheckpointError(
            expected(str(directory), "a trained run (run `climml train` first)", "no checkpoints")
        )
    return directory


def load_best(
    model: nnx.Module,
    cfg: TrainConfig,
    workdir: str | Path,
    *,
    steps_per_epoch: int,
    batch_size: int,
) -> FitResult:
    """The best parameters saved in ``workdir/checkpoints``, without training further."""
    directory = trained_checkpoints(workdir)
    trainer = Trainer(model, cfg, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    ckpt = Checkpointer(directory, cfg.keep_checkpoints)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(expected(str(directory), "a saved checkpoint", "none"))
        _, best, pos = _start(trainer, ckpt)
    finally:
        ckpt.close()
    return FitResult(best[0], best[1], pos.history, stopped_early=pos.epoch < cfg.epochs)
