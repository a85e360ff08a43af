"""Line and matrix figures: what each shows is checked on the returned Figure (titles, axis
labels, colour-bar labels, the plotted numbers against reference libraries)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from climml import metrics
from climml.errors import DataError
from climml.viz import plots, style


@pytest.fixture(scope="module")
def binary():
    """Probabilities that carry information about 0/1 outcomes (30% events)."""
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.3).astype(np.float64)
    probability = np.clip(0.3 + 0.4 * (labels - 0.3) + 0.2 * rng.standard_normal(600), 0, 1)
    return probability, labels


def _integer_ticks(ax):
    ticks = ax.get_xticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))
    return [int(t) for t in ticks]


def test_loss_curve_marks_the_best_epoch(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.02 * e} for e in range(1, 8)]
    fig = plots.plot_loss_curve(history, path=tmp_path / "loss.png")
    assert isinstance(fig, Figure) and (tmp_path / "loss.png").stat().st_size > 10_000
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_xlabel()) == ("Training history", "epoch")
    assert ax.get_ylabel() == "loss (normalized units)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    best = 1 + int(np.argmin([h["val_loss"] for h in history]))
    assert labels == ["train", "validation", f"best epoch ({best})"]
    fig.canvas.draw()
    assert set(_integer_ticks(ax)) >= {2, 4, 6}


def test_skill_by_lead_axes_in_lead_units_with_integer_ticks():
    model = {"rmse": {"1": 0.3, "3": 0.5, "6": 0.7}, "acc": {"1": 0.9, "3": 0.8, "6": 0.6}}
    persistence = {"rmse": {"1": 0.4, "3": 0.6, "6": 0.9}, "acc": {"1": 0.9, "3": 0.7, "6": 0.4}}
    scores = {"model": model, "persistence": persistence}
    fig = plots.plot_skill_by_lead(scores, lead_unit="months", units="degC")
    rmse, acc = fig.axes
    assert [rmse.get_title(), acc.get_title()] == ["rmse", "acc"]
    assert rmse.get_xlabel() == acc.get_xlabel() == "lead (months)"
    assert (rmse.get_ylabel(), acc.get_ylabel()) == ("rmse (degC)", "acc")  # acc has no units
    fig.canvas.draw()
    assert _integer_ticks(rmse) == _integer_ticks(acc) == [1, 3, 6]  # no lead 1.5
    model, persistence = rmse.get_lines()
    assert (model.get_label(), persistence.get_label()) == ("model", "persistence")
    np.testing.assert_array_equal(persistence.get_xydata(), [[1, 0.4], [3, 0.6], [6, 0.9]])
    many = {"m": {"crps": {str(k): 0.1 * k for k in range(0, 48, 3)}}}
    fig = plots.plot_skill_by_lead(many, lead_unit="5-minute steps")
    fig.canvas.draw()
    assert fig.axes[0].get_xlabel() == "lead (5-minute steps)"
    assert fig.axes[0].get_ylabel() == "crps"
    _integer_ticks(fig.axes[0])
    ensemble = {"GAN": {"spread": {"5": 0.2}, "skill": {"5": 0.4}, "spread_skill": {"5": 0.5}}}
    fig = plots.plot_skill_by_lead(ensemble, lead_unit="minutes", units="mm/h")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["spread (mm/h)", "skill (mm/h)", "spread_skill"]  # the ratio has none
    with pytest.raises(DataError, match="^scores: expected"):
        plots.plot_skill_by_lead({})


def test_roc_curve_is_sklearns(binary, tmp_path):
    probability, labels = binary
    fig = plots.plot_roc(
        {"model": probability, "coin": np.random.default_rng(1).random(600)},
        labels,
        event="rain >= 1 mm/h",
        path=tmp_path / "roc.png",
    )
    (ax,) = fig.axes
    assert ax.get_title() == "ROC curve: rain >= 1 mm/h"
    assert ax.get_xlabel() == "false positive rate (POFD)"
    assert ax.get_ylabel() == "true positive rate (POD)"
    model = ax.get_lines()[0]
    fpr, tpr, _ = roc_curve(labels, probability, drop_intermediate=False)
    np.testing.assert_allclose(model.get_xdata(), fpr, atol=1e-6)
    np.testing.assert_allclose(model.get_ydata(), tpr, atol=1e-6)
    auc = roc_auc_score(labels, probability)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"model (AUC = {auc:.3f})" and legend[1].startswith("coin (AUC = 0.")
    assert legend[2] == "no skill (AUC = 0.5)"
    assert (tmp_path / "roc.png").stat().st_size > 10_000


def test_reliability_points_are_binned_frequencies(binary):
    probability, labels = binary
    mean_forecast, frequency, n = plots.reliability(probability, labels, bins=5)
    bin_of = np.clip(np.floor(probability * 5).astype(int), 0, 4)
    for b in range(5):
        inside = bin_of == b
        assert n[b] == inside.sum()
        if inside.any():
            np.testing.assert_allclose(mean_forecast[b], probability[inside].mean(), rtol=1e-5)
            np.testing.assert_allclose(frequency[b], labels[inside].mean(), rtol=1e-6)
        else:
            assert np.isnan(frequency[b])
    fig = plots.plot_reliability(probability, labels, bins=5, event="tropical cyclone")
    diagram, sharpness = fig.axes
    assert diagram.get_title() == "Reliability diagram: tropical cyclone"
    assert diagram.get_ylabel() == "observed frequency"
    assert sharpness.get_xlabel() == "forecast probability"
    assert sharpness.get_ylabel() == "forecasts per bin"
    brier = float(np.mean((probability - labels) ** 2))
    legend = [t.get_text() for t in diagram.get_legend().get_texts()]
    assert legend[0] == f"forecast (Brier = {brier:.3f})"
    assert legend[2] == f"climatology ({labels.mean():.2f})"
    np.testing.assert_allclose(diagram.get_lines()[0].get_ydata(), frequency)


def test_confusion_matrix_rows_are_fractions_of_the_true_class(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.6, true, rng.integers(0, 3, 400))
    matrix = metrics.confusion_matrix(pred, true, num_classes=3)
    names = ["background", "cyclone", "river"]
    fig = plots.plot_confusion_matrix(matrix, class_names=names, path=tmp_path / "cm.png")
    ax, bar = fig.axes
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "Confusion matrix",
        "predicted class",
        "true class",
    )
    assert bar.get_ylabel() == "fraction of the true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    reference = confusion_matrix(true, pred, normalize="true")
    cells = np.array([float(t.get_text()) for t in ax.texts]).reshape(3, 3)
    np.testing.assert_allclose(cells, reference, atol=0.005)  # printed to 2 decimals
    counts = plots.plot_confusion_matrix(matrix, normalize=False)
    assert counts.axes[1].get_ylabel() == "count"
    cells = np.array([float(t.get_text()) for t in counts.axes[0].texts]).reshape(3, 3)
    np.testing.assert_array_equal(cells, confusion_matrix(true, pred))
    with pytest.raises(DataError, match="^class_names: expected 3 names"):
        plots.plot_confusion_matrix(matrix, class_names=["a"])
    with pytest.raises(DataError, match="^matrix: expected"):
        plots.plot_confusion_matrix(np.ones((2, 3)))


def test_rank_histogram_bars_and_shape():
    rng = np.random.default_rng(0)
    members, points = 9, 4000
    obs = rng.standard_normal(points)
    calibrated = rng.standard_normal((points, members))
    fig = plots.plot_rank_histogram(calibrated, obs, name="calibrated")
    (ax,) = fig.axes
    assert ax.get_title() == "Rank histogram: calibrated"
    assert ax.get_xlabel() == "rank of the observation among 9 members"
    assert ax.get_ylabel() == "relative frequency"
    # no ties: the rank is the number of members below the observation
    below = np.bincount((calibrated < obs[:, None]).sum(-1), minlength=members + 1)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], below / points, rtol=1e-6)
    flat = 1 / (members + 1)
    assert np.all(np.abs(below / points - flat) < 5 * np.sqrt(flat / points))
    fig.canvas.draw()
    assert _integer_ticks(ax) == list(range(members + 1))
    (legend,) = fig.legends  # outside the axes: it covers no bar
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    # under-dispersive: U-shaped; members first, a few NaN observations left out
    narrow = plots.plot_rank_histogram(0.3 * calibrated.T, np.r_[np.nan, obs[1:]], ensemble_axis=0)
    heights = np.array([p.get_height() for p in narrow.axes[0].patches])
    assert heights[0] > 2 * flat and heights[-1] > 2 * flat
    with pytest.raises(DataError, match="^observed: expected"):
        plots.plot_rank_histogram(calibrated[:3], np.full(3, np.nan))


def test_power_spectrum_log_log_in_km():
    rng = np.random.default_rng(0)
    field = rng.standard_normal((3, 32, 32)).cumsum(-1)
    fig = plots.plot_power_spectrum(
        {"observed": field, "blurred": 0.5 * field}, spacing_km=2.0, units="mm/h"
    )
    (ax,) = fig.axes
    assert ax.get_title() == "Radially averaged power spectrum"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("wavelength (km)", "power ((mm/h)²)")
    assert ax.get_xscale() == ax.get_yscale() == "log"
    observed, blurred = ax.get_lines()
    wavenumber, psd = metrics.radial_psd(field, spacing=2.0)
    np.testing.assert_allclose(observed.get_xdata(), 1 / np.asarray(wavenumber)[1:], rtol=1e-6)
    np.testing.assert_allclose(observed.get_ydata(), np.asarray(psd).mean(0)[1:], rtol=1e-5)
    np.testing.assert_allclose(blurred.get_ydata(), 0.25 * observed.get_ydata(), rtol=1e-5)
    assert observed.get_xdata().max() == 64.0  # the domain, 32 cells of 2 km
    left, right = ax.get_xlim()
    assert left > right  # large scales on the left


@pytest.mark.parametrize(
    ("freq", "unit"),
    [
        ("MS", "months"),
        ("D", "days"),
        ("6h", "6-hour steps"),
        ("5min", "5-minute steps"),
        ("YS", "years"),
        ("h", "hours"),
    ],  # fmt: skip
)
def test_time_step_unit(freq, unit):
    import pandas as pd

    assert style.time_step_unit(pd.date_range("2000-01-01", periods=5, freq=freq).values) == unit


def test_style_labels():
    assert style.label("rmse", "degC") == "rmse (degC)"
    assert style.label("acc", "") == style.label("acc") == "acc"
    assert style.lead_label("days") == "lead (days)"
    assert style.time_step_unit(np.arange(4)) == "time steps"


def test_no_backend_is_forced_at_import():
    """Importing every viz module and making a figure leaves the session's backend alone (a
    module calling ``matplotlib.use("Agg")`` would switch this one to agg)."""
    code = (
        "import matplotlib, numpy as np\n"
        "from climml.viz import importance, maps, plots, style\n"
        "plots.plot_loss_curve([{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.0}])\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": "template"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "template"


def test_figures_are_detached_from_pyplot():
    """Returned figures are not held by pyplot: a batch job making many keeps none open, and a
    notebook shows each once (as a cell's value), not again when pyplot flushes."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.plot_loss_curve([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0}])
    assert plt.get_fignums() == before


def test_a_figure_shows_once_inline_in_a_notebook():
    """In Jupyter (inline backend, the default) a returned figure is displayed as the cell's
    value, once: neither missing (a bare ``Figure`` before any pyplot use shows as text) nor
    repeated by pyplot's end-of-cell flush."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    history = "[{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.2}]"
    cells = [
        f"from climml.viz import plots\nplots.plot_loss_curve({history})",
        f"fig = plots.plot_loss_curve({history})",  # assigned: not shown until asked
        "fig",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel default
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    images = [sum("image/png" in o.get("data", {}) for o in cell.outputs) for cell in nb.cells]
    assert images == [1, 0, 1]
