"""climml as a preemptible batch job: signals, kill -9 and resume, finished re-runs, the
compilation cache and the JSON-lines log (``climml.jobs``)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from climml import config, jobs, pipeline
from climml.train.checkpoint import Checkpointer
from climml.train.loop import Trainer

# A tiny quickstart that checkpoints every 2 steps: 3 epochs of 6 steps, no early stop.
SHORT = ["train.epochs=3", "train.patience=null", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def overrides(tiny_quickstart):
    return [*tiny_quickstart, *SHORT, "eval.explain.enabled=false"]


def _command(command, workdir, overrides, *extra):
    return [sys.executable, "-m", "climml.cli", command, "configs/quickstart.yaml",
            "--workdir", str(workdir), *extra, "--set", *overrides]  # fmt: skip


def _env(cache):
    return {**os.environ, jobs.CACHE_ENV: str(cache)}


def _train(workdir, overrides, cache, *extra, **popen_kw):
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(
        _command("train", workdir, overrides, *extra), env=_env(cache), **{**pipes, **popen_kw}
    )


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def _saved(workdir, overrides):
    """The last checkpoint of ``workdir``: ``(leaves of state and best parameters, metadata)``."""
    cfg = config.load("configs/quickstart.yaml", overrides)
    exp = pipeline.prepare(cfg)
    loader = exp.loader("train")
    trainer = Trainer(
        pipeline.build_model(exp),
        cfg.train,
        steps_per_epoch=len(loader),
        batch_size=loader.batch_size,
    )
    like = {"state": trainer.initial, "best": (trainer.initial.params, trainer.initial.rest)}
    ckpt = Checkpointer(workdir / "checkpoints", cfg.train.keep_checkpoints)
    try:
        tree, meta = ckpt.restore(like)
    finally:
        ckpt.close()
    return [np.asarray(_raw(x)) for x in jax.tree.leaves(tree)], meta


def _raw(x):
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _assert_same_run(a, b):
    (leaves_a, meta_a), (leaves_b, meta_b) = a, b
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise: a resumed run is the same run
    timings = ("wall_s", "data_wait_s")
    for meta in (meta_a, meta_b):
        meta["history"] = [
            {k: v for k, v in h.items() if k not in timings} for h in meta["history"]
        ]
    assert meta_a == meta_b  # position, early-stopping state and every epoch's losses


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, overrides):
    """A run of ``SHORT`` that nothing stopped, its wall time with a warm compilation cache (as
    the runs killed below have), and that cache."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(_train(root / "warm-up", overrides, root / "cache"))
    started = time.monotonic()
    _finish(_train(root / "run", overrides, root / "cache"))
    return root / "run", time.monotonic() - started, root / "cache"


def _kill_at_random_moments(workdir, overrides, cache, duration, rng, kills):
    """Start the same command ``kills`` times, each killed with SIGKILL after a random delay
    (within the length of an uninterrupted run), then once more to the end. Returns how many
    were still running when killed."""
    killed = 0
    for _ in range(kills):
        proc = _train(workdir, overrides, cache, stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.8) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
    _finish(_train(workdir, overrides, cache))
    return killed


def test_kill_9_then_same_command_gives_the_parameters_of_an_uninterrupted_run(
    tmp_path, overrides, uninterrupted
):
    full, duration, cache = uninterrupted
    rng = np.random.default_rng(0)
    assert _kill_at_random_moments(tmp_path / "run", overrides, cache, duration, rng, kills=1)
    _assert_same_run(_saved(full, overrides), _saved(tmp_path / "run", overrides))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(4))
def test_repeated_kill_9_at_random_moments_resumes_exactly(
    tmp_path, overrides, uninterrupted, trial
):
    full, duration, cache = uninterrupted
    rng = np.random.default_rng(100 + trial)
    killed = _kill_at_random_moments(tmp_path / "run", overrides, cache, duration, rng, kills=3)
    assert killed >= 1  # at least one kill hit a running job
    _assert_same_run(_saved(full, overrides), _saved(tmp_path / "run", overrides))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["event"] for r in log} <= {"step", "epoch"}  # no torn line left by a kill


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, start_training):
    workdir = tmp_path / "run"
    proc = start_training(workdir)
    deadline = time.monotonic() + 600
    while not any((workdir / "checkpoints").glob("[0-9]*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == jobs.EXIT_SIGTERM == 143, err
    (line,) = err.strip().splitlines()
    step = int(line.split(" step ")[1].split(";")[0])
    assert (workdir / "checkpoints" / str(step)).is_dir()  # the step it stopped at was saved
    assert not (workdir / jobs.DONE_FILE).exists()  # an interrupted run is not finished


def test_finished_rerun_is_a_no_op_and_force_runs_again(tmp_path, overrides, uninterrupted):
    full, _, cache = uninterrupted
    workdir = tmp_path / "run"
    _finish(_train(workdir, overrides, cache))
    assert any(cache.iterdir())  # the compilation cache folder is populated
    done = json.loads((workdir / jobs.DONE_FILE).read_text())
    assert set(done) == {"train"}
    log_before = (workdir / "log.jsonl").read_text()
    # the same command again: one line, status 0, nothing trained or written
    out = _finish(_train(workdir, overrides, cache))
    assert out.strip().splitlines() == [
        f"climml: train already finished in {workdir} at {done['train']['finished_at']}; "
        "nothing to do (--force runs it again from the start)"
    ]
    assert (workdir / "log.jsonl").read_text() == log_before
    # --force: trained again from the initial parameters, to the same result
    out = _finish(_train(workdir, overrides, cache, "--force"))
    assert "trained 3 epochs" in out
    records = (workdir / "log.jsonl").read_text()[len(log_before) :].splitlines()
    assert json.loads(records[0]) | {"event": "step", "step": 2} == json.loads(records[0])
    _assert_same_run(_saved(full, overrides), _saved(workdir, overrides))
    # another experiment in the same workdir is refused, not skipped as finished, and --force
    # does not delete the run it would refuse
    for extra in ((), ("--force",)):
        proc = _train(workdir, [*overrides, "train.lr=0.5"], cache, *extra)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == jobs.EXIT_ERROR and "differs at train.lr" in err
    _assert_same_run(_saved(full, overrides), _saved(workdir, overrides))


def test_log_jsonl_has_a_record_per_checkpoint_and_per_epoch(uninterrupted):
    workdir, _, _ = uninterrupted
    records = [json.loads(x) for x in (workdir / "log.jsonl").read_text().splitlines()]
    history = json.loads((workdir / "history.json").read_text())
    steps = [r for r in records if r["event"] == "step"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == [2, 4, 8, 10, 14, 16]  # every 2 steps; epochs of 6
    assert [r["step"] for r in epochs] == [6, 12, 18]
    assert [r["val_loss"] for r in epochs] == [h["val_loss"] for h in history]
    assert [r["train_loss"] for r in epochs] == [h["train_loss"] for h in history]
    assert "samples_per_s" not in records[0]  # its interval would include the compilation
    assert all(r["samples_per_s"] > 0 for r in records[1:])
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)


# --------------------------------------------------------------------------- unit level


def test_compilation_cache_folder_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(jobs.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jobs.compilation_cache_dir(True) == tmp_path / "xdg" / "climml" / "jax"
    assert jobs.compilation_cache_dir(False) is None
    assert jobs.compilation_cache_dir(str(tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.setenv(jobs.CACHE_ENV, str(tmp_path / "env"))
    assert jobs.compilation_cache_dir(True) == tmp_path / "env"
    assert jobs.compilation_cache_dir(str(tmp_path / "mine")) == tmp_path / "mine"
    for off in ("off", "false", "0", ""):
        monkeypatch.setenv(jobs.CACHE_ENV, off)
        assert jobs.compilation_cache_dir(True) is None


def test_compilation_cache_is_written_by_a_compile(tmp_path):
    script = (
        "import jax, jax.numpy as jnp; from climml import jobs;"
        f"jobs.use_compilation_cache({str(tmp_path / 'cache')!r});"
        "print(jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).sum())"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert any((tmp_path / "cache").iterdir())


def test_exit_status_is_128_plus_the_signal():
    assert jobs.exit_status(KeyboardInterrupt()) == jobs.EXIT_SIGINT == 130
    assert jobs.exit_status(jobs.Stopped(signal.SIGTERM)) == jobs.EXIT_SIGTERM == 143


def test_json_log_rates_nulls_and_a_torn_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"event": "step", "step": 1}\n{"event": "ep')  # killed mid-line
    log = jobs.JsonLog(path, batch_size=8)
    log({"event": "step", "epoch": 1, "step": 10, "loss": 0.5})
    time.sleep(0.05)
    log({"event": "epoch", "epoch": 1, "step": 30, "val_loss": float("nan")})
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 10, 30]
    assert "samples_per_s" not in lines[1]  # the first record of a process has no interval
    expected = 20 * 8 / (lines[2]["time"] - lines[1]["time"])
    assert lines[2]["samples_per_s"] == pytest.approx(expected, rel=0.05)
    assert lines[2]["val_loss"] is None
