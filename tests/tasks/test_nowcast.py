"""Task 'nowcast': a shrunk synthetic run end to end, the written metrics, spectra, predictions
and figures, persistence = the last frame, the MSE U-Net's blur, ensembles, config errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from climml import config, pipeline
from climml.data.synthetic.radar import radar
from climml.errors import ConfigError

# configs/nowcast_synthetic.yaml shrunk: 5 events of 14 frames on a 32 x 32 grid, 3 leads,
# a depth-1 U-Net of 8 filters trained 3 epochs.
TINY = [
    "data.source_args={events: 5, frames: 14, size: 32, lifetime: 240.0, seed: 0}",
    "data.splits={train: [2021-06-01, 2021-06-03], val: [2021-06-04, 2021-06-04],"
    " test: [2021-06-05, 2021-06-05]}",
    "data.leads=[1, 3, 6]",
    "model.depth=1",
    "model.base_filters=8",
    "train.epochs=3",
    "eval.metrics=[{csi: {thresholds: [1, 2, 4, 8], pool: [1, 4]}}, {pod: {thresholds: [2]}},"
    " {far: {thresholds: [4]}}, {fss: {thresholds: [1], scales: [1, 8]}},"
    " {crps: {pool: [1, 4], pooling: [avg, max]}}]",
    "output.progress=false",
]
MINUTES = ["5", "15", "30"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nowcast")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "climml.cli",
            "run",
            "configs/nowcast_synthetic.yaml",
            "--workdir",
            str(workdir),
            *[a for item in TINY for a in ("--set", item)],
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_run_writes_every_predictors_scores_by_lead_in_minutes(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    csi = [f"csi@{t}{pool}" for pool in ("", "/max4") for t in (1, 2, 4, 8)]
    asked = [*csi, "pod@2", "far@4", "fss@1/1", "fss@1/8", "crps", "crps/avg4", "crps/max4"]
    for predictor in ("model", "persistence", "advection"):
        scores = metrics[predictor]
        assert sorted(scores) == sorted(asked), predictor  # only what eval.metrics asks for
        for key in asked:
            assert sorted(scores[key], key=float) == MINUTES, (predictor, key)
        assert 0 <= scores["csi@1"]["5"] <= 1
        assert scores["crps"]["5"] > 0
        assert 0 <= scores["fss@1/8"]["5"] <= 1
    for name in ("skill_by_lead.png", "spectra.png", "example.png", "loss_curve.png"):
        assert (tiny_run / name).stat().st_size > 1000


def test_scores_are_those_of_the_written_predictions(tiny_run):
    """metrics.json equals CSI / MAE computed in NumPy float64 from predictions.zarr."""
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    pred = xr.open_zarr(tiny_run / "predictions.zarr").load()
    obs = pred["observed"].values.astype(np.float64)
    for name in ("model", "persistence", "advection"):
        f = pred[name].values.astype(np.float64)
        for i, minutes in enumerate(MINUTES):
            hits = ((f[:, i] >= 1) & (obs[:, i] >= 1)).sum()
            either = ((f[:, i] >= 1) | (obs[:, i] >= 1)).sum()
            assert metrics[name]["csi@1"][minutes] == pytest.approx(hits / either, abs=1e-6)
            mae = np.abs(f[:, i] - obs[:, i]).mean()  # a one-member ensemble's CRPS
            assert metrics[name]["crps"][minutes] == pytest.approx(mae, rel=1e-4)


def test_persistence_is_the_last_input_frame_and_observed_the_data(tiny_run):
    pred = xr.open_zarr(tiny_run / "predictions.zarr").load()
    cfg = config.load("configs/nowcast_synthetic.yaml", TINY)
    rain = radar(**cfg.data.source_args)["rain_rate"]
    last = rain.sel(time=pred["time"]).values  # the anchor = the last input frame
    for i in range(pred.sizes["lead"]):
        np.testing.assert_allclose(pred["persistence"].values[:, i], last, rtol=1e-5, atol=1e-5)
        valid = rain.sel(time=pred["valid_time"][:, i]).values
        np.testing.assert_allclose(pred["observed"].values[:, i], valid, rtol=1e-5, atol=1e-5)
    assert (np.diff(pred["valid_time"].values, axis=1) > np.timedelta64(0)).all()


def high_wavenumber_power(spectra: xr.Dataset, name: str) -> np.ndarray:
    """``(lead,)`` power of ``name`` at wavelengths under 4 pixels over the observed one."""
    k = spectra["wavenumber"].values
    small = k > k.max() / 2
    return (
        spectra[name][:, small].sum("wavenumber") / spectra["observed"][:, small].sum("wavenumber")
    ).values


def test_the_mse_unet_loses_small_scale_power(tiny_run):
    """The blur, measured: at every lead the U-Net keeps less than half of the observed power
    at wavelengths under 4 pixels, and less than half of what persistence (a real radar frame,
    as sharp as the observations) has there."""
    spectra = xr.open_dataset(tiny_run / "spectra.nc")
    model = high_wavenumber_power(spectra, "model")
    assert (model < 0.5).all(), model
    assert (model < 0.5 * high_wavenumber_power(spectra, "persistence")).all()


def test_pipeline_forecast_gives_the_model_in_mm_per_hour(tiny_run):
    cfg = config.load("configs/nowcast_synthetic.yaml", TINY)
    exp = pipeline.prepare(cfg)
    ds = pipeline.forecast(pipeline.trained_model(exp, tiny_run), exp, split="test")
    written = xr.open_zarr(tiny_run / "predictions.zarr")["model"].values
    np.testing.assert_allclose(ds["model"].values, written, rtol=1e-5, atol=1e-5)
    assert ds["model"].attrs["units"] == "mm/h" and float(ds["model"].min()) >= 0


def test_ensemble_baseline_scores_with_a_member_axis(tmp_path):
    """STEPS (pysteps) is an ensemble: CRPS over its members, spread/skill, member dim."""
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    overrides = [
        *TINY,
        "eval.baselines=[persistence, steps]",
        "eval.nowcast.members=3",
        "eval.metrics=[csi, crps, spread_skill, rank_histogram]",
        "train.epochs=1",
        "output.plots=false",
        f"output.workdir={tmp_path}",
    ]
    cfg = config.load("configs/nowcast_synthetic.yaml", overrides)
    result = pipeline.run(cfg)
    steps = result.metrics["steps"]
    assert set(steps["spread_skill"]) == set(MINUTES)
    assert all(v > 0 for v in steps["spread"].values())
    assert "spread" not in result.metrics["persistence"]
    pred = xr.open_zarr(tmp_path / "predictions.zarr")
    assert pred["steps"].dims[:3] == ("time", "member", "lead")
    assert pred.sizes["member"] == 3
    f = pred["steps"].values.astype(np.float64)
    obs = pred["observed"].values.astype(np.float64)
    # CRPS of the 3-member ensemble at 5 minutes from its energy form, in float64
    crps = (
        np.abs(f[:, :, 0] - obs[:, None, 0]).mean(1)
        - 0.5 * np.abs(f[:, :, None, 0] - f[:, None, :, 0]).mean((1, 2))
    ).mean()
    assert steps["crps"]["5"] == pytest.approx(crps, rel=1e-4)
    # rank of each observation among its 3 members at 5 minutes (ties shared evenly), float64
    below = (f[:, :, 0] < obs[:, None, 0]).sum(1)
    tied = (f[:, :, 0] == obs[:, None, 0]).sum(1)
    counts = np.zeros(4)
    for lo, n in zip(below.ravel(), tied.ravel(), strict=True):
        counts[lo : lo + n + 1] += 1.0 / (n + 1)
    np.testing.assert_allclose(steps["rank_histogram"]["5"], counts / counts.sum(), rtol=1e-5)
    assert "rank_histogram" not in result.metrics["persistence"]  # deterministic


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("eval.baselines=[climatology]", "eval.baselines"),
        ("eval.metrics=[rmse]", r"eval.metrics\[0\]"),
        ("data.input_steps=1", "data.input_steps"),
        ("data.leads=[0, 1]", "data.leads"),
        ("eval.metrics=[{crps: {pool: [1, 64]}}]", "eval.metrics pool"),  # larger than the grid
        ("eval.metrics=[{csi: {pool: [1, 4]}}]", r"eval.metrics\[0\].csi.thresholds"),
        ("eval.metrics=[bootstrap]", "accumulated statistics"),
        ("eval.nowcast.thresholds=[1.0]", r"eval.nowcast.thresholds.*moved to eval.metrics"),
        ("eval.nowcast.pools=[1, 4]", r"eval.nowcast.pools.*moved to eval.metrics"),
        ("eval.nowcast.members=1", "eval.nowcast.members"),
    ],
)
def test_bad_config_fails_before_training(override, match):
    with pytest.raises(ConfigError, match=match):
        pipeline.prepare(config.load("configs/nowcast_synthetic.yaml", [*TINY, override]))


def test_missing_pysteps_is_a_config_error_naming_the_extra(monkeypatch):
    for name in ["pysteps", *[m for m in sys.modules if m.startswith("pysteps.")]]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    monkeypatch.setitem(sys.modules, "pysteps.motion", None)
    cfg = config.load("configs/nowcast_synthetic.yaml", [*TINY, "eval.baselines=[pysteps_flow]"])
    with pytest.raises(ConfigError, match=r"pysteps_flow.*climml\[radar\]"):
        pipeline.prepare(cfg)


def test_example_figure_tiles_observed_and_every_predictor(tiny_run):
    from climml.viz.nowcast import plot_example

    pred = xr.open_zarr(tiny_run / "predictions.zarr").isel(time=0).load()
    example = {name: pred[name].values for name in ("observed", "model", "persistence")}
    example["ensemble"] = np.stack([pred["advection"].values] * 4)  # (members, L, H, W)
    fig = plot_example(example, MINUTES, members=2)
    # rows: observed, model, persistence and 2 members; a column per lead; plus the colorbar
    assert len(fig.axes) == 5 * len(MINUTES) + 1


def _table(metrics: str):
    """The nowcast task's table for ``eval.metrics=<metrics>`` of a small random deterministic
    nowcast (2 events, 2 leads of 5 and 10 minutes, 32 x 32), the forecast and observations."""
    from climml import metrics as cm
    from climml.tasks import nowcast

    cfg = config.load("configs/nowcast_synthetic.yaml", [f"eval.metrics={metrics}"])
    specs = nowcast.specs(cfg)
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 4.0, size=(2, 2, 32, 32)).astype(np.float32)
    forecast = (obs * rng.lognormal(0, 0.5, size=obs.shape)).astype(np.float32)
    stats = cm.nowcast_statistics(forecast, obs, lead_axis=1, **nowcast.settings(specs))
    return nowcast._table(stats, ["5", "10"], specs), forecast, obs


def test_csi_entry_yields_exactly_its_thresholds_and_pools_by_lead():
    table, forecast, obs = _table("[{csi: {thresholds: [2.0], pool: [1, 4]}}]")
    assert list(table) == ["csi@2", "csi@2/max4"]

    def csi(f, o):  # float64 CSI of the event x >= 2 per lead, over events and cells
        f, o = f >= 2.0, o >= 2.0
        return (f & o).sum((0, 2, 3)) / (f | o).sum((0, 2, 3))

    def max4(x):  # maxima of 4 x 4 blocks
        return x.astype(np.float64).reshape(2, 2, 8, 4, 8, 4).max((3, 5))

    fields = {"csi@2": (forecast, obs), "csi@2/max4": (max4(forecast), max4(obs))}
    for key, (f, o) in fields.items():
        assert list(table[key]) == ["5", "10"]
        np.testing.assert_allclose(list(table[key].values()), csi(f, o), rtol=1e-6)


def test_bare_names_take_the_radar_defaults():
    table, _, _ = _table("[csi, fss, crps]")
    csi = [f"csi@{t}{p}" for p in ("", "/max4", "/max16") for t in (1, 2, 4, 8)]
    fss = [f"fss@{t}/{s}" for s in (1, 4, 16) for t in (1, 2, 4, 8)]
    crps = ["crps", "crps/avg4", "crps/max4", "crps/avg16", "crps/max16"]
    assert sorted(table) == sorted(csi + fss + crps)
