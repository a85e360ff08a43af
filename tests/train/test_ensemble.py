"""Members trained in one vmapped step equal separate runs with the same keys."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from climml import models, pipeline
from climml.errors import CheckpointError, ConfigError
from climml.train.ensemble import (
    EnsembleModel,
    Resampled,
    bootstrap_counts,
    fit_members,
    load_members,
    member_rngs,
    member_seeds,
)
from climml.train.loop import fit


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def exp(small_config):
    # 2 epochs, a checkpoint every 4 steps; dropout on (member keys matter), cosine schedule
    return pipeline.prepare(small_config("train.epochs=2"))


def _builder(exp):
    return lambda rngs: models.build(exp.cfg.model, exp.spec, rngs)


def _separate(exp, seed, loader=None, cfg=None):
    cfg = cfg or exp.cfg.train
    return fit(
        _builder(exp)(member_rngs(seed)),
        loader or exp.loader("train", training=True),
        exp.loader("val"),
        cfg,
        seed=seed,
        progress=False,
    )


def _assert_member_equals(result, i, single, lr=1e-3):
    """Equal up to float32 rounding. The vmapped (batched) products sum in another order, and
    Adam divides by sqrt(v): a weight whose gradient is rounding noise (inputs that are almost
    always 0) moves by a fraction of the learning rate either way, and the differences grow
    with ``lr``. So: every parameter within 5% of one step ``lr``, all but 0.1% within 0.2%
    of it (a wrong learning rate, key or sample weight moves most parameters by ~``lr``)."""
    params, _ = result.member(i)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(single.params), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=0, atol=0.05 * lr)
        assert np.mean(np.abs(a - b) > 2e-3 * lr) < 1e-3


def test_member_rngs_build_the_pipelines_model(exp):
    """member 0 of an ensemble is the single-model run: the same initial parameters."""
    a = pipeline.build_model(exp)
    b = _builder(exp)(member_rngs(exp.cfg.seed))
    from flax import nnx

    for x, y in zip(
        jax.tree.leaves(nnx.state(a, nnx.Param)),
        jax.tree.leaves(nnx.state(b, nnx.Param)),
        strict=True,
    ):  # noqa: E501
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_four_vmapped_members_equal_four_separate_runs(exp):
    seeds = member_seeds(exp.cfg.seed, 4)
    result = fit_members(
        _builder(exp),
        exp.loader("train", training=True),
        exp.loader("val"),
        exp.cfg.train,
        seeds=seeds,
        progress=False,
    )
    assert result.members == 4
    singles = [_separate(exp, s) for s in seeds]
    for i, single in enumerate(singles):
        _assert_member_equals(result, i, single)
        member_val = [h["member_val_loss"][i] for h in result.history]
        np.testing.assert_allclose(member_val, [h["val_loss"] for h in single.history], rtol=1e-5)
    # the members differ from each other (different init and dropout keys)
    p0, p1 = (jax.tree.leaves(result.member(i)[0])[0] for i in (0, 1))
    assert not np.allclose(np.asarray(p0), np.asarray(p1))


def test_vmapped_and_unrolled_members_agree(exp, monkeypatch):
    """The accelerator path (vmap) and the CPU path (members unrolled in one program) train the
    same members (with per-member learning rates and bootstrap weights)."""
    from climml.train import ensemble

    cfg = dataclasses.replace(exp.cfg.train, epochs=2)
    args = (_builder(exp), exp.loader("train", training=True), exp.loader("val"), cfg)
    kw = dict(seeds=[0, 1, 2], hyper={"lr": [1e-3, 3e-3, 1e-4]}, bootstrap=True, progress=False)
    unrolled = fit_members(*args, **kw)
    monkeypatch.setattr(ensemble, "_vectorize", lambda: True)
    vmapped = fit_members(*args, **kw)
    for a, b in zip(jax.tree.leaves(unrolled.params), jax.tree.leaves(vmapped.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1.5e-4)
    np.testing.assert_allclose(
        [h["member_val_loss"] for h in unrolled.history],
        [h["member_val_loss"] for h in vmapped.history],
        rtol=1e-4,
    )


def test_bootstrap_members_equal_separate_runs_on_their_resamples(exp):
    seeds = member_seeds(exp.cfg.seed + 10, 4)
    train = exp.loader("train", training=True)
    result = fit_members(
        _builder(exp), train, exp.loader("val"), exp.cfg.train,
        seeds=seeds, bootstrap=True, progress=False,
    )  # fmt: skip
    n = len(train.anchors)
    for i, seed in enumerate(seeds):
        counts = bootstrap_counts(seed, n)
        assert counts.sum() == n and (counts == 0).any()  # a resample leaves samples out
        single = _separate(exp, seed, loader=Resampled(exp.loader("train", training=True), counts))
        _assert_member_equals(result, i, single)
    # without resampling the same seeds train differently
    plain = _separate(exp, seeds[0])
    p_boot, p_plain = jax.tree.leaves(result.member(0)[0])[0], jax.tree.leaves(plain.params)[0]
    assert not np.allclose(np.asarray(p_boot), np.asarray(p_plain), atol=1e-4)


def test_early_stopped_member_is_frozen_at_its_best(exp):
    """Per-member patience: the member with the large learning rate stops after 2 epochs while
    the other trains all 5; both equal their separate runs."""
    cfg = dataclasses.replace(exp.cfg.train, epochs=5, patience=1, schedule="constant")
    seeds, lrs = [3, 3], [1e-4, 3e-3]
    result = fit_members(
        _builder(exp), exp.loader("train", training=True), exp.loader("val"), cfg,
        seeds=seeds, hyper={"lr": lrs}, progress=False,
    )  # fmt: skip
    singles = [_separate(exp, 3, cfg=dataclasses.replace(cfg, lr=lr)) for lr in lrs]
    assert [len(s.history) for s in singles] == [5, 2]  # the premise: one stops early
    assert [h["member_active"] for h in result.history] == [[True, True]] * 2 + [[True, False]] * 3
    for i, single in enumerate(singles):
        _assert_member_equals(result, i, single, lr=lrs[i])
        assert result.best_val[i] == pytest.approx(
            min(h["val_loss"] for h in single.history), rel=1e-5
        )
    assert not result.stopped_early


def test_kill_and_resume_members(exp, tmp_path):
    seeds = member_seeds(0, 3)
    kw = dict(seeds=seeds, progress=False)
    args = (_builder(exp), exp.loader("train", training=True), exp.loader("val"), exp.cfg.train)
    full = fit_members(*args, workdir=tmp_path / "full", **kw)
    die = len(exp.loader("train")) + 5  # mid second epoch, after a step-count checkpoint

    def on_step(step):
        if step == die:
            raise Killed

    with pytest.raises(Killed):
        fit_members(*args, workdir=tmp_path / "killed", on_step=on_step, **kw)
    resumed = fit_members(*args, workdir=tmp_path / "killed", **kw)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert full.history == [
        {**h, "wall_s": f["wall_s"], "data_wait_s": f["data_wait_s"]}
        for h, f in zip(resumed.history, full.history, strict=True)
    ]
    loader = exp.loader("train")
    loaded = load_members(
        _builder(exp), exp.cfg.train, tmp_path / "full", seeds=seeds,
        steps_per_epoch=len(loader), batch_size=loader.batch_size,
    )  # fmt: skip
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(CheckpointError, match=r"expected \(2, 16\), found \(3, 16\)"):
        load_members(
            _builder(exp), exp.cfg.train, tmp_path / "full", seeds=[0, 1],
            steps_per_epoch=len(loader), batch_size=loader.batch_size,
        )  # fmt: skip


def test_ensemble_model_predicts_members_and_their_mean(exp):
    seeds = member_seeds(0, 3)
    result = fit_members(
        _builder(exp), exp.loader("train", training=True), exp.loader("val"),
        dataclasses.replace(exp.cfg.train, epochs=1), seeds=seeds, progress=False,
    )  # fmt: skip
    model = EnsembleModel(_builder(exp)(member_rngs(0)), result)
    batch = next(iter(exp.loader("test").epoch(0)))
    members = model.predict_members(batch)
    assert members.shape == (batch.x.shape[0], 3, *exp.spec.output_shape)
    np.testing.assert_allclose(model.predict(batch), members.mean(axis=1), rtol=1e-6)
    # member i is the single model with member i's parameters
    one = _builder(exp)(member_rngs(0))
    nnx.update(one, *result.member(2))
    one.eval()
    np.testing.assert_allclose(np.asarray(one(batch.x)), members[:, 2], rtol=1e-5, atol=1e-6)


def test_bad_member_settings_are_config_errors(exp):
    args = (_builder(exp), exp.loader("train", training=True), exp.loader("val"), exp.cfg.train)
    with pytest.raises(ConfigError, match="member hyperparameters"):
        fit_members(*args, seeds=[0, 1], hyper={"lr": [1e-3]}, progress=False)
    with pytest.raises(ConfigError, match="member hyperparameters"):
        fit_members(*args, seeds=[0, 1], hyper={"momentum": [0.1, 0.2]}, progress=False)


def test_ensemble_run_reports_crps_spread_skill_and_rank_histograms(small_config, tmp_path):
    properscoring = pytest.importorskip("properscoring")
    import json

    import xarray as xr

    cfg = small_config(
        "train.epochs=1",
        "train.ensemble_members=3",
        "eval.metrics=[rmse, mae, crps]",
        "eval.explain.enabled=false",
    )
    exp = pipeline.prepare(cfg)
    result = pipeline.run(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == result.metrics
    model, persistence = metrics["model"], metrics["persistence"]
    ds = xr.open_zarr(tmp_path / "run" / "predictions.zarr")
    assert ds["model"].dims == ("time", "member", "lead") and ds.sizes["member"] == 3
    for i, lead in enumerate(str(lead) for lead in cfg.data.leads):
        assert model["crps"][lead] >= 0 and model["spread"][lead] > 0
        assert np.isfinite(model["spread_skill"][lead])
        ranks = model["rank_histogram"][lead]
        assert len(ranks) == 4 and sum(ranks) == pytest.approx(1.0, rel=1e-5)
        # a deterministic forecast's CRPS is its MAE
        assert persistence["crps"][lead] == pytest.approx(persistence["mae"][lead], rel=1e-4)
        # float64 reference on the written forecasts (the Nino3.4 index: one point per time)
        at = ds.isel(lead=i).astype(np.float64)
        fc = at["model"].transpose("time", "member").values
        ref = properscoring.crps_ensemble(at["observed"].values, fc).mean()
        assert model["crps"][lead] == pytest.approx(ref, rel=1e-4)
        mean = fc.mean(axis=1)
        rmse = np.sqrt(np.mean((mean - at["observed"].values) ** 2))
        spread = np.sqrt(np.mean(fc.var(axis=1, ddof=1) * 4 / 3))
        assert model["spread_skill"][lead] == pytest.approx(spread / rmse, rel=1e-4)
        assert model["rmse"][lead] == pytest.approx(rmse, rel=1e-4)  # the ensemble mean's
    assert (tmp_path / "run" / "rank_histogram.png").is_file()
    assert "crps" in metrics["model_beats"]["persistence"]
    forecast = pipeline.forecast(pipeline.trained_model(exp, tmp_path / "run"), exp)
    assert forecast["model"].sizes["member"] == 3


def test_crps_needs_an_ensemble(small_config):
    with pytest.raises(ConfigError, match="crps"):
        pipeline.prepare(small_config("eval.metrics=[rmse, crps]"))
