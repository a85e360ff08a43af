"""Command line: ``climml run | train | evaluate | predict | explain CONFIG [--workdir DIR] ...``.

Thin by design: parse arguments, load the config, call ``climml.pipeline``. Any ``ClimmlError``
(bad config, data or checkpoint) is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from climml.errors import ClimmlError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="climml", description="Climate machine learning runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "run": "train, evaluate and report (resumes from the last checkpoint)",
        "train": "train only (resumes from the last checkpoint)",
        "evaluate": "score a trained run on the evaluation split; writes metrics.json",
        "predict": "write a trained run's forecasts for a split to zarr",
        "explain": "permutation importance of a trained run's input channels (+ saliency maps)",
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
        if name == "predict":
            sub.add_argument("--split", default="test", help="which data split (default: test)")
            sub.add_argument("--output", help="zarr path (default: WORKDIR/predictions_SPLIT.zarr)")
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    from climml import config, pipeline

    cfg = config.load(args.config, args.overrides)
    workdir = args.workdir or cfg.output.workdir
    if args.command == "run":
        result = pipeline.run(cfg, workdir)
        print(json.dumps(result.metrics, indent=2))
        print(f"run written to {result.workdir}")
    elif args.command == "train":
        history = pipeline.train(cfg, workdir).history
        if history:
            print(
                f"trained {len(history)} epochs; best val loss "
                f"{min(h['val_loss'] for h in history):.4f}; checkpoints in {workdir}"
            )
    elif args.command == "evaluate":
        print(json.dumps(pipeline.evaluate(cfg, workdir), indent=2))
    elif args.command == "predict":
        print(pipeline.predict(cfg, workdir, split=args.split, output=args.output))
    elif args.command == "explain":
        print(json.dumps(pipeline.explain(cfg, workdir), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``climml`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        _dispatch(args)
    except ClimmlError as err:
        print(f"climml: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
