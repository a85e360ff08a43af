"""Command line: ``climml run | train | evaluate | predict | explain | sweep CONFIG ...`` and
``climml convert SOURCE... --output STORE.zarr``.

Thin by design: parse arguments, load the config, call ``climml.pipeline``. Any ``ClimmlError``
(bad config, data or checkpoint) is printed as one line and exits with status 2. Ctrl-C or
SIGTERM stops training at the next step with a checkpoint, prints one line saying where and
exits with 128 + the signal, as shells report a command ended by a signal: 130 for Ctrl-C
(SIGINT), 143 for SIGTERM (a scheduler's stop or a spot preemption). Re-running the same command
resumes; re-running a finished ``run``/``train`` does nothing unless ``--force``. The batch-job
behaviour (exit codes, compilation cache, ``log.jsonl``) is in ``climml.jobs``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from climml import jobs
from climml.errors import ClimmlError
from climml.jobs import ONCE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="climml", description="Climate machine learning runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "run": "train, evaluate and report (resumes from the last checkpoint)",
        "train": "train only (resumes from the last checkpoint)",
        "evaluate": "score a trained run on the evaluation split; writes metrics.json",
        "predict": "write a trained run's forecasts for a split (zarr or netCDF)",
        "explain": "permutation importance of a trained run's input channels (+ saliency maps)",
        "sweep": "train every setting of a grid (shape-keeping ones vmapped together); writes a "
        "table, a plot and the best config; resumable",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("config", help="YAML experiment config")
        sub.add_argument("--workdir", help="run directory (default: output.workdir of the config)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="extend",
            nargs="+",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. train.lr=1e-3",
        )
        if name in ONCE:
            sub.add_argument(
                "--force",
                action="store_true",
                help="run again from the start even if this run already finished",
            )
        if name == "sweep":
            sub.add_argument(
                "--grid",
                action="append",
                required=True,
                metavar="KEY=V1,V2,...",
                help="values to try, e.g. train.lr=1e-3,3e-4 or model.filters=[16,32],[32,64]; "
                "repeat for a grid (--workdir default: OUTPUT.WORKDIR/sweep)",
            )
        if name == "predict":
            sub.add_argument("--split", default="test", help="which data split (default: test)")
            sub.add_argument(
                "--output",
                help="PATH.zarr or PATH.nc, format by suffix "
                "(default: WORKDIR/predictions_SPLIT.zarr)",
            )
            sub.add_argument(
                "--input",
                help="stream the model over this zarr store / netCDF (larger than memory), "
                "chunk by chunk, into --output PATH.zarr; resumable (tasks regression and "
                "segmentation)",
            )
            sub.add_argument(
                "--chunk-steps",
                type=int,
                help="with --input: initializations per chunk (default: ~32 MiB of input)",
            )
            sub.add_argument(
                "--force",
                action="store_true",
                help="with --input: overwrite an --output holding other predictions",
            )
    _add_convert(commands)
    return parser


def _add_convert(commands) -> None:
    text = "write netCDF files (or a glob of them) as one time-chunked zarr store, on dask"
    sub = commands.add_parser("convert", help=text, description=text)
    sub.add_argument("source", nargs="+", help="netCDF files, or a quoted glob such as 'era5/*.nc'")
    sub.add_argument("--output", "-o", required=True, help="the zarr store to write (replaced)")
    sub.add_argument(
        "--chunks",
        default=f"time={CONVERT_TIME_CHUNK}",
        metavar="time=N",
        help=f"time steps per chunk; other dims stay whole (default: time={CONVERT_TIME_CHUNK})",
    )
    sub.add_argument("--variables", nargs="+", metavar="NAME", help="keep only these variables")
    sub.add_argument(
        "--config", help="take the scheduler settings from this config's data.dask (with --set)"
    )
    sub.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override --config values, e.g. data.dask.n_workers=4",
    )
    sub.add_argument(
        "--scheduler",
        help="threads, local (a LocalCluster) or a scheduler address such as tcp://host:8786 "
        "(default: data.dask.scheduler, auto: $DASK_SCHEDULER_ADDRESS, else by data size)",
    )


def _dispatch(args: argparse.Namespace) -> None:
    from climml import config, pipeline

    if args.command == "convert":
        print(_convert(args))
        return
    cfg = config.load(args.config, args.overrides)
    workdir = args.workdir or cfg.output.workdir
    jobs.use_compilation_cache(cfg.output.compilation_cache)
    if args.command in ONCE:
        if args.force:
            jobs.start_afresh(workdir, cfg)
        elif done := jobs.finished(workdir, args.command, cfg):
            print(jobs.finished_line(workdir, args.command, done))
            return
    if args.command == "run":
        result = pipeline.run(cfg, workdir)
        print(*report(result.metrics), sep="\n")
        print(f"run written to {result.workdir}")
    elif args.command == "train":
        result = pipeline.train(cfg, workdir)
        history = result.history
        if history:
            best = min(history, key=lambda h: h["val_loss"])
            stopped = f"early stop at epoch {len(history)}; " if result.stopped_early else ""
            print(
                f"trained {len(history)} epochs; {stopped}best val loss {best['val_loss']:.4f} "
                f"at epoch {best['epoch']}; checkpoints in {workdir}"
            )
    elif args.command == "evaluate":
        metrics = pipeline.evaluate(cfg, workdir)
        print(*report(metrics), sep="\n")
    elif args.command == "predict" and args.input:
        print(_stream(cfg, workdir, args))
    elif args.command == "predict":
        print(pipeline.predict(cfg, workdir, split=args.split, output=args.output))
    elif args.command == "explain":
        print(json.dumps(pipeline.explain(cfg, workdir), indent=2))
    elif args.command == "sweep":
        from climml import sweep

        result = sweep.run(args.config, args.grid, overrides=args.overrides, workdir=args.workdir)
        print(*sweep.summary(result), sep="\n")
    if args.command in ONCE:
        jobs.mark_finished(workdir, args.command, cfg)


def _stream(cfg, workdir: str, args: argparse.Namespace) -> str:
    from climml.errors import ConfigError, expected
    from climml.predict_stream import predict_store

    if not args.output:
        raise ConfigError(expected("--output", "a PATH.zarr with --input", "none"))
    done = predict_store(
        cfg, workdir, args.input, args.output, chunk_steps=args.chunk_steps, force=args.force
    )
    if done.computed == 0:
        return f"climml: {done.path} already holds all {done.chunks} chunks; nothing to do"
    return f"{done.path}: {done.computed} of {done.chunks} chunks written"


CONVERT_TIME_CHUNK = 32  # ~a month of daily fields per chunk: whole-window loader reads


def _convert(args: argparse.Namespace) -> str:
    """``climml convert``: ``convert_to_zarr`` on the scheduler of ``--config``'s ``data.dask``
    (defaults without one) or ``--scheduler``; returns the line to print."""
    import dataclasses
    from pathlib import Path

    import xarray as xr

    from climml import config
    from climml.config import DaskConfig
    from climml.data import cluster
    from climml.errors import ConfigError, DataError, expected

    name, _, steps = args.chunks.partition("=")
    if name.strip() != "time" or not steps.strip().isdigit() or int(steps) < 1:
        want = "time=N with N >= 1 (the other dims stay whole)"
        raise ConfigError(expected("--chunks", want, repr(args.chunks)))
    if args.overrides and not args.config:
        raise ConfigError(expected("--set", "a --config to override", " ".join(args.overrides)))
    spec = config.load(args.config, args.overrides).data.dask if args.config else DaskConfig()
    if args.scheduler is not None:
        spec = dataclasses.replace(spec, scheduler=args.scheduler)
    cluster.scheduler(spec)  # a bad scheduler name fails before any file is opened
    source = args.source[0] if len(args.source) == 1 else args.source
    if len(args.source) > 1:  # a shell-expanded glob: open_dataset checks a single path
        for path in args.source:
            if not Path(path).is_file():
                raise DataError(expected("convert SOURCE", "an existing netCDF file", path))
    store = cluster.convert_to_zarr(
        source, args.output, variables=args.variables, time_chunk=int(steps), spec=spec
    )
    ds = xr.open_zarr(store)
    sizes = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
    return (
        f"{store}: {', '.join(map(str, ds.data_vars))} ({sizes}) in chunks of {int(steps)} "
        "time steps"
    )


def report(metrics: dict) -> list[str]:
    """The scores as JSON, then one summary line per baseline instead of the (long, for
    nowcasts: every score at every lead) ``model_beats`` table, which metrics.json keeps."""
    scores = {name: value for name, value in metrics.items() if name != "model_beats"}
    return [json.dumps(scores, indent=2), *baseline_summary(metrics.get("model_beats", {}))]


def baseline_summary(beats: dict[str, dict[str, dict[str, bool]]], most: int = 3) -> list[str]:
    """One line per baseline: beaten on every compared score, or how often and where it is not,
    naming at most ``most`` metrics (metrics.json's ``model_beats``, ``{baseline: {metric: {lead
    or class: bool}}}``)."""
    lines = []
    for baseline, by_metric in beats.items():
        lost = {m: [k for k, won in keys.items() if not won] for m, keys in by_metric.items()}
        lost = {m: keys for m, keys in lost.items() if keys}
        if not lost:
            lines.append(f"model beats {baseline} on every score")
            continue
        total = sum(len(keys) for keys in by_metric.values())
        won = total - sum(len(keys) for keys in lost.values())
        where = "; ".join(f"{m} at {_keys(keys)}" for m, keys in list(lost.items())[:most])
        more = f"; and {len(lost) - most} more metrics" if len(lost) > most else ""
        lines.append(f"model does NOT beat {baseline}: won {won}/{total}; lost {where}{more}")
    return lines


def _keys(keys: list[str]) -> str:
    """``lead 1, 3`` for leads (digits), the bare keys otherwise (classes)."""
    return ("lead " if all(k.isdigit() for k in keys) else "") + ", ".join(keys)


def _quiet_third_parties() -> None:
    """Silence known third-party chatter the user cannot act on, for the CLI only (a library
    user keeps their own logging and warning settings): absl/orbax INFO logging about
    checkpoint managers, and zarr's warnings about its v3 format (consolidated metadata, codecs,
    string dtypes)."""
    for name in ("absl", "orbax", "orbax.checkpoint", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from absl import logging as absl_logging  # installed with orbax-checkpoint

    absl_logging.set_verbosity(absl_logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"zarr(\..*)?$")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"orbax(\..*)?$")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``climml`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    _quiet_third_parties()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, jobs.raise_stopped) if main_thread else None
    try:
        _dispatch(args)
    except ClimmlError as err:
        print(f"climml: error: {err}", file=sys.stderr)
        return jobs.EXIT_ERROR
    except KeyboardInterrupt as stop:
        print(f"climml: {_interrupted(stop)}", file=sys.stderr)
        return jobs.exit_status(stop)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return jobs.EXIT_OK


def _interrupted(stop: KeyboardInterrupt) -> str:
    from climml.train.loop import TrainingInterrupted

    if isinstance(stop, TrainingInterrupted) and stop.checkpoint is not None:
        return (
            f"interrupted at epoch {stop.epoch} step {stop.step}; checkpoint saved to "
            f"{stop.checkpoint}; re-run the same command to resume"
        )
    return "interrupted; re-run the same command to continue from the last checkpoint"


if __name__ == "__main__":
    sys.exit(main())
