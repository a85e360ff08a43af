"""Several members of one model trained at once: one vmapped, jitted step over stacked states.

A *member* is what a single ``climml.train.fit`` run would train: a model initialized from its
own seed, with dropout keys from that seed, optionally its own peak learning rate and weight
decay (injected into the optimizer state, see ``climml.train.optimizer``), its own bootstrap
resample of the training set, or its own shuffle order. ``fit_members`` stacks the members'
``TrainState`` pytrees along a leading member axis and vmaps the
single-model train step (``climml.train.steps.make_train_step``) over that axis, so N members
compile once and run as one program: the members' small matrix products become one larger
batched product, which is where the speed-up over N sequential runs comes from (on CPU the
members are unrolled in that program instead, see ``over_members``).

Each member keeps its own best parameters and early-stopping count; a member whose patience is
exhausted is frozen (its state no longer changes) while the others continue, so every member
ends with exactly the parameters of its separate run. Checkpoints hold the stacked state and
the per-member bookkeeping, and resume like a single run's.

Members share the batches of one loader (one data read per step). A bootstrap member weights
each training sample by the number of times its resample drew it (``bootstrap_counts``): the
loss of a batch is the count-weighted mean, which is training on the resample with every
copy of a sample seen in the same batch as the original.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from climml.config import TrainConfig
from climml.errors import CheckpointError, ConfigError, expected
from climml.train import parallel
from climml.train.checkpoint import Checkpointer
from climml.train.loop import TrainingInterrupted, _StopOnSignal, trained_checkpoints
from climml.train.losses import make_loss
from climml.train.optimizer import INJECTED, build_optimizer, set_hyperparams
from climml.train.progress import step_bar
from climml.train.steps import (
    STEP_FIELDS,
    TrainState,
    graphdefs,
    init_state,
    make_eval_step,
    make_predict,
    make_train_step,
    step_batch,
)
from climml.types import Batch

# ``build(rngs) -> nnx.Module``: the model, initialized from ``rngs`` (params and dropout streams)
Builder = Callable[[nnx.Rngs], nnx.Module]


def member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: member ``i`` is seeded ``seed + i`` (member 0 is the
    single-model run of the same config)."""
    return [seed + i for i in range(members)]


def member_rngs(seed: Any) -> nnx.Rngs:
    """The ``nnx.Rngs`` a model of ``seed`` is built with (``seed`` may be traced); equal to
    ``nnx.Rngs(params=seed, dropout=seed + 1)``, as ``climml.pipeline.build_model`` uses."""
    return nnx.Rngs(params=jax.random.key(seed), dropout=jax.random.key(seed + 1))


def bootstrap_counts(seed: int, n: int) -> np.ndarray:
    """``(n,)`` float32: how often each of ``n`` training samples is drawn by a bootstrap
    resample (``n`` draws with replacement) seeded by the member's ``seed``."""
    rng = np.random.default_rng([int(seed), 0xB0075])  # a stream apart from other seed uses
    return rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float32)


def reweight(batch: Batch, anchors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``batch.weight`` times the bootstrap count of each sample (``counts`` over ``anchors``,
    the loader's sorted training anchors; padding rows keep weight 0)."""
    index = np.clip(np.searchsorted(anchors, np.asarray(batch.anchor)), 0, len(anchors) - 1)
    return np.asarray(batch.weight, np.float32) * np.asarray(counts)[..., index]


class Resampled:
    """A loader whose batches are weighted by ``bootstrap_counts``: the single-run form of a
    bootstrap member (``fit(model, Resampled(loader, counts), ...)``)."""

    def __init__(self, loader: Any, counts: np.ndarray):
        if len(counts) != len(loader.anchors):
            want = f"{len(loader.anchors)} counts (one per training sample)"
            raise ConfigError(expected("bootstrap counts", want, len(counts)))
        self.loader, self.counts = loader, np.asarray(counts, np.float32)
        self.batch_size, self.anchors = loader.batch_size, loader.anchors

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int, start_batch: int = 0):
        for batch in self.loader.epoch(epoch, start_batch=start_batch):
            yield batch._replace(weight=reweight(batch, self.anchors, self.counts))


class DropoutRate(nnx.Variable):
    """A dropout rate held as state (not a parameter): members of one run may differ in it."""


class RateDropout(nnx.Module):
    """``nnx.Dropout`` whose rate is state (``DropoutRate``) instead of a constant of the
    compiled model, so members with different rates share one vmapped step. It draws the same
    masks as the ``nnx.Dropout`` it replaces from the same keys; at rate 0 every unit is kept."""

    def __init__(self, like: nnx.Dropout, rate: float):
        self.rate = DropoutRate(jnp.asarray(rate, jnp.float32))
        self.broadcast_dims, self.deterministic = like.broadcast_dims, like.deterministic
        self.rngs = like.rngs

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.deterministic:
            return inputs
        keep = 1.0 - self.rate[...]
        shape = [1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape)]
        mask = jnp.broadcast_to(jax.random.bernoulli(self.rngs(), keep, shape), inputs.shape)
        return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


def dropout_as_state(model: nnx.Module, rate: float) -> nnx.Module:
    """``model`` with every ``nnx.Dropout`` replaced by a ``RateDropout`` of ``rate`` (in
    place; returned for chaining)."""
    for path, module in list(nnx.iter_modules(model)):
        if isinstance(module, nnx.Dropout) and path:
            parent = model
            for part in path[:-1]:
                parent = parent[part] if isinstance(part, int) else getattr(parent, part)
            replacement = RateDropout(module, rate)
            if isinstance(path[-1], int):
                parent[path[-1]] = replacement
            else:
                setattr(parent, path[-1], replacement)
    return model


@dataclass
class MembersProgress:
    """Loop position and per-member early stopping; saved as checkpoint metadata."""

    members: int
    epoch: int = 0  # epoch in progress
    batch: int = 0  # next batch of that epoch
    epoch_loss_sum: list[float] = field(default_factory=list)  # per member, this epoch
    best_val: list[float | None] = field(default_factory=list)
    bad_epochs: list[int] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)  # False once a member stopped early
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.members
        self.epoch_loss_sum = self.epoch_loss_sum or [0.0] * m
        self.best_val = self.best_val or [None] * m  # None: no validation yet (JSON-safe inf)
        self.bad_epochs = self.bad_epochs or [0] * m
        self.active = self.active or [True] * m

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> MembersProgress:
        return cls(**meta)


@dataclass
class MembersResult:
    """The members' best parameters, stacked on a leading member axis, and the history.

    ``history`` has one entry per epoch: ``train_loss`` and ``val_loss`` are the means over the
    members, ``member_train_loss`` / ``member_val_loss`` the per-member values; ``best_val``
    is each member's lowest validation loss.
    """

    params: nnx.State
    rest: nnx.State
    history: list[dict[str, Any]]
    stopped_early: bool
    best_val: list[float]

    @property
    def members(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0])

    def member(self, i: int) -> tuple[nnx.State, nnx.State]:
        """``(params, rest)`` of member ``i``."""
        return jax.tree.map(lambda a: a[i], (self.params, self.rest))


def _vectorize() -> bool:
    """Whether members are vmapped (accelerators) or unrolled (CPU), see ``over_members``."""
    return jax.default_backend() != "cpu"


def over_members(fn: Callable, in_axes: tuple, members: int, *, out_axis: int = 0) -> Callable:
    """``fn`` mapped over the leading member axis of the arguments whose ``in_axes`` entry is 0
    (``None``: shared; a dict: per batch field), outputs stacked on ``out_axis``.

    ``jax.vmap`` on accelerators, where the members' batched products fill the device. On CPU
    the members are unrolled into the one compiled program instead: XLA:CPU runs convolutions
    with a batch of kernels (vmapped conv weights) on a slow generic path, 10x slower per step
    than the same convolutions one member at a time (``benchmarks/RESULTS.md``, issue 14).
    """
    if _vectorize():
        return jax.vmap(fn, in_axes=in_axes, out_axes=out_axis)

    def take(arg, axis, m):
        if isinstance(axis, dict):
            return {k: take(arg[k], axis[k], m) for k in arg}
        return arg if axis is None else jax.tree.map(lambda x: x[m], arg)

    def unrolled(*args):
        outs = [
            fn(*(take(a, ax, m) for a, ax in zip(args, in_axes, strict=True)))
            for m in range(members)
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs, axis=out_axis), *outs)

    return unrolled


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member (leading axis): ``new`` where ``mask`` else ``old``; PRNG keys included."""

    def pick(n, o):
        if jax.dtypes.issubdtype(n.dtype, jax.dtypes.prng_key):
            data = _select(mask, jax.random.key_data(n), jax.random.key_data(o))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(n))
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - mask.ndim)), n, o)

    return jax.tree.map(pick, new, old)


class MembersTrainer:
    """The jitted, member-vmapped init, train and eval steps of one run (compiled once)."""

    def __init__(
        self,
        build: Builder,
        cfg: TrainConfig,
        seeds: Sequence[int],
        *,
        hyper: Mapping[str, Sequence[float]] | None = None,
        steps_per_epoch: int,
        batch_size: int,
    ):
        hyper = dict(hyper or {})
        bad = sorted(set(hyper) - {*INJECTED, "dropout"})
        if bad or any(len(v) != len(seeds) for v in hyper.values()):
            want = f"a value per member ({len(seeds)}) for {[*INJECTED, 'dropout']}"
            raise ConfigError(
                expected("member hyperparameters", want, {k: len(v) for k, v in hyper.items()})
            )
        if not seeds:
            raise ConfigError(expected("members", "at least one seed", "none"))
        self.cfg, self.members = cfg, len(seeds)
        rates = hyper.pop("dropout", None)

        def member_model(m: int) -> nnx.Module:
            model = build(member_rngs(int(seeds[m])))
            return model if rates is None else dropout_as_state(model, rates[m])

        self.train_def, self.eval_def = graphdefs(member_model(0))
        loss_fn = make_loss(cfg)
        self.tx = build_optimizer(cfg, steps_per_epoch * cfg.epochs)
        self.mesh = parallel.data_mesh(cfg.devices, batch_size)

        def init(m: int) -> TrainState:
            state = init_state(member_model(m), self.tx)
            values = {k: v[m] for k, v in hyper.items()}
            return state._replace(opt_state=set_hyperparams(state.opt_state, **values))

        # Members are initialized one by one and stacked: eager initialization reuses the
        # single-model ops compiled for the first member, where a vmapped (or jitted) init
        # compiles every batched op anew, 10-25x slower on CPU for a CNN.
        states = [init(m) for m in range(len(seeds))]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
        self.initial = parallel.replicate(stacked, self.mesh)
        seeds_arr = jnp.asarray(seeds, jnp.int32)
        self.base_keys = jax.vmap(jax.random.key)(seeds_arr)
        single = make_train_step(self.train_def, loss_fn, self.tx)
        single_eval = make_eval_step(self.eval_def, loss_fn)

        def member_step(state, batch, key, active):
            new, loss = single(state, batch, key)
            return _select(active, new, state), loss

        self._train = {}  # compiled per batch layout (which fields are per member)
        self._eval = jax.jit(over_members(single_eval, (0, 0, None), self.members))
        self._member_step = member_step

    def train_step(self, state, batch, step: int, active: jax.Array, per_member: frozenset):
        """One optimizer step of every active member; ``per_member`` names the batch fields
        that carry a leading member axis (the rest are shared)."""
        if per_member not in self._train:
            axes = {name: 0 if name in per_member else None for name in STEP_FIELDS}
            step_fn = over_members(self._member_step, (0, axes, 0, 0), self.members)
            self._train[per_member] = jax.jit(step_fn)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self.base_keys, step)
        return self._train[per_member](state, batch, keys, active)

    def place(self, batch: dict[str, Any], per_member: frozenset) -> dict[str, Any]:
        """Shard the sample axis over the data mesh (axis 1 of per-member fields)."""
        if self.mesh is None:
            return batch
        spec = {n: PartitionSpec(*([None] if n in per_member else []), parallel.DATA_AXIS)
                for n in batch}  # fmt: skip
        return {n: jax.device_put(a, NamedSharding(self.mesh, spec[n])) for n, a in batch.items()}

    def evaluate(self, params, rest, batches) -> np.ndarray:
        """``(M,)`` mean loss per real sample of each member over ``batches``."""
        total, count = np.zeros(self.members), 0.0
        for batch in batches:
            loss_sum, n = self._eval(params, rest, self.place(step_batch(batch), frozenset()))
            total, count = total + np.asarray(loss_sum, np.float64), count + float(n[0])
        return total / count if count else np.full(self.members, np.nan)


class _Batches:
    """The members' batches of one epoch: one read of the shared loader, or one per distinct
    loader; bootstrap counts turn the shared weight into a per-member one."""

    def __init__(self, loaders: Sequence[Any], counts: np.ndarray | None):
        self.loaders = loaders
        self.distinct = list({id(lo): lo for lo in loaders}.values())
        self.index = [self.distinct.index(lo) for lo in loaders]
        self.counts = counts
        lengths = {len(lo) for lo in self.distinct}
        if len(lengths) != 1:
            raise ConfigError(expected("member loaders", "the same number of batches", lengths))
        stacked = set(STEP_FIELDS) if len(self.distinct) > 1 else set()
        self.per_member = frozenset(stacked | ({"weight"} if counts is not None else set()))

    def __len__(self) -> int:
        return len(self.distinct[0])

    def epoch(self, epoch: int, start_batch: int):
        streams = [lo.epoch(epoch, start_batch=start_batch) for lo in self.distinct]
        for parts in zip(*streams, strict=True):
            if len(parts) == 1:
                batch = step_batch(parts[0])
                if self.counts is not None:
                    batch["weight"] = reweight(parts[0], self.distinct[0].anchors, self.counts)
            else:
                fields = [step_batch(parts[i]) for i in self.index]
                batch = {n: np.stack([np.asarray(f[n]) for f in fields]) for n in STEP_FIELDS}
                if self.counts is not None:
                    batch["weight"] = np.stack([
                        reweight(parts[i], self.distinct[i].anchors, self.counts[m])
                        for m, i in enumerate(self.index)
                    ])  # fmt: skip
            yield batch


def fit_members(
    build: Builder,
    train_loader: Any | Sequence[Any],
    val_loader: Any,
    cfg: TrainConfig,
    *,
    seeds: Sequence[int],
    hyper: Mapping[str, Sequence[float]] | None = None,
    bootstrap: bool = False,
    workdir: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> MembersResult:
    """Train ``len(seeds)`` members of ``build`` in one vmapped step; resumable like ``fit``.

    Member ``i`` equals ``fit(build(member_rngs(seeds[i])), loader_i, val_loader, cfg,
    seed=seeds[i])`` with the optimizer's ``lr`` / ``weight_decay`` set to ``hyper[...][i]``
    (and ``hyper["dropout"][i]`` as the rate of every ``nnx.Dropout``, see ``RateDropout``)
    and ``loader_i`` the training loader (``train_loader[i]`` when a sequence of per-member
    loaders is given, e.g. shuffled by different seeds), wrapped in ``Resampled(loader,
    bootstrap_counts(seeds[i], n))`` when ``bootstrap``.

    With ``workdir``, checkpoints go to ``workdir/checkpoints`` (every ``cfg.checkpoint_every``
    steps and after every epoch) and are resumed from. Ctrl-C / SIGTERM: checkpoint, then
    ``TrainingInterrupted``. ``log(record)`` receives what ``fit`` logs (step records at
    checkpoints with the members' mean loss, epoch records with the members' mean losses).
    """
    loaders = list(train_loader) if isinstance(train_loader, list | tuple) else [train_loader]
    loaders = loaders * len(seeds) if len(loaders) == 1 else loaders
    if len(loaders) != len(seeds):
        raise ConfigError(expected("train loaders", f"1 or {len(seeds)}", len(loaders)))
    counts = None
    if bootstrap:
        counts = np.stack(
            [bootstrap_counts(s, len(lo.anchors)) for s, lo in zip(seeds, loaders, strict=True)]
        )
    batches = _Batches(loaders, counts)
    trainer = MembersTrainer(
        build, cfg, seeds, hyper=hyper, steps_per_epoch=len(batches),
        batch_size=loaders[0].batch_size,
    )  # fmt: skip
    ckpt = Checkpointer(Path(workdir) / "checkpoints", cfg.keep_checkpoints) if workdir else None
    state, best, pos = _start(trainer, ckpt)
    steps = len(batches)
    bar = step_bar(
        epochs=cfg.epochs, steps_per_epoch=steps, epoch=pos.epoch, batch=pos.batch, enabled=progress
    )
    try:
        with _StopOnSignal() as stop:
            while not pos.finished and pos.epoch < cfg.epochs:
                state, best = _epoch(
                    trainer, batches, val_loader, state, best, pos, ckpt, bar, stop, on_step, log
                )
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    best_val = [float("nan") if v is None else v for v in pos.best_val]
    return MembersResult(best[0], best[1], pos.history, pos.epoch < cfg.epochs, best_val)


def _start(trainer: MembersTrainer, ckpt: Checkpointer | None):
    state = trainer.initial
    best = (state.params, state.rest)
    if ckpt is None or ckpt.latest_step() is None:
        return state, best, MembersProgress(trainer.members)
    tree, meta = ckpt.restore({"state": state, "best": best})
    tree = parallel.replicate(tree, trainer.mesh)
    return tree["state"], tree["best"], MembersProgress.from_json(meta)


def _save(ckpt, state, best, pos: MembersProgress) -> None:
    if ckpt is not None:
        ckpt.save(int(jnp.max(state.step)), {"state": state, "best": best}, pos.to_json())


def _epoch(trainer, batches, val_loader, state, best, pos, ckpt, bar, stop, on_step, log):
    cfg = trainer.cfg
    started, waited = time.perf_counter(), 0.0
    step = int(jnp.max(state.step))  # the active members' count (frozen ones lag behind)
    active = jnp.asarray(pos.active)
    bar.set_description(f"epoch {pos.epoch + 1}/{cfg.epochs}")
    stream = iter(batches.epoch(pos.epoch, pos.batch))
    loss_sum = jnp.asarray(pos.epoch_loss_sum, jnp.float32)
    while True:
        t0 = time.perf_counter()
        batch = next(stream, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        batch = trainer.place(batch, batches.per_member)
        state, loss = trainer.train_step(state, batch, step, active, batches.per_member)
        step, pos.batch = step + 1, pos.batch + 1
        loss_sum = loss_sum + loss
        bar.update()
        if on_step is not None:
            on_step(step)
        if pos.batch == len(batches):
            break
        if stop.requested or (ckpt is not None and step % cfg.checkpoint_every == 0):
            pos.epoch_loss_sum = np.asarray(loss_sum).tolist()
            _save(ckpt, state, best, pos)
            if log is not None:
                mean = float(jnp.mean(loss))
                log({"event": "step", "epoch": pos.epoch + 1, "step": step, "loss": mean})
        if stop.requested:
            raise TrainingInterrupted(pos.epoch + 1, step, None if ckpt is None else ckpt.directory)
    pos.epoch_loss_sum = np.asarray(loss_sum).tolist()
    best = _end_epoch(trainer, state, best, pos, len(batches), val_loader)
    last = pos.history[-1]
    last["wall_s"], last["data_wait_s"] = time.perf_counter() - started, waited
    bar.set_postfix(loss=f"{last['train_loss']:.4g}", val_loss=f"{last['val_loss']:.4g}")
    if log is not None:
        log(
            {"event": "epoch", "step": step, **{k: v for k, v in last.items() if "member" not in k}}
        )
    if pos.finished and pos.epoch < cfg.epochs and not bar.disable:
        bar.write(f"early stop at epoch {pos.epoch}: no member's validation loss improved for "
                  f"{cfg.patience} epochs", file=sys.stderr)  # fmt: skip
    _save(ckpt, state, best, pos)
    if stop.requested:
        raise TrainingInterrupted(pos.epoch, step, None if ckpt is None else ckpt.directory)
    return state, best


def _end_epoch(trainer, state, best, pos: MembersProgress, n_batches, val_loader):
    """Validate every member; update each one's best parameters and early stopping."""
    val = trainer.evaluate(state.params, state.rest, val_loader.epoch(0))
    train = [s / max(n_batches, 1) for s in pos.epoch_loss_sum]
    patience, was_active = trainer.cfg.patience, list(pos.active)
    improved = [
        a and (b is None or v < b) for a, v, b in zip(was_active, val, pos.best_val, strict=True)
    ]
    best = _select(jnp.asarray(improved), (state.params, state.rest), best)
    for m, (a, up) in enumerate(zip(was_active, improved, strict=True)):
        if up:
            pos.best_val[m], pos.bad_epochs[m] = float(val[m]), 0
        elif a:
            pos.bad_epochs[m] += 1
        if a and patience is not None and pos.bad_epochs[m] >= patience:
            pos.active[m] = False
    pos.history.append({
        "epoch": pos.epoch + 1,
        "train_loss": float(np.mean([t for t, a in zip(train, was_active, strict=True) if a])),
        "val_loss": float(np.mean([v for v, a in zip(val, was_active, strict=True) if a])),
        "member_train_loss": [float(t) for t in train],
        "member_val_loss": [float(v) for v in val],
        "member_active": was_active,
    })  # fmt: skip
    pos.epoch, pos.batch = pos.epoch + 1, 0
    pos.epoch_loss_sum = [0.0] * pos.members
    pos.finished = pos.epoch >= trainer.cfg.epochs or not any(pos.active)
    return best


def load_members(
    build: Builder,
    cfg: TrainConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    steps_per_epoch: int,
    batch_size: int,
) -> MembersResult:
    """The members' best parameters saved in ``workdir/checkpoints``, without training."""
    directory = trained_checkpoints(workdir)
    trainer = MembersTrainer(
        build, cfg, seeds, steps_per_epoch=steps_per_epoch, batch_size=batch_size
    )
    ckpt = Checkpointer(directory, cfg.keep_checkpoints)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(expected(str(directory), "a saved checkpoint", "none"))
        _, best, pos = _start(trainer, ckpt)
    finally:
        ckpt.close()
    best_val = [float("nan") if v is None else v for v in pos.best_val]
    return MembersResult(best[0], best[1], pos.history, pos.epoch < cfg.epochs, best_val)


class EnsembleModel:
    """A trained ensemble as a ``DifferentiablePredictor``: ``predict(batch)`` is the ensemble
    mean ``(B, *output_shape)``; ``predict_members(batch)`` gives ``(B, M, *output_shape)``."""

    name = "model"

    def __init__(self, model: nnx.Module, result: MembersResult):
        self.params, self.rest, self.history = result.params, result.rest, result.history
        self.members = result.members
        self.eval_def = graphdefs(model)[1]
        single = make_predict(self.eval_def)
        self._members = jax.jit(over_members(single, (0, 0, None), self.members, out_axis=1))

    def predict_members(self, batch: Batch) -> np.ndarray:
        return np.asarray(self._members(self.params, self.rest, batch.x))

    def predict(self, batch: Batch) -> np.ndarray:
        return np.asarray(jnp.mean(self._members(self.params, self.rest, batch.x), axis=1))

    def predict_fn(self):
        """A pure ``f(x) -> ensemble-mean prediction`` for explanations and saliency."""
        return lambda x: jnp.mean(self._members(self.params, self.rest, x), axis=1)
