"""Whether the trained model beats each baseline, score by score (``metrics.json``'s
``model_beats`` entry and the CLI's one line per baseline)."""

from __future__ import annotations

import numpy as np

# Which way each score improves: -1 lower is better, +1 higher, 0 closer to zero (bias).
# Thresholded and pooled keys (``csi@0.5``, ``csi@1/max4``, ``crps/avg4``) use their base name.
ORIENTATION = {
    **dict.fromkeys(("rmse", "mae", "mse", "crps", "brier", "far", "pofd"), -1),
    **dict.fromkeys(("acc", "correlation", "csi", "pod", "ets", "hss", "auc", "fss"), 1),
    **dict.fromkeys(("iou", "mean_iou", "precision", "recall", "accuracy"), 1),
    "bias": 0,
}


def model_beats(
    scores: dict[str, dict[str, dict[str, float | None]]], model: str = "model"
) -> dict[str, dict[str, dict[str, bool]]]:
    """``{baseline: {metric: {key: bool}}}``: whether ``model`` scores strictly better than each
    other predictor in ``scores`` (``{predictor: {metric: {key (lead, class): value}}}``).

    Only metrics with a known orientation (``ORIENTATION``) are compared, bootstrap bounds
    (``rmse:p10``) are not, and only keys where both values are defined (a constant forecast
    has no correlation). Ties do not beat.
    """
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for baseline, theirs in scores.items():
        if baseline == model or not isinstance(theirs, dict):
            continue
        for metric, ours in scores.get(model, {}).items():
            if ":" in metric:  # a bootstrap bound (``rmse:p10``), not a score
                continue
            sign = ORIENTATION.get(metric.split("@")[0].split("/")[0])  # crps/avg4: a crps
            if (
                sign is None
                or not isinstance(ours, dict)
                or not isinstance(theirs.get(metric), dict)
            ):
                continue
            keys = {}
            for key, value in ours.items():
                other = theirs[metric].get(key)
                if _defined(value) and _defined(other):
                    a, b = (abs(value), abs(other)) if sign == 0 else (value, other)
                    keys[key] = bool(a < b) if sign <= 0 else bool(a > b)
            if keys:
                out.setdefault(baseline, {})[metric] = keys
    return out


def _defined(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
