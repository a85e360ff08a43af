"""``climml predict CONFIG --input X.zarr --output Y.zarr``: a trained run streamed over a
store chunk by chunk, equal to the in-memory prediction, resumable, bounded in memory."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from climml import config, pipeline, predict_stream
from climml.cli import main
from climml.data import synthetic
from climml.errors import ConfigError


@pytest.fixture(scope="module")
def overrides(tiny_quickstart):
    return [*tiny_quickstart, "eval.explain.enabled=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, overrides):
    """A tiny trained run and its source (the tiny quickstart's 30 years) as a zarr store."""
    root = tmp_path_factory.mktemp("stream")
    assert main(["train", "configs/quickstart.yaml", "--workdir", str(root / "run"),
                 "--set", *overrides]) == 0  # fmt: skip
    store = root / "input.zarr"
    synthetic.enso(n_months=360, seed=0, nlat=12, nlon=24).chunk({"time": 24}).to_zarr(store)
    return root / "run", store


def _predict(workdir, overrides, *args):
    return main(["predict", "configs/quickstart.yaml", "--workdir", str(workdir), *args,
                 "--set", *overrides])  # fmt: skip


def test_streamed_forecasts_equal_the_in_memory_prediction(trained, overrides, tmp_path, capsys):
    workdir, store = trained
    out = tmp_path / "stream.zarr"
    assert _predict(workdir, overrides, "--input", str(store), "--output", str(out),
                    "--chunk-steps", "40") == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == f"{out}: 9 of 9 chunks written"  # 358 / 40
    streamed = xr.open_zarr(out)
    cfg = config.load("configs/quickstart.yaml", overrides)
    for split in ("val", "test"):
        in_memory = xr.open_zarr(pipeline.predict(cfg, workdir, split=split, output=tmp_path
                                                  / f"{split}.zarr"))  # fmt: skip
        same = streamed.sel(time=in_memory["time"])
        np.testing.assert_allclose(same["model"], in_memory["model"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(same["valid_time"], in_memory["valid_time"])
        assert same["model"].attrs["units"] == in_memory["model"].attrs["units"]
    # every complete input window is forecast, the last ones beyond the end of the input
    assert streamed.sizes["time"] == 360 - 2 and streamed["model"].chunks[0][0] == 40
    last = streamed.isel(time=-1)
    assert str(last["time"].values)[:7] == "1899-12"
    assert [str(v)[:7] for v in last["valid_time"].values] == ["1900-01", "1900-03", "1900-06"]
    assert np.isfinite(streamed["model"].values).all()
    assert streamed.attrs["model"] == "cnn"
    assert streamed.attrs["config_hash"] == config.experiment_hash(cfg)
    assert streamed.attrs["climml_version"] == __import__("climml").__version__


def test_a_stopped_stream_resumes_with_the_first_unfinished_chunk(
    trained, overrides, tmp_path, monkeypatch, capsys
):
    workdir, store = trained
    cfg = config.load("configs/quickstart.yaml", overrides)
    whole = predict_stream.predict_store(cfg, workdir, store, tmp_path / "whole.zarr",
                                         chunk_steps=64)  # fmt: skip
    assert (whole.chunks, whole.computed) == (6, 6)
    out = tmp_path / "stopped.zarr"
    chunk = predict_stream._Stream.chunk
    calls = []

    def stop_at_the_fourth(self, model, k):
        calls.append(k)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as SIGTERM does
        return chunk(self, model, k)

    monkeypatch.setattr(predict_stream._Stream, "chunk", stop_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=64)
    assert json.loads((out / predict_stream.PROGRESS_FILE).read_text()) == {"done": [0, 1, 2]}
    calls.clear()
    again = predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=64)
    assert calls == [3, 4, 5] and again.computed == 3
    xr.testing.assert_identical(xr.open_zarr(out).load(), xr.open_zarr(whole.path).load())
    # finished: the same command does nothing
    monkeypatch.undo()
    assert _predict(workdir, overrides, "--input", str(store), "--output", str(out),
                    "--chunk-steps", "64") == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == (
        f"climml: {out} already holds all 6 chunks; nothing to do"
    )


def test_an_output_of_other_predictions_is_refused_unless_forced(trained, overrides, tmp_path):
    workdir, store = trained
    cfg = config.load("configs/quickstart.yaml", overrides)
    out = tmp_path / "out.zarr"
    predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=64)
    with pytest.raises(
        ConfigError, match=r"differs at chunk_steps\); use another --output or --force"
    ):
        predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=100)
    forced = predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=100, force=True)
    assert forced.computed == forced.chunks == 4
    assert xr.open_zarr(out)["model"].chunks[0][0] == 100
    with pytest.raises(ConfigError, match="--output: expected a path ending in .zarr"):
        predict_stream.predict_store(cfg, workdir, store, tmp_path / "out.nc")
    other = config.load("configs/quickstart.yaml", [*overrides, "train.lr=0.5"])
    with pytest.raises(ConfigError, match="differs at train.lr"):
        predict_stream.predict_store(other, workdir, store, tmp_path / "other.zarr")


def test_an_input_on_another_grid_is_a_data_error(trained, overrides, tmp_path, capsys):
    workdir, _ = trained
    store = tmp_path / "coarse.zarr"
    synthetic.enso(n_months=60, seed=0, nlat=8, nlon=16).to_zarr(store)
    code = _predict(workdir, overrides, "--input", str(store), "--output", str(tmp_path / "o.zarr"))
    assert code == 2 and not (tmp_path / "o.zarr").exists()
    err = capsys.readouterr().err
    assert "--input: expected sst on the training grid {'lat': 12, 'lon': 24}" in err
    assert "found {'lat': 8, 'lon': 16}" in err


PEAK = """
import sys, tracemalloc
from climml import config
from climml.predict_stream import predict_store
workdir, warm, small, large, out = sys.argv[1:6]
cfg = config.load("configs/quickstart.yaml", sys.argv[6:])
predict_store(cfg, workdir, warm, out + "/warm.zarr", chunk_steps=64)  # imports, compilation
for name, store in (("small", small), ("large", large)):
    tracemalloc.start()
    predict_store(cfg, workdir, store, out + f"/predicted_{name}.zarr", chunk_steps=64)
    print(name, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
"""


def test_peak_memory_does_not_grow_with_the_input(trained, overrides, tmp_path):
    workdir, warm = trained
    stores = {}
    for name, months in (("small", 600), ("large", 3600)):
        ds = synthetic.enso(n_months=months, seed=1, nlat=12, nlon=24)
        stores[name] = (tmp_path / f"{name}.zarr", ds[["sst", "heat_content"]].nbytes)
        ds.chunk({"time": 24}).to_zarr(stores[name][0])
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, str(workdir), str(warm), str(stores["small"][0]),
         str(stores["large"][0]), str(tmp_path), *overrides],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    peak = {k: int(v) for k, v in (line.split() for line in proc.stdout.splitlines())}
    large_bytes = stores["large"][1]
    assert large_bytes > 7.5 * 2**20
    # 6x the input, the same peak (the fixed part: the model, the training source's grid);
    # a stream that held its input would need its 8 MB on top
    assert abs(peak["large"] - peak["small"]) < 0.5 * 2**20
    assert peak["large"] < large_bytes
    assert xr.open_zarr(tmp_path / "predicted_large.zarr").sizes["time"] == 3600 - 2


# segmentation: a small U-Net's class masks streamed (30 days of 6-hourly 16 x 32 fields)
SEGMENTATION = [
    "data.source_args.n_times=120",
    "data.source_args.nlat=16",
    "data.source_args.nlon=32",
    "data.splits.train=['2000-01-01', '2000-01-18']",
    "data.splits.val=['2000-01-21', '2000-01-24']",
    "data.splits.test=['2000-01-27', '2000-01-30']",
    "model.base_filters=4",
    "train.epochs=1",
    "output.progress=false",
]


def test_streamed_class_masks_equal_the_in_memory_segmentation(tmp_path):
    from climml.data.synthetic.weather import extreme_weather

    workdir = tmp_path / "run"
    cfg = config.load("configs/unet_extremes.yaml", SEGMENTATION)
    pipeline.train(cfg, workdir)
    store = tmp_path / "weather.zarr"
    source = dict(cfg.data.source_args)
    extreme_weather(**source).chunk({"time": 32}).to_zarr(store)
    out = tmp_path / "masks.zarr"
    done = predict_stream.predict_store(cfg, workdir, store, out, chunk_steps=48)
    assert (done.chunks, done.computed) == (3, 3)  # 120 initializations (input_steps 1, lead 0)
    streamed = xr.open_zarr(out)
    in_memory = xr.open_zarr(pipeline.predict(cfg, workdir, split="test",
                                              output=tmp_path / "test.zarr"))  # fmt: skip
    same = streamed.sel(time=in_memory["time"])
    assert same["model"].dtype == in_memory["model"].dtype == np.int8
    np.testing.assert_array_equal(same["model"].values, in_memory["model"].values)
    assert set(np.unique(streamed["model"].values)) <= {0, 1, 2}
    assert streamed["model"].attrs == in_memory["model"].attrs
    assert streamed["model"].attrs["flag_meanings"].split()[1] == "tropical_cyclone"
    assert streamed.attrs["description"] == "class masks of label"


@pytest.mark.parametrize(
    ("path", "task"), [("configs/autoencoder.yaml", "reconstruction"),
                       ("configs/nowcast_synthetic.yaml", "nowcast")]
)  # fmt: skip
def test_tasks_without_streamed_prediction_are_config_errors(tmp_path, path, task):
    cfg = config.load(path)
    assert cfg.eval.task == task
    with pytest.raises(ConfigError, match=rf"eval.task: expected one of \['regression', "
                       rf"'segmentation'\] for --input \(.*{task}: .*found '{task}'"):  # fmt: skip
        predict_stream.predict_store(cfg, tmp_path, tmp_path / "x.zarr", tmp_path / "y.zarr")
