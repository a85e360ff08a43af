"""Importance rankings side by side, and saliency maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cartopy.mpl.geoaxes import GeoAxes
from matplotlib.collections import QuadMesh

from climml.errors import DataError
from climml.explain import permutation_importance
from climml.viz.importance import plot_importance, plot_saliency


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


@pytest.fixture(scope="module")
def result():
    """x2 duplicates x0 exactly, so single- and multi-pass rankings differ."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4)).astype(np.float32)
    x[:, 2] = x[:, 0]
    weights = jnp.asarray([2.0, 1.8, 1.0, 0.0], jnp.float32)

    def predict(a):
        return a @ weights

    return permutation_importance(
        predict,
        x,
        predict(jnp.asarray(x)),
        mse,
        key=jax.random.key(0),
        feature_names=["a", "b", "c", "d"],
        n_repeats=2,
        n_bootstrap=20,
    )


def _top_down(ax):
    """Y tick labels from the top of the panel down."""
    ticks = zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True)
    return [label for _, label in sorted(ticks, reverse=True)]


def test_rankings_side_by_side_top_down(result, tmp_path):
    assert list(result.singlepass_rank.values) == [1, 2, 3, 4]
    assert list(result.selected.values) == ["a", "c", "b", "d"]
    fig = plot_importance(result, score_name="MSE", path=tmp_path / "importance.png")
    single, multi = fig.axes
    assert [single.get_title(), multi.get_title()] == ["Single-pass", "Multi-pass"]
    assert single.get_xlabel() == "MSE with feature(s) permuted"
    assert _top_down(single) == ["a", "b", "c", "d"]
    assert _top_down(multi) == ["a", "c", "b", "d"]
    bars = [p.get_width() for p in sorted(multi.patches, key=lambda p: -p.get_y())]
    np.testing.assert_allclose(bars, result.multipass_score.sel(feature=["a", "c", "b", "d"]))
    assert (tmp_path / "importance.png").stat().st_size > 10_000


def test_importance_legend_covers_no_bar(result):
    """The legend is the figure's, outside both panels: no bar lies under it."""
    fig = plot_importance(result)
    fig.canvas.draw()
    assert not any(ax.get_legend() for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert sorted(labels) == ["permuted (whiskers: bootstrap interval)", "unpermuted"]
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())


def test_single_pass_only_has_one_panel(result):
    single = result.drop_vars([v for v in result.data_vars if not v.startswith(("single", "orig"))])
    fig = plot_importance(single, max_features=2)
    assert len(fig.axes) == 1
    assert _top_down(fig.axes[0]) == ["a", "b"]
    with pytest.raises(DataError, match="^result: expected"):
        plot_importance(result[["original_score"]])


def _mesh(ax):
    """The QuadMesh of a map panel (under it: land; over it: coastlines)."""
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return mesh


def test_saliency_maps_say_the_lead_and_units(tmp_path):
    maps = np.random.default_rng(0).standard_normal((6, 8, 2))
    fig = plot_saliency(
        maps,
        lat=np.linspace(-10, 10, 6),
        lon=np.linspace(120, 280, 8),
        names=["sst", "heat content"],
        lead="3 months",
        units="K per m",
        path=tmp_path / "saliency.png",
    )
    assert fig.get_suptitle() == "Saliency, lead: 3 months"
    panels = [ax for ax in fig.axes if isinstance(ax, GeoAxes)]
    assert [ax.get_title() for ax in panels] == ["sst", "heat content"]
    limits = _mesh(panels[0]).get_clim()
    assert limits[0] == -limits[1] == -np.abs(maps[..., 0]).max()  # symmetric about zero
    bars = [ax.get_xlabel() for ax in fig.axes if not isinstance(ax, GeoAxes)]
    assert bars == ["saliency of sst (K per m)", "saliency of heat content (K per m)"]
    assert (tmp_path / "saliency.png").stat().st_size > 10_000
    with pytest.raises(DataError, match="^plot_saliency: expected"):
        plot_saliency(maps, names=["only one"], lead="1 month")


def test_saliency_without_coordinates_is_a_plain_grid():
    fig = plot_saliency(np.ones((4, 5)), lead="1 step")
    (panel,) = [ax for ax in fig.axes if ax.get_title()]
    assert not isinstance(panel, GeoAxes)
    assert (panel.get_xlabel(), panel.get_ylabel()) == ("x (grid index)", "y (grid index)")
