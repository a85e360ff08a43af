"""The command line end to end on the quickstart config shrunk by overrides."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from climml.cli import baseline_summary, main
from climml.data import Normalizer


@pytest.fixture(scope="module")
def shrink(tiny_quickstart):
    """The tiny quickstart without explanations."""
    return [*tiny_quickstart, "eval.explain.enabled=false"]


def test_run_writes_the_whole_report(tmp_path, capsys, shrink):
    workdir = tmp_path / "run"
    assert (
        main(["run", "configs/quickstart.yaml", "--workdir", str(workdir), "--set", *shrink]) == 0
    )
    for name in [
        "config.yaml",
        "history.json",
        "metrics.json",
        "normalizer.nc",
        "loss_curve.png",
        "skill_by_lead.png",
        "predictions.zarr",
        "checkpoints",
    ]:
        assert (workdir / name).exists(), name
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert set(metrics) == {"model", "persistence", "climatology", "model_beats"}
    assert set(metrics["model"]) == {"rmse", "mae", "acc"}
    assert set(metrics["model"]["rmse"]) == {"1", "3", "6"}
    assert metrics["climatology"]["rmse"]["1"] > 0
    preds = xr.open_zarr(workdir / "predictions.zarr")
    assert preds["model"].dims == ("time", "lead") and list(preds["lead"].values) == [1, 3, 6]
    assert set(preds.data_vars) == {"model", "persistence", "climatology", "observed"}
    # persistence carries the anomaly observed at the last input month to the valid month
    norm = Normalizer.from_dataset(xr.open_dataset(workdir / "normalizer.nc"))
    per = preds["persistence"].sel(lead=3)
    valid_time = preds["valid_time"].sel(lead=3).values
    per_anom = per.values - norm.invert(np.zeros(per.shape, np.float32), "nino34", time=valid_time)
    obs = preds["observed"].sel(lead=1)  # valid at init + 1
    obs_anom = obs.values - norm.invert(
        np.zeros(obs.shape, np.float32), "nino34", time=preds["valid_time"].sel(lead=1).values
    )
    np.testing.assert_allclose(per_anom[1:], obs_anom[:-1], atol=1e-4)
    # the climatology is the training mean of each calendar month: in these monthly anomalies it
    # is small next to the observed ones and the same in every year
    clim = preds["climatology"].sel(lead=1)
    clim_anom = clim.values - norm.invert(
        np.zeros(clim.shape, np.float32), "nino34", time=preds["valid_time"].sel(lead=1).values
    )
    assert np.abs(clim_anom).max() < 0.2 * np.nanstd(obs_anom)
    month = preds["valid_time"].sel(lead=1).dt.month.values
    for m in range(1, 13):
        np.testing.assert_allclose(clim_anom[month == m], clim_anom[month == m][0], atol=1e-5)

    # evaluate and predict reuse the trained run without training again
    assert (
        main(["evaluate", "configs/quickstart.yaml", "--workdir", str(workdir), "--set", *shrink])
        == 0
    )
    printed = capsys.readouterr().out.split("run written to")[-1].split("\n", 1)[1]
    # the scores as JSON; model_beats (in metrics.json) as one summary line per baseline
    scores = {name: value for name, value in metrics.items() if name != "model_beats"}
    assert json.JSONDecoder().raw_decode(printed)[0] == scores
    assert len([x for x in printed.splitlines() if x.startswith("model ")]) == 2
    out = tmp_path / "val.zarr"
    assert (
        main(
            [
                "predict",
                "configs/quickstart.yaml",
                "--workdir",
                str(workdir),
                "--split",
                "val",
                "--output",
                str(out),
                "--set",
                *shrink,
            ]
        )
        == 0
    )
    assert xr.open_zarr(out)["model"].sizes["lead"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lrr=1"], "train.lrr: unknown key (did you mean 'lr'?)"),
        (["--set", "train.epochs=x"], "train.epochs: expected int, found 'x'"),
        (["--set", "data.inputs=[sst, salinity]"], "salinity"),
        (["--set", "data.source=/no/such/store.zarr"], "data.source"),
        (["--set", "eval.task=forecast"], "eval.task"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, args, message):
    workdir = tmp_path / "bad"
    assert main(["run", "configs/quickstart.yaml", "--workdir", str(workdir), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("climml: error: ") and message in lines[0]
    assert not workdir.exists()  # nothing half-written


def test_console_script_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "climml.cli",
            "run",
            "configs/quickstart.yaml",
            "--workdir",
            str(tmp_path / "bad"),
            "--set",
            "model.filtres=[4]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "climml: error: model.filtres: unknown key (did you mean 'filters'?)"
    )


def test_workdir_of_another_experiment_is_refused(tmp_path, capsys, shrink):
    args = ["train", "configs/quickstart.yaml", "--workdir", str(tmp_path / "run"), "--set"]
    assert main([*args, *shrink, "train.epochs=1"]) == 0
    assert main([*args, *shrink, "train.epochs=1", "train.lr=0.5"]) == 2
    assert "differs at train.lr" in capsys.readouterr().err


def test_baseline_summary_counts_wins_and_names_a_few_lost_metrics():
    leads = ["5", "10", "15"]
    beats = {
        "persistence": {f"csi@{t}": {k: t != 8 for k in leads} for t in (1, 2, 4, 8)},
        "advection": {
            f"{m}@1": {k: k == "5" for k in leads} for m in ("csi", "pod", "far", "fss", "crps")
        },
    }
    persistence, advection = baseline_summary(beats, most=3)
    assert persistence == "model does NOT beat persistence: won 9/12; lost csi@8 at lead 5, 10, 15"
    assert advection == (
        "model does NOT beat advection: won 5/15; lost csi@1 at lead 10, 15;"
        " pod@1 at lead 10, 15; far@1 at lead 10, 15; and 2 more metrics"
    )
    assert baseline_summary({"steps": {"crps": {"5": True}}}) == [
        "model beats steps on every score"
    ]
