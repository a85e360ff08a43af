"""climml sweep: grids parsed strictly, shape-keeping settings vmapped, each equal to its
separate run; table, plot and best config written; a re-run resumes."""

import dataclasses
import json

import numpy as np
import pytest

from climml import config, pipeline, sweep
from climml.cli import main
from climml.errors import ConfigError
from climml.train.ensemble import member_rngs
from climml.train.loop import fit

QUICKSTART = "configs/quickstart.yaml"


def test_grid_values_split_outside_brackets():
    grid = sweep.parse_grid(["train.lr=1e-3,3e-4", "model.filters=[16,32],[32,64]", "seed=0,1"])
    assert grid == {"train.lr": [1e-3, 3e-4], "model.filters": [[16, 32], [32, 64]], "seed": [0, 1]}


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (["train.lr"], "--grid"),
        (["train.lr="], "--grid"),
        (["train.lr=1e-3,1e-3"], "distinct"),
        (["train.lr=1e-3", "train.lr=3e-4"], "given twice"),
        (["model.filters=[16,32"], "comma-separated"),
        ([], "at least one"),
    ],
)
def test_bad_grids_are_config_errors(items, match):
    with pytest.raises(ConfigError, match=match):
        sweep.parse_grid(items)


def test_bad_grid_values_fail_like_any_config(tiny_quickstart):
    with pytest.raises(ConfigError, match="train.lr"):
        sweep.settings(QUICKSTART, {"train.lr": [1e-3, -1.0]}, tiny_quickstart)
    with pytest.raises(ConfigError, match="train.lrr"):
        sweep.settings(QUICKSTART, {"train.lrr": [1e-3]}, tiny_quickstart)


def test_shape_keeping_settings_share_a_group(tiny_quickstart):
    grid = {"train.lr": [1e-3, 3e-4], "seed": [0, 1], "model.hidden": [[8], [16]]}
    found = sweep.groups(sweep.settings(QUICKSTART, grid, tiny_quickstart))
    assert sorted(len(g) for g in found) == [4, 4]  # lr x seed vmapped, hidden looped
    for group in found:
        assert len({s.cfg.model.hidden for s in group}) == 1
    # dropout rates above 0 share a run; a rate of 0 (some models drop the layer) does not
    grid = {"model.dropout": [0.0, 0.1, 0.3]}
    found = sweep.groups(sweep.settings(QUICKSTART, grid, tiny_quickstart))
    assert sorted(len(g) for g in found) == [1, 2]


def _separate_best_val(cfg):
    exp = pipeline.prepare(cfg)
    model = pipeline.model_builder(exp)(member_rngs(cfg.seed))
    train, val = exp.loader("train", training=True), exp.loader("val")
    result = fit(model, train, val, cfg.train, seed=cfg.seed, progress=False)
    return [h["val_loss"] for h in result.history]


@pytest.mark.parametrize(
    "grid",
    [{"train.lr": [1e-3, 3e-3, 1e-2]}, {"seed": [0, 5]}, {"model.dropout": [0.05, 0.5]}],
)
def test_vmapped_sweep_equals_separate_runs(grid, tiny_quickstart, tmp_path):
    """One vmapped run of the settings; every member's validation losses are those of the
    separate run (a seed also changes the member's shuffle order, as it does alone)."""
    result = sweep.run(QUICKSTART, grid, overrides=tiny_quickstart, workdir=tmp_path)
    assert {r["members_in_group"] for r in result.rows} == {len(next(iter(grid.values())))}
    history = {}
    for group in (tmp_path / "groups").iterdir():
        assert (group / "checkpoints").is_dir()
    for s in sweep.settings(QUICKSTART, grid, tiny_quickstart):
        row = next(r for r in result.rows if r["id"] == s.id)
        history[s.id] = _separate_best_val(s.cfg)
        assert row["best_val_loss"] == pytest.approx(min(history[s.id]), rel=1e-5)
        assert row["best_epoch"] == int(np.argmin(history[s.id])) + 1
    losses = [r["best_val_loss"] for r in result.rows]
    assert losses == sorted(losses) and len(set(losses)) == len(losses)


def test_sweep_cli_writes_table_plot_best_config_and_resumes(
    tiny_quickstart, tmp_path, monkeypatch, capsys
):
    argv = ["sweep", QUICKSTART, "--workdir", str(tmp_path), "--set", *tiny_quickstart,
            "--grid", "train.lr=1e-3,1e-2", "--grid", "model.hidden=[8],[4]"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 4 and len({r["group"] for r in rows}) == 2  # hidden sizes loop
    table = (tmp_path / "results.csv").read_text().splitlines()
    assert table[0].split(",")[:3] == ["id", "train.lr", "model.hidden"]
    assert len(table) == 5 and table[1].split(",")[0] == rows[0]["id"]
    assert f"best: {rows[0]['id']}" in out
    assert (tmp_path / "validation.png").stat().st_size > 0
    best = config.load(tmp_path / "best.yaml")
    assert best.train.lr == rows[0]["train.lr"]
    assert list(best.model.hidden) == rows[0]["model.hidden"]
    chosen = [f"train.lr={rows[0]['train.lr']}", f"model.hidden={rows[0]['model.hidden']}"]
    assert config.differences(best, config.load(QUICKSTART, [*tiny_quickstart, *chosen])) == []

    # a re-run trains nothing; with one group's rows lost, only that group runs again (and
    # resumes from its finished checkpoint: no step taken)
    from climml.train import ensemble

    calls, steps = [], []
    real = ensemble.fit_members

    def counting(*args, **kwargs):
        calls.append(kwargs["seeds"])
        return real(*args, **kwargs, on_step=steps.append)

    monkeypatch.setattr(ensemble, "fit_members", counting)
    assert main(argv) == 0
    assert calls == []
    group = rows[0]["group"]
    kept = [r for r in rows if r["group"] != group]
    (tmp_path / "results.json").write_text(json.dumps(kept))
    assert main(argv) == 0
    assert len(calls) == 1 and steps == []
    again = json.loads((tmp_path / "results.json").read_text())
    assert again == rows


def test_sweep_refuses_ensembles(tiny_quickstart, tmp_path):
    overrides = [*tiny_quickstart, "train.ensemble_members=2"]
    with pytest.raises(ConfigError, match="train.ensemble_members"):
        sweep.run(QUICKSTART, ["train.lr=1e-3,3e-4"], overrides=overrides, workdir=tmp_path)
    assert main(["sweep", QUICKSTART, "--set", *overrides, "--grid", "train.lr=1e-3,3e-4",
                 "--workdir", str(tmp_path)]) == 2  # fmt: skip


def test_settings_keep_their_config(tiny_quickstart):
    (s,) = sweep.settings(QUICKSTART, {"train.weight_decay": [0.1]}, tiny_quickstart)
    base = config.load(QUICKSTART, tiny_quickstart)
    assert s.cfg == dataclasses.replace(
        base, train=dataclasses.replace(base.train, weight_decay=0.1)
    )
