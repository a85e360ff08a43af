"""The Python path a researcher takes: build a model by name, fit it, use it, predict to xarray."""

import os
import signal

import jax
import numpy as np
import pytest
import xarray as xr
from flax import nnx

import climml as cm
from climml import pipeline
from climml.errors import ConfigError
from climml.train.loop import TrainingInterrupted, fit


@pytest.fixture(scope="module")
def exp(small_config):
    return pipeline.prepare(small_config())


def _val_rmse(model, exp):
    """Normalized RMSE of ``model`` called directly on the validation batches."""
    errors, count = 0.0, 0.0
    for batch in exp.loader("val").epoch(0):
        w = np.asarray(batch.y_valid) * np.asarray(batch.weight)[:, None]
        err = np.asarray(model(batch.x)) - np.asarray(batch.y)
        errors, count = errors + float(np.sum(w * err**2)), count + float(np.sum(w))
    return np.sqrt(errors / count)


def test_build_by_name_or_config_class(exp):
    by_name = cm.models.build("mlp", exp.spec, rngs=nnx.Rngs(3), hidden=(8, 4))
    by_class = cm.models.build(cm.models.MLPConfig(hidden=(8, 4)), exp.spec, rngs=nnx.Rngs(3))
    leaves = [jax.tree.leaves(nnx.state(m, nnx.Param)) for m in (by_name, by_class)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    shapes = [p.shape for p in jax.tree.leaves(nnx.state(by_name, nnx.Param))]
    assert (8, 4) in shapes  # the hidden sizes were applied
    assert cm.models.configs()["cnn"] is cm.models.CNNConfig
    with pytest.raises(ConfigError, match="model.hiden: unknown key"):
        cm.models.build("mlp", exp.spec, hiden=(8,))
    with pytest.raises(ConfigError, match="model.name"):
        cm.models.build("transformer", exp.spec)


def test_fit_trains_the_passed_model_in_place(exp):
    cfg = exp.cfg
    model = cm.models.build("mlp", exp.spec, rngs=nnx.Rngs(0), hidden=(16,))
    untrained = _val_rmse(nnx.clone(model), exp)
    result = fit(
        model,
        exp.loader("train", training=True),
        exp.loader("val"),
        cfg.train,
        seed=0,
        progress=False,
    )
    assert result.model is model
    trained = _val_rmse(model, exp)
    assert trained < 0.9 * untrained
    # the model holds exactly the best parameters of the result, in eval mode
    for a, b in zip(
        jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(result.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    best_val = min(h["val_loss"] for h in result.history)
    assert trained**2 == pytest.approx(best_val, rel=1e-4)  # mse loss of the best epoch

    ds = cm.predict(model, exp, split="test")
    assert isinstance(ds, xr.Dataset) and ds["model"].dims == ("time", "lead")
    anchors = exp.anchors["test"]
    np.testing.assert_array_equal(ds["time"].values, exp.time[anchors])
    assert ds["lead_time"].dtype.kind == "m"  # timedelta
    months = (ds["lead_time"] / np.timedelta64(1, "D")).values
    assert months.shape == (anchors.size, 3)  # calendar months: valid_time - time per row
    np.testing.assert_allclose(months.mean(axis=0), np.array([1, 3, 6]) * 30.44, rtol=0.03)
    # the same numbers as the pipeline's wrapper of the result
    again = cm.predict(pipeline.TrainedModel(model, result), exp, split="test")
    np.testing.assert_array_equal(ds["model"].values, again["model"].values)


def test_progress_bar_and_early_stop_line(exp, small_config, capsys):
    cfg = small_config("train.epochs=30", "train.patience=2", "train.lr=0.05").train
    model = cm.models.build("mlp", exp.spec, rngs=nnx.Rngs(0), hidden=(16,))
    result = fit(
        model, exp.loader("train", training=True), exp.loader("val"), cfg, seed=0, progress=True
    )
    err = capsys.readouterr().err
    assert result.stopped_early
    assert f"early stop at epoch {len(result.history)}" in err
    assert "loss=" in err and "val_loss=" in err
    steps = len(exp.loader("train"))
    assert f"/{30 * steps}" in err  # one bar over every step of every epoch: an overall ETA


def test_sigint_stops_at_a_step_with_a_checkpoint_and_resumes_exactly(exp, tmp_path):
    cfg = exp.cfg

    def run(workdir, on_step=None):
        model = pipeline.build_model(exp)
        loaders = exp.loader("train", training=True), exp.loader("val")
        return model, fit(
            model, *loaders, cfg.train, seed=0, workdir=workdir, progress=False, on_step=on_step
        )

    _, full = run(tmp_path / "full")
    stop_at = len(exp.loader("train")) + 2  # mid second epoch, not a checkpoint_every step

    def ctrl_c(step):
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stop:
        run(tmp_path / "stopped", ctrl_c)
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    assert (stop.value.epoch, stop.value.step) == (2, stop_at)
    assert stop.value.checkpoint == (tmp_path / "stopped" / "checkpoints").absolute()
    assert (stop.value.checkpoint / str(stop_at)).is_dir()
    _, resumed = run(tmp_path / "stopped")
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
