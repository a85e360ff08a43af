"""A research user's own data through the whole pipeline: a zarr path, an in-memory Dataset and
a lazily opened one give the same run; the run directory records what was used."""

import dataclasses

import numpy as np
import pytest
import xarray as xr
import yaml

import climml as cm
from climml import pipeline
from climml.errors import ConfigError

TINY = [
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[4]",
    "model.hidden=[4]",
    "train.epochs=1",
    "output.progress=false",
    "output.plots=false",
    "output.save_predictions=false",
    "eval.explain.enabled=false",
]


@pytest.fixture(scope="module")
def enso():
    return cm.data.synthetic.enso(360, nlat=12, nlon=24, seed=0)


@pytest.fixture(scope="module")
def store(enso, tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "enso.zarr"
    enso.chunk({"time": 60}).to_zarr(path, consolidated=False)
    return path


def _with_source(cfg, source):
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, source=source, source_args={})
    )


def test_in_memory_lazy_and_zarr_sources_give_the_same_run(enso, store, tmp_path):
    cfg = cm.config.load(
        "configs/quickstart.yaml", [f"data.source={store}", "data.source_args={}", *TINY]
    )
    from_zarr = cm.run(cfg, tmp_path / "zarr").metrics
    in_memory = cm.run(_with_source(cfg, enso), tmp_path / "memory").metrics
    lazy = cm.run(
        _with_source(cfg, xr.open_zarr(store, consolidated=False)), tmp_path / "lazy"
    ).metrics
    assert from_zarr["model"]["rmse"]["6"] > 0
    assert in_memory == from_zarr and lazy == from_zarr

    saved = yaml.safe_load((tmp_path / "memory" / "config.yaml").read_text())
    assert saved["data"]["source"].startswith("<in-memory xarray.Dataset, token ")
    assert saved["output"]["workdir"] == str(tmp_path / "memory")  # not cfg.output.workdir
    # resuming the run with other data is refused before anything is touched
    other = enso.assign(sst=enso["sst"] + 0.5)
    before = sorted(p.name for p in (tmp_path / "memory").iterdir())
    with pytest.raises(ConfigError, match=r"holds a run with a different config.*data\.source"):
        cm.run(_with_source(cfg, other), tmp_path / "memory")
    assert sorted(p.name for p in (tmp_path / "memory").iterdir()) == before
    # the saved description cannot stand in for the data
    with pytest.raises(cm.DataError, match=r"data\.source: expected the in-memory"):
        pipeline.prepare(cm.config.load(tmp_path / "memory" / "config.yaml"))


def test_only_the_variables_a_config_reads_are_checked(enso, tmp_path):
    extra = enso.assign(
        land=(("lat", "lon"), np.zeros((12, 24), bool)),
        label=(("time",), np.array(["warm"] * 360)),
        broken=(("time",), np.full(360, np.nan)),
    )
    extra.to_zarr(tmp_path / "extra.zarr", consolidated=False)
    cfg = cm.config.load(
        "configs/quickstart.yaml",
        [f"data.source={tmp_path / 'extra.zarr'}", "data.source_args={}", *TINY],
    )
    exp = pipeline.prepare(cfg)
    assert set(exp.raw.data_vars) == {"sst", "heat_content", "nino34"}


def test_descending_latitude_and_western_longitudes_prepare_like_the_original(enso):
    cfg = _with_source(cm.config.load("configs/quickstart.yaml", TINY), enso)
    reference = pipeline.prepare(cfg)
    flipped = enso.isel(lat=slice(None, None, -1)).rename(lat="latitude", lon="longitude")
    west = enso.assign_coords(lon=enso["lon"] - 360.0)  # 121.7..278.3 E as -238.3..-81.7: wrong
    with pytest.raises(
        cm.DataError, match=r"^lon: expected degrees in \[-180, 180\] or \[0, 360\]"
    ):
        pipeline.prepare(_with_source(cfg, west))
    shifted = enso.assign_coords(lon=((enso["lon"] + 180.0) % 360.0) - 180.0)  # -180..180
    for variant, lon_order in (
        (flipped, slice(None)),
        (shifted, np.argsort(shifted["lon"].values)),  # 121.7..180, -180..-81.7 sorted
    ):
        exp = pipeline.prepare(_with_source(cfg, variant))
        assert list(exp.raw["lat"].values) == list(enso["lat"].values)  # ascending
        assert np.all(np.diff(exp.raw["lon"].values) > 0)
        want = reference.dataset["sst"].values[..., lon_order]
        np.testing.assert_allclose(exp.dataset["sst"].values, want, rtol=1e-6, equal_nan=True)
