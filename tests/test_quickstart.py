"""The README's main job, shrunk: the CNN has real skill at a 6-month lead."""

import climml as cm

SHRINK = [
    "data.source_args={n_months: 1200, seed: 0, nlat: 12, nlon: 24}",
    "train.epochs=8",
    "output.plots=false",
    "output.save_predictions=false",
    "output.progress=false",
    "eval.explain.enabled=false",
]


def test_cnn_beats_persistence_at_six_months(tmp_path):
    cfg = cm.config.load("configs/quickstart.yaml", SHRINK)
    scores = cm.run(cfg, tmp_path / "run").metrics
    model, persistence = scores["model"], scores["persistence"]
    assert model["acc"]["6"] > persistence["acc"]["6"] + 0.1
    assert model["rmse"]["6"] < persistence["rmse"]["6"]
    assert model["rmse"]["6"] < scores["climatology"]["rmse"]["6"]
