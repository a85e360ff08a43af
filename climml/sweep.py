"""Hyperparameter sweeps: ``climml sweep CONFIG --grid train.lr=1e-3,3e-4 --grid ...``.

Every combination of the ``--grid`` values is one *setting* (a full config, checked like any
other). Settings that differ only in values that keep every array shape (``VMAPPED``: the
learning rate, the weight decay, the seed and a dropout rate above 0) train together as the
members of one compiled, vmapped run (``climml.train.ensemble.fit_members``: the learning rate
and weight decay are injected into each member's optimizer state, a dropout rate becomes model
state (``RateDropout``), a seed gives a member its own initialization, dropout keys and shuffle
order). Settings that differ in anything else (layers, filters, batch size, epochs) run one
group after another. Each member equals the separate ``climml train`` run of its setting.

Written to the sweep directory (default ``<output.workdir>/sweep``):

* ``results.csv`` / ``results.json``: one row per setting: its grid values, best validation
  loss and its epoch, epochs trained;
* ``validation.png``: the best validation loss of every setting, the best one marked;
* ``best.yaml``: the config of the setting with the lowest validation loss;
* ``groups/<id>/checkpoints``: each group's training, resumed when the sweep is re-run.

Re-running the same command skips the settings already in ``results.json`` and resumes an
interrupted group from its last checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from climml import config as config_mod
from climml.config import Config
from climml.errors import ConfigError, expected

# Grid keys whose values change no array shape: members of one vmapped run. A dropout rate
# joins them when it is above 0 (at 0 some models leave their dropout layers out).
VMAPPED = ("train.lr", "train.weight_decay", "seed", "model.dropout")
RESULTS, TABLE, PLOT, BEST = "results.json", "results.csv", "validation.png", "best.yaml"


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["train.lr=1e-3,3e-4", "model.filters=[16,32],[32,64]"]`` → ``{key: [values]}``.

    Values are split at the commas outside brackets and braces and read as YAML (as ``--set``
    values are), so ``[16,32],[32,64]`` gives two lists.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(expected("--grid", "KEY=V1,V2,... (e.g. train.lr=1e-3,3e-4)", item))
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        values = [config_mod._parse_scalar(v.strip()) for v in _split_top_level(text)]
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(expected(f"--grid {key}", "distinct values", text))
        grid[key] = values
    if not grid:
        raise ConfigError(expected("--grid", "at least one KEY=V1,V2,...", "none"))
    return grid


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if depth != 0 or any(not p.strip() for p in parts):
        raise ConfigError(expected("--grid values", "comma-separated values", repr(text)))
    return parts


@dataclass(frozen=True)
class Setting:
    """One combination of grid values and its checked config."""

    values: dict[str, Any]  # grid key -> value
    cfg: Config

    @property
    def id(self) -> str:
        """A stable name: a hash of the grid values (unchanged when other settings are added)."""
        text = json.dumps(self.values, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def overrides(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.values.items()]


def settings(path: str | Path, grid: dict[str, list[Any]], overrides: Sequence[str] = ()):
    """Every combination of ``grid`` as a ``Setting`` (each config loaded and checked)."""
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        extra = [f"{k}={json.dumps(v)}" for k, v in values.items()]
        cfg = config_mod.load(path, [*overrides, *extra])
        if cfg.train.ensemble_members > 1:
            members = cfg.train.ensemble_members
            raise ConfigError(expected("train.ensemble_members", "1 in a sweep", members))
        out.append(Setting(values, cfg))
    return out


def groups(all_settings: Sequence[Setting]) -> list[list[Setting]]:
    """Settings that may share one vmapped run: equal configs once ``VMAPPED`` keys are set
    aside."""
    out: dict[str, list[Setting]] = {}
    for s in all_settings:
        out.setdefault(_shape_key(s.cfg), []).append(s)
    return list(out.values())


def _shape_key(cfg: Config) -> str:
    flat = config_mod._flatten(config_mod.to_dict(cfg))
    vmapped = [k for k in VMAPPED if k != "model.dropout" or flat.get(k)]
    kept = {k: v for k, v in flat.items() if k not in vmapped and not k.startswith("output.")}
    return json.dumps(kept, sort_keys=True, default=str)


@dataclass
class SweepResult:
    """The rows of the table (one per setting, best first) and the sweep directory."""

    directory: Path
    rows: list[dict[str, Any]]

    @property
    def best(self) -> dict[str, Any]:
        return self.rows[0]


def run(
    path: str | Path,
    grid: dict[str, list[Any]] | Sequence[str],
    *,
    overrides: Sequence[str] = (),
    workdir: str | Path | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Train every setting of ``grid`` over the config at ``path`` (with ``overrides``),
    vmapping the ``VMAPPED`` keys; write the table, plot and best config (see the module
    docstring). Resumable: settings already in ``results.json`` are skipped."""
    from climml import pipeline  # deferred: parsing a grid needs no JAX

    if not isinstance(grid, dict):
        grid = parse_grid(grid)
    todo = settings(path, grid, overrides)
    base = todo[0].cfg
    directory = Path(workdir or Path(base.output.workdir) / "sweep")
    directory.mkdir(parents=True, exist_ok=True)
    done = _read_rows(directory / RESULTS)
    show = base.output.progress if progress is None else progress
    exp = None
    for group in groups(todo):
        if all(s.id in done for s in group):
            continue
        first = group[0].cfg
        if exp is None or _data_key(exp.cfg) != _data_key(first):
            exp = pipeline.prepare(first)
        rows = _train_group(exp, group, directory, show)
        done.update({row["id"]: row for row in rows})
        _write(directory, grid, done, todo)  # after every group: an interrupted sweep resumes
    return SweepResult(directory, _write(directory, grid, done, todo))


def _data_key(cfg: Config) -> str:
    """What ``pipeline.prepare`` depends on: the data section (and the task's checks)."""
    return json.dumps(config_mod.to_dict(cfg.data), sort_keys=True, default=str)


def _train_group(exp, group: list[Setting], directory: Path, progress: bool) -> list[dict]:
    from climml import pipeline
    from climml.train.ensemble import fit_members

    first = group[0].cfg
    exp = dataclasses.replace(exp, cfg=first)
    seeds = [s.cfg.seed for s in group]
    # a member seeded differently also shuffles differently, as its separate run would
    loaders = [dataclasses.replace(exp, cfg=s.cfg).loader("train", training=True) for s in group]
    if len(set(seeds)) == 1:
        loaders = loaders[:1]
    hyper = {
        "lr": [s.cfg.train.lr for s in group],
        "weight_decay": [s.cfg.train.weight_decay for s in group],
    }
    rates = [getattr(s.cfg.model, "dropout", None) for s in group]
    if len(set(rates)) > 1:  # all above 0 (see _shape_key)
        hyper["dropout"] = rates
    key = hashlib.sha1(" ".join(sorted(s.id for s in group)).encode()).hexdigest()[:10]
    result = fit_members(
        pipeline.model_builder(exp),
        loaders,
        exp.loader("val"),
        first.train,
        seeds=seeds,
        hyper=hyper,
        workdir=directory / "groups" / key,
        progress=progress,
    )
    rows = []
    for i, s in enumerate(group):
        val = [h["member_val_loss"][i] for h in result.history]
        trained = sum(h["member_active"][i] for h in result.history)
        best_epoch = min(range(trained), key=lambda e: val[e]) + 1 if trained else None
        row = {"id": s.id, **{k: _plain(v) for k, v in s.values.items()}}
        row |= {"best_val_loss": result.best_val[i], "best_epoch": best_epoch}
        row |= {"epochs_trained": trained, "group": key, "members_in_group": len(group)}
        rows.append(row)
    return rows


def summary(result: SweepResult) -> list[str]:
    """Lines for the terminal: the table (best first) and where the best config went."""
    lines = [Path(result.directory, TABLE).read_text().rstrip()]
    if result.rows:
        best = result.best
        lines.append(
            f"best: {best['id']} (validation loss {best['best_val_loss']:.4g}); config in "
            f"{Path(result.directory, BEST)}"
        )
    return lines


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {row["id"]: row for row in json.loads(path.read_text())}


def _write(directory: Path, grid: dict, done: dict[str, dict], todo: list[Setting]) -> list[dict]:
    """Write results.json/.csv (the settings of this grid that are done, best first), the plot
    and best.yaml; returns the rows."""
    from climml.pipeline import write_json, write_text

    ids = {s.id: s for s in todo}
    rows = sorted((r for i, r in done.items() if i in ids), key=_loss_order)
    write_json(directory / RESULTS, rows)
    columns = ["id", *grid, "best_val_loss", "best_epoch", "epochs_trained", "group"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    write_text(directory / TABLE, text.getvalue())
    if rows and rows[0]["best_val_loss"] is not None:
        best = ids[rows[0]["id"]].cfg
        write_text(directory / BEST, config_mod.dump(best))
        plot_validation(rows, list(grid), directory / PLOT)
    return rows


def _loss_order(row: dict) -> float:
    loss = row["best_val_loss"]
    return float("inf") if loss is None or loss != loss else loss


def plot_validation(rows: Sequence[dict], keys: Sequence[str], path: Path) -> None:
    """Horizontal bars: best validation loss per setting (labelled by its grid values), the
    lowest marked."""
    from climml.viz import style

    labels = [", ".join(f"{k.split('.')[-1]}={_short(r[k])}" for k in keys) for r in rows]
    losses = [_loss_order(r) for r in rows]
    fig = style.new_figure((6.5, 1.0 + 0.35 * len(rows)))
    ax = fig.subplots()
    colors = ["tab:green" if i == 0 else "tab:blue" for i in range(len(rows))]
    ax.barh(range(len(rows)), losses, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.invert_yaxis()  # best on top
    ax.set(xlabel="best validation loss (lower is better)", title="Sweep: validation per setting")
    style.finish(fig, path)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value)
