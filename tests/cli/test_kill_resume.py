"""A real ``climml train`` process killed with SIGKILL resumes when the command is run again."""

import functools
import json
import os
import signal
import subprocess
import time

import pytest


def _checkpointed_beyond(workdir, step):
    """Whether ``workdir`` holds a checkpoint of a step after ``step``."""
    found = (workdir / "checkpoints").glob("[0-9]*") if workdir.exists() else []
    return any(p.name.isdigit() and int(p.name) > step for p in found)


def _history(workdir):
    return json.loads((workdir / "history.json").read_text())


@pytest.mark.slow
def test_sigkill_then_same_command_finishes_like_an_uninterrupted_run(tmp_path, start_training):
    train = functools.partial(start_training, stdout=subprocess.DEVNULL)
    assert train(tmp_path / "full").wait(timeout=600) == 0
    killed = tmp_path / "killed"
    proc = train(killed)
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
    assert train(killed).wait(timeout=600) == 0
    full, resumed = _history(tmp_path / "full"), _history(killed)
    assert [h["val_loss"] for h in full] == [h["val_loss"] for h in resumed]
    assert [h["train_loss"] for h in full] == [h["train_loss"] for h in resumed]
