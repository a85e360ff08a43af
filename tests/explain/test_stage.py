"""The explain stage end to end: ``climml run`` with explain enabled, then ``climml explain``."""

import json

import numpy as np
import pytest
import xarray as xr

from climml.cli import main

CHANNELS = ["sst", "heat_content", "mask"]


@pytest.fixture(scope="module")
def shrink(tiny_quickstart):
    """The tiny quickstart with 2 permutation repeats."""
    return [*tiny_quickstart, "eval.explain.n_repeats=2"]


def _run_args(workdir, shrink, *overrides: str) -> list[str]:
    """``climml run`` of the ``shrink`` overrides with explanations on, plus ``overrides``."""
    args = ["run", "configs/quickstart.yaml", "--workdir", str(workdir), "--set", *shrink]
    return [*args, "eval.explain.enabled=true", *overrides]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shrink):
    workdir = tmp_path_factory.mktemp("explain") / "run"
    assert main(_run_args(workdir, shrink)) == 0
    return workdir


def test_run_writes_importance_and_saliency(run_dir):
    for name in [
        "importance.nc",
        "importance.png",
        "importance.json",
        "saliency.nc",
        "saliency.png",
    ]:
        assert (run_dir / name).is_file(), name
    ds = xr.open_dataset(run_dir / "importance.nc")
    assert list(ds.feature.values) == CHANNELS
    assert sorted(ds.selected.values) == sorted(CHANNELS)
    assert ds.attrs["score"] == "rmse"
    # the validity mask is the same map in every sample: permuting it across samples is a no-op
    assert abs(float(ds.singlepass_importance.sel(feature="mask"))) < 1e-6
    maps = xr.open_dataset(run_dir / "saliency.nc").saliency
    assert maps.dims == ("lat", "lon", "channel") and maps.shape == (12, 24, 3)
    assert np.isfinite(maps.values).all() and np.abs(maps.sel(channel="sst")).max() > 0


def test_metrics_json_holds_the_importances(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    importance = json.loads((run_dir / "importance.json").read_text())
    assert {"rmse", "singlepass_importance", "multipass_rank"} <= set(metrics["model"])
    assert set(metrics["model"]["singlepass_importance"]) == set(CHANNELS)
    assert sorted(metrics["model"]["multipass_rank"].values()) == [1.0, 2.0, 3.0]
    for key, values in importance["model"].items():
        assert metrics["model"][key] == values


def test_explain_command_reproduces_the_run(run_dir, shrink, capsys):
    before = json.loads((run_dir / "importance.json").read_text())
    capsys.readouterr()
    assert (
        main(["explain", "configs/quickstart.yaml", "--workdir", str(run_dir), "--set", *shrink])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == before  # same seed, same permutations


def test_bad_explain_config_fails_before_training(tmp_path, shrink, capsys):
    workdir = tmp_path / "bad"
    args = _run_args(workdir, shrink, "eval.explain.score=auc")
    assert main(args) == 2
    assert "eval.explain.score: expected one of" in capsys.readouterr().err
    assert not workdir.exists()
    assert main(["explain", "configs/quickstart.yaml", "--workdir", str(workdir)]) == 2
    assert "expected a trained run" in capsys.readouterr().err
