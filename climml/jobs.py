"""How climml behaves as a scheduled batch job: exit codes, idempotent re-runs, the JAX
compilation cache and a JSON-lines log.

A scheduler (Slurm, SkyPilot, Kubernetes, cron) stops a job with SIGTERM and may start the same
command again later, on another machine. The CLI therefore:

* exits with a documented status (``EXIT_*`` below; a stop by signal N exits ``128 + N``, the
  shells' convention, so SIGINT gives 130 and SIGTERM 143), after training has saved a
  checkpoint at the next step boundary;
* resumes when the same command is run again (``fit`` continues from the last checkpoint);
* treats a re-run of a finished ``run``/``train`` as nothing to do: one line, status 0, unless
  ``--force``, which discards the run's checkpoints and trains from the start;
* turns on JAX's persistent compilation cache, so a rescheduled job loads its compiled steps
  instead of compiling them again;
* appends one JSON object per checkpoint and per epoch to ``WORKDIR/log.jsonl`` (step, epoch,
  loss, samples/s, device memory where the backend reports it), for log collectors and
  dashboards, beside the progress bar.

Nothing here imports JAX at module level: the CLI reads this before deciding what to load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from climml.config import Config, differences, experiment_hash, load
from climml.errors import ConfigError

EXIT_OK = 0  # finished, or nothing left to do
EXIT_ERROR = 2  # bad config, data or checkpoint (a ClimmlError): re-running will not help
EXIT_SIGINT = 128 + signal.SIGINT  # 130: Ctrl-C; state saved, re-run to resume
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: a scheduler's stop (preemption); re-run to resume

ONCE = ("run", "train")  # commands whose finished re-run is a no-op
DONE_FILE = "done.json"  # {command: {"config_hash", "finished_at", "climml_version"}}
LOG_FILE = "log.jsonl"
CACHE_ENV = "CLIMML_COMPILATION_CACHE"  # a folder, or off/false/0


class Stopped(KeyboardInterrupt):
    """A stop asked for by signal ``signum`` outside a training step loop (which raises
    ``climml.train.TrainingInterrupted`` after a checkpoint instead)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = int(signum)


def raise_stopped(signum: int, frame: object) -> None:
    """Signal handler: SIGTERM ends a stage as Ctrl-C does, remembering which signal it was."""
    raise Stopped(signum)


def exit_status(stop: BaseException) -> int:
    """``128 + signal`` of an interruption (``KeyboardInterrupt`` without one: SIGINT)."""
    return 128 + int(getattr(stop, "signum", signal.SIGINT))


# --------------------------------------------------------------------------- finished runs


def finished(workdir: str | Path, command: str, cfg: Config) -> dict | None:
    """The record of ``command`` having finished in ``workdir`` with this experiment, or None.

    A record of another experiment (a different ``experiment_hash``) does not count: the stage
    itself then refuses the workdir with a ``ConfigError`` naming the differences.
    """
    done = _read_done(Path(workdir))
    entry = done.get(command)
    if isinstance(entry, dict) and entry.get("config_hash") == experiment_hash(cfg):
        return entry
    return None


def finished_line(workdir: str | Path, command: str, entry: dict) -> str:
    """What the CLI prints instead of running a finished command again."""
    return (
        f"climml: {command} already finished in {workdir} at {entry['finished_at']}; "
        "nothing to do (--force runs it again from the start)"
    )


def mark_finished(workdir: str | Path, command: str, cfg: Config) -> None:
    """Record that ``command`` finished; ``run`` includes training, so it marks ``train`` too."""
    import climml
    from climml.pipeline import write_json

    workdir = Path(workdir)
    done = _read_done(workdir)
    entry = {
        "config_hash": experiment_hash(cfg),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "climml_version": climml.__version__,
    }
    for name in (command, "train") if command == "run" else (command,):
        done[name] = entry
    write_json(workdir / DONE_FILE, done)


def start_afresh(workdir: str | Path, cfg: Config) -> None:
    """``--force``: forget the finished record, the checkpoints and the history of ``workdir``,
    so that training starts from the initial parameters. Other files are overwritten by the run.

    A workdir holding another experiment is refused first (``ConfigError``), so a mistyped
    ``--workdir`` never costs a run its checkpoints.
    """
    workdir = Path(workdir)
    saved = workdir / "config.yaml"
    if saved.is_file():
        changed = differences(load(saved), cfg)
        if changed:
            raise ConfigError(
                f"{workdir}: holds a run with a different config (differs at "
                f"{', '.join(changed)}); --force only restarts the same experiment"
            )
    for name in (DONE_FILE, "history.json"):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)


def _read_done(workdir: Path) -> dict:
    path = workdir / DONE_FILE
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or unreadable: then nothing is known to be finished
        return {}
    return done if isinstance(done, dict) else {}


# --------------------------------------------------------------------------- compilation cache


def compilation_cache_dir(setting: bool | str) -> Path | None:
    """The folder of JAX's persistent compilation cache for ``output.compilation_cache``.

    ``False``: none. A string: that folder. ``True``: ``$CLIMML_COMPILATION_CACHE`` if set
    (``off``, ``false``, ``0`` or empty turn the cache off), else
    ``$XDG_CACHE_HOME/climml/jax`` (``~/.cache/climml/jax``).
    """
    if setting is False:
        return None
    if isinstance(setting, str):
        return Path(setting).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "false", "0") else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "climml" / "jax"


def use_compilation_cache(setting: bool | str) -> Path | None:
    """Point JAX's persistent compilation cache at ``compilation_cache_dir(setting)``.

    Every compiled program is cached (JAX's default keeps only those taking over a second to
    compile; a job's many sub-second compilations add up to its start-up time). The cache key
    covers the program, the devices and the compiler flags, so a job moved to another kind of
    machine compiles afresh instead of loading something that does not fit. Returns the folder.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = compilation_cache_dir(setting)
    current = jax.config.jax_compilation_cache_dir
    wanted = None if folder is None else str(folder)
    if wanted != current:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", wanted)
        compilation_cache.reset_cache()  # the next compilation opens the new folder
    if folder is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


# --------------------------------------------------------------------------- JSON-lines log


class JsonLog:
    """Appends ``fit``'s log records to ``path``, one JSON object per line.

    Each record gains ``time`` (Unix seconds), ``samples_per_s`` (batches of ``batch_size``
    since the previous record with a step, over the wall time between them; absent on the first
    record of a process, whose interval would include start-up and compilation) and
    ``device_memory`` (``bytes_in_use``/``peak_bytes_in_use`` of the first local device, where
    the backend reports them: GPUs and TPUs, not CPUs). Lines are flushed as written, so a killed
    job leaves every record it logged. In a multi-process job only process 0 writes.
    """

    def __init__(self, path: str | Path, batch_size: int):
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self._last: tuple[float, int] | None = None  # (time, step) of the previous record
        _drop_partial_line(self.path)

    def __call__(self, record: dict[str, Any]) -> None:
        import jax

        if jax.process_index() != 0:  # one log per job, not one line per process
            return
        now = time.time()
        out = {"time": round(now, 3), **record}
        step = record.get("step")
        if step is not None:
            if self._last is not None and now > self._last[0] and step > self._last[1]:
                rate = (step - self._last[1]) * self.batch_size / (now - self._last[0])
                out["samples_per_s"] = round(rate, 2)
            self._last = (now, int(step))
        memory = device_memory()
        if memory:
            out["device_memory"] = memory
        self.write(out)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (a flat dict of numbers and strings) as one line; non-finite floats
        (an undefined validation loss) become null."""
        finite = {k: _finite_number(v) for k, v in record.items()}
        line = json.dumps(finite, default=str, allow_nan=False)
        with self.path.open("a") as fh:
            fh.write(line + "\n")


def _drop_partial_line(path: Path) -> None:
    """Cut a last line left unfinished by a killed job, so every line stays one JSON object."""
    try:
        with path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            tail_start = max(0, size - 65536)
            fh.seek(tail_start)
            tail = fh.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            fh.truncate(tail_start + cut + 1 if cut >= 0 else tail_start)
    except FileNotFoundError:
        return


def _finite_number(value: Any) -> Any:
    if isinstance(value, int | str | bool | dict) or value is None:
        return value
    value = float(value)  # numpy and JAX scalars too
    return value if math.isfinite(value) else None


def device_memory() -> dict[str, int]:
    """In-use and peak bytes of the first local device; empty where the backend has no
    statistics (``memory_stats()`` is None on CPU)."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    keys = ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")
    return {k: int(stats[k]) for k in keys if k in stats}
