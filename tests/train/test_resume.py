"""Checkpoint → kill → resume reaches exactly the parameters of an uninterrupted run."""

import jax
import numpy as np
import pytest

from climml import pipeline
from climml.errors import CheckpointError
from climml.train.loop import fit, load_best


class Killed(Exception):
    pass


def _kill_at(step_to_die):
    def on_step(step):
        if step == step_to_die:
            raise Killed

    return on_step


@pytest.fixture(scope="module")
def exp(small_config):
    return pipeline.prepare(small_config())


def _fit(exp, workdir, **kw):
    cfg = exp.cfg
    return fit(
        pipeline.build_model(exp),
        exp.loader("train", training=True),
        exp.loader("val"),
        cfg.train,
        seed=cfg.seed,
        workdir=workdir,
        progress=False,
        **kw,
    )


def test_kill_and_resume_matches_uninterrupted_run(exp, tmp_path):
    full = _fit(exp, tmp_path / "full")
    steps_per_epoch = len(exp.loader("train"))
    die = steps_per_epoch + 3  # mid second epoch, after a step-count checkpoint
    with pytest.raises(Killed):
        _fit(exp, tmp_path / "killed", on_step=_kill_at(die))
    resumed = _fit(exp, tmp_path / "killed")
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    assert len(resumed.history) == 3


def test_finished_run_is_not_trained_again(exp, tmp_path):
    first = _fit(exp, tmp_path / "run")
    calls = []
    again = _fit(exp, tmp_path / "run", on_step=calls.append)
    assert calls == []  # nothing left to do
    assert again.history == first.history
    loader = exp.loader("train")
    best = load_best(
        pipeline.build_model(exp),
        exp.cfg.train,
        tmp_path / "run",
        steps_per_epoch=len(loader),
        batch_size=loader.batch_size,
    )
    for a, b in zip(jax.tree.leaves(best.params), jax.tree.leaves(first.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_early_stopping_keeps_best_epoch(exp, small_config, tmp_path):
    cfg = small_config("train.epochs=30", "train.patience=2", "train.lr=0.05")
    exp2 = pipeline.Experiment(cfg, exp.raw, exp.dataset, exp.normalizer, exp.anchors)
    result = _fit(exp2, tmp_path / "es")
    val = [h["val_loss"] for h in result.history]
    best = int(np.argmin(val))
    assert result.stopped_early and len(val) == best + 3  # two bad epochs after the best
    loader = exp2.loader("val")
    from climml.train.loop import Trainer

    trainer = Trainer(
        pipeline.build_model(exp2), cfg.train, steps_per_epoch=1, batch_size=loader.batch_size
    )
    assert trainer.evaluate(result.params, result.rest, loader.epoch(0)) == pytest.approx(val[best])


def test_load_best_without_checkpoint_is_a_checkpoint_error(exp, tmp_path):
    with pytest.raises(CheckpointError, match="run `climml train` first"):
        load_best(
            pipeline.build_model(exp),
            exp.cfg.train,
            tmp_path / "nothing",
            steps_per_epoch=1,
            batch_size=16,
        )
    assert not (tmp_path / "nothing").exists()


def test_mismatched_model_checkpoint_is_a_checkpoint_error(exp, small_config, tmp_path):
    _fit(exp, tmp_path / "run")
    cfg = small_config("model.hidden=[8]")
    other = pipeline.Experiment(cfg, exp.raw, exp.dataset, exp.normalizer, exp.anchors)
    with pytest.raises(CheckpointError, match="was the model configuration changed"):
        load_best(
            pipeline.build_model(other),
            cfg.train,
            tmp_path / "run",
            steps_per_epoch=len(other.loader("train")),
            batch_size=16,
        )
