"""Task-specific evaluation: what a trained model is scored on and what a run writes.

Each task module provides ``check(cfg)``, which raises ``ConfigError`` for settings it cannot
score (unknown or inapplicable ``eval.metrics`` entries, parsed by
:mod:`climml.tasks.metric_specs`; called before training, so a bad config fails fast),
``check_data(cfg, raw)`` for what needs the loaded data (a latitude to area-weight by, a 2-D
grid for FSS; also before training), and
``evaluate(exp, model, workdir) -> metrics`` (``exp`` a prepared
:class:`climml.experiment.Experiment`, ``model`` a :class:`climml.experiment.Predictor`) returning
``{"<predictor>": {"<metric>": {"<key>": value}}}`` (keys are leads, classes, ...) and writing its
predictions and figures into ``workdir``, and ``predict(exp, model, split) -> xr.Dataset`` (the
model's output for a split, in the target's units, with coordinates restored).
"""

from __future__ import annotations

from types import ModuleType

from climml.errors import ConfigError, expected
from climml.tasks import nowcast, reconstruction, regression, segmentation

TASKS: dict[str, ModuleType] = {
    "regression": regression,
    "segmentation": segmentation,
    "reconstruction": reconstruction,
    "nowcast": nowcast,
}


def get(name: str) -> ModuleType:
    """The task module called ``name`` (ConfigError naming ``eval.task`` if unknown)."""
    if name not in TASKS:
        raise ConfigError(expected("eval.task", f"one of {sorted(TASKS)}", repr(name)))
    return TASKS[name]
