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


def _checkpointed_beyond(workdir, step):
    """Whether ``workdir`` holds a checkpoint of a step after ``step``."""
    found = (workdir / "checkpoints").glob("[0-9]*") if workdir.exists() else []
    return any(p.name.isdigit() and int(p.name) > step for p in found)


def _history(workdir):
    return json.loads((workdir / "history.json").read_text())


@pytest.mark.slow
def test_sigkill_then_same_command_finishes_like_an_uninterrupted_run(tmp_path):
    assert _train(tmp_path / "full").wait(timeout=600) == 0
    killed = tmp_path / "killed"
    proc = _train(killed)
    # Poll (no fixed sleep) for a checkpoint beyond the first epoch; the deadline is only a guard
    # against a hung child, so a slow host waits longer instead of failing.
    deadline = time.monotonic() + 600
    while not _checkpointed_beyond(killed, 30):
        assert proc.poll() is None, "training ended before a checkpoint could be seen"
        assert time.monotonic() < deadline, "no checkpoint beyond step 30 within 600 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "history.json").exists()  # it really died mid-training
    assert _train(killed).wait(timeout=600) == 0
    full, resumed = _history(tmp_path / "full"), _history(killed)
    assert [h["val_loss"] for h in full] == [h["val_loss"] for h in resumed]
    assert [h["train_loss"] for h in full] == [h["train_loss"] for h in resumed]
