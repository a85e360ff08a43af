"""A real ``climml train`` process killed with SIGKILL resumes when the command is run again."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SHRINK = [
    "data.source_args={n_months: 600, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1899-12], val: [1900-01, 1909-12], test: [1910-01, 1919-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
    "train.epochs=12",
    "train.patience=null",
    "train.checkpoint_every=5",
    "output.progress=false",
]


def _train(workdir, **kw):
    cmd = [
        sys.executable,
        "-m",
        "climml.cli",
        "train",
        "configs/quickstart.yaml",
        "--workdir",
        str(workdir),
        "--set",
        *SHRINK,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _history(workdir):
    return json.loads((workdir / "history.json").read_text())


@pytest.mark.slow
def test_sigkill_then_same_command_finishes_like_an_uninterrupted_run(tmp_path):
    assert _train(tmp_path / "full").wait(timeout=600) == 0
    killed = tmp_path / "killed"
    proc = _train(killed)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a checkpoint beyond the first epoch
        steps = [p for p in (killed / "checkpoints").glob("[0-9]*")] if killed.exists() else []
        if any(p.name.isdigit() and int(p.name) > 30 for p in steps):
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "history.json").exists()  # it really died mid-training
    assert _train(killed).wait(timeout=600) == 0
    full, resumed = _history(tmp_path / "full"), _history(killed)
    assert [h["val_loss"] for h in full] == [h["val_loss"] for h in resumed]
    assert [h["train_loss"] for h in full] == [h["train_loss"] for h in resumed]
