"""Task 'nowcast' on real MeteoSwiss radar (configs/nowcast_radar.yaml): optical flow beats
persistence, and the MSE U-Net's forecasts are blurred. Skipped without the pysteps-data folder
(``CLIMML_RADAR_DATA``, else ``../shared/data/pysteps-data`` beside the repository)."""

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climml import config, metrics, pipeline
from climml.tasks import nowcast

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CLIMML_RADAR_DATA", ROOT.parent / "shared" / "data" / "pysteps-data"))
pytestmark = pytest.mark.skipif(
    not (DATA / "radar" / "mch").is_dir(),
    reason=f"MeteoSwiss radar (pysteps-data) not found at {DATA}; set CLIMML_RADAR_DATA",
)


def radar_config(*overrides):
    return config.load(
        "configs/nowcast_radar.yaml",
        [f"data.source_args.root={DATA}", "output.progress=false", *overrides],
    )


def test_optical_flow_beats_persistence_in_csi_at_1_mm_per_hour_for_30_minutes():
    """Every test window of the 2017-01-31 event, as the task scores them (no training)."""
    baselines = ["persistence", "advection"]
    try:
        import cv2  # noqa: F401
        import pysteps  # noqa: F401

        baselines.append("pysteps_flow")
    except ImportError:
        pass
    exp = pipeline.prepare(radar_config(f"eval.baselines=[{', '.join(baselines)}]"))
    run = nowcast.run_predictors(exp, nowcast.predictors(exp), keep=False)
    csi = {name: float(metrics.nowcast_table(s)["csi@1"][-1]) for name, s in run.stats.items()}
    assert exp.cfg.data.leads[-1] * nowcast.step_minutes(exp) == 30
    for flow in baselines[1:]:
        # measured: persistence 0.25, advection 0.39, pysteps_flow 0.38 (clearly apart)
        assert csi[flow] > csi["persistence"] + 0.05, csi


@pytest.mark.slow
def test_mse_unet_forecasts_lose_small_scale_power(tmp_path):
    """configs/nowcast_radar.yaml end to end (a few minutes): at every lead the U-Net keeps
    under half the observed power at wavelengths under 4 pixels (8 km), and under half of
    what persistence (a real radar frame) keeps."""
    result = pipeline.run(radar_config(f"output.workdir={tmp_path}", "output.plots=false"))
    assert {"model", "persistence", "advection"} <= set(result.metrics)
    spectra = xr.open_dataset(tmp_path / "spectra.nc")
    k = spectra["wavenumber"].values
    small = k > k.max() / 2

    def kept(name):
        power = spectra[name][:, small].sum("wavenumber")
        return (power / spectra["observed"][:, small].sum("wavenumber")).values

    assert (kept("model") < 0.5).all(), kept("model")
    assert (kept("model") < 0.5 * kept("persistence")).all()
    assert np.isfinite(kept("advection")).all()
