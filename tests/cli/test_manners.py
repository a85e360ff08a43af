"""How the command line behaves around a run: interrupts, merged metrics, output formats, noise."""

import json
import os
import re
import signal
import time

import numpy as np
import pytest
import xarray as xr

from climml.cli import main

EXPLAIN = ["eval.explain.enabled=true", "eval.explain.n_repeats=1", "eval.explain.max_passes=1"]


@pytest.fixture(scope="module")
def cli(tiny_quickstart):
    """``cli(command, workdir, *extra)``: ``climml`` on the tiny quickstart with explanations."""

    def run(command, workdir, *extra):
        return main([command, "configs/quickstart.yaml", "--workdir", str(workdir), *extra,
                     "--set", *tiny_quickstart, *EXPLAIN])  # fmt: skip

    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli):
    """A tiny run with permutation importance, trained once for the tests below."""
    workdir = tmp_path_factory.mktemp("run") / "run"
    assert cli("run", workdir) == 0
    return workdir


def test_evaluate_merges_into_metrics_json_and_reports_baselines(trained, cli, capsys):
    before = json.loads((trained / "metrics.json").read_text())
    assert "singlepass_importance" in before["model"]
    capsys.readouterr()
    assert cli("evaluate", trained) == 0
    out = capsys.readouterr().out
    after = json.loads((trained / "metrics.json").read_text())
    assert after == before  # same trained model: same scores, importance entries kept
    beats = after["model_beats"]
    assert set(beats) == {"persistence", "climatology"}
    for baseline, by_metric in beats.items():
        for metric, by_lead in by_metric.items():
            for lead, won in by_lead.items():
                ours, theirs = after["model"][metric][lead], after[baseline][metric][lead]
                assert won == (ours < theirs if metric != "acc" else ours > theirs)
        lost = [f"{m} at lead" for m, leads in by_metric.items() if not all(leads.values())]
        won_all, lost_some = f"model beats {baseline} ", f"model does NOT beat {baseline}: "
        line = next(x for x in out.splitlines() if x.startswith((won_all, lost_some)))
        if lost:
            assert line.startswith(lost_some) and lost[0] in line
        else:
            assert line == f"model beats {baseline} on every score"


def test_explain_alone_merges_too(trained, cli):
    assert cli("explain", trained) == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert "rmse" in metrics["model"] and "multipass_rank" in metrics["model"]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_predict_writes_the_format_its_suffix_names(trained, cli, tmp_path, suffix):
    out = tmp_path / f"forecast{suffix}"
    assert cli("predict", trained, "--split", "val", "--output", str(out)) == 0
    if suffix == ".nc":
        assert out.is_file() and out.read_bytes()[:4] in (b"CDF\x01", b"CDF\x02", b"\x89HDF")
        ds = xr.open_dataset(out)
    else:
        assert (out / "zarr.json").is_file() or (out / ".zgroup").is_file()
        ds = xr.open_zarr(out)
    assert ds["model"].dims == ("time", "lead") and list(ds["lead"].values) == [1, 3, 6]
    days = (ds["lead_time"] / np.timedelta64(1, "D")).values
    np.testing.assert_allclose(days.mean(axis=0), [30.4, 91.3, 182.6], rtol=0.03)


def test_predict_to_an_unknown_suffix_is_a_config_error(trained, cli, tmp_path, capsys):
    out = tmp_path / "forecast.csv"
    assert cli("predict", trained, "--output", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("climml: error: --output: expected a path ending")
    assert "forecast.csv" in err[0] and not out.exists()


LINE = re.compile(
    r"climml: interrupted at epoch (\d+) step (\d+); checkpoint saved to (\S+); "
    r"re-run the same command to resume"
)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_is_one_line_status_128_plus_signal_and_a_checkpoint_to_resume_from(
    tmp_path, sig, start_training
):
    workdir = tmp_path / "run"
    proc = start_training(workdir)
    deadline = time.time() + 300
    while not any((workdir / "checkpoints").glob("[0-9]*")):  # training has started
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err  # 130 for SIGINT, 143 for SIGTERM
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no traceback, no third-party chatter
    match = LINE.fullmatch(lines[0])
    assert match, lines[0]
    epoch, step, directory = int(match[1]), int(match[2]), match[3]
    assert directory == str((workdir / "checkpoints").absolute())
    assert (workdir / "checkpoints" / str(step)).is_dir()
    assert 1 <= epoch <= 12 and step >= 1
    resumed = start_training(workdir)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    history = json.loads((workdir / "history.json").read_text())
    assert len(history) == 12 and "trained 12 epochs" in out
