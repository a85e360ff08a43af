"""WindowLoader: windows equal hand-indexed NumPy slices; seeded, complete, resumable order;
fixed batch shapes; block reads; a prefetch thread that never outlives its consumer."""

import gc
import threading

import dask.array
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import climml.data as cd
from climml.data.blocks import BlockCache
from climml.errors import ConfigError, DataError

LEADS = (1, 3, 6)


@pytest.fixture(scope="module")
def ds():
    """Small ENSO data with a few missing target values, so y_valid has zeros."""
    data = cd.synthetic.enso(120, nlat=8, nlon=16, seed=5)
    nino = data["nino34"].values.copy()
    nino[[10, 11, 50]] = np.nan
    return data.assign(nino34=("time", nino))


def _loader(ds, anchors=None, **kwargs):
    options = dict(
        inputs=["sst", "heat_content"],
        target="nino34",
        input_steps=3,
        leads=LEADS,
        anchors=np.arange(2, 114) if anchors is None else anchors,
        batch_size=16,
    )
    return cd.WindowLoader(ds, **{**options, **kwargs})


def _real(batches):
    """Anchors of the real (weight 1) samples, in visiting order."""
    return np.concatenate([b.anchor[b.weight > 0] for b in batches])


def _prefetch_threads(timeout: float = 30.0):
    """The loader threads still alive once every stopping one had ``timeout`` s to exit.

    A stopping thread checks its stop flag every 50 ms; joining it (instead of sleeping a fixed
    time) makes the check independent of how busy the host is.
    """
    gc.collect()
    for t in threading.enumerate():
        if t.name.startswith("climml-"):
            t.join(timeout)
    return [t for t in threading.enumerate() if t.name.startswith("climml-") and t.is_alive()]


@pytest.mark.parametrize("shuffle", [False, True])
def test_windows_equal_hand_indexed_arrays(ds, shuffle):
    loader = _loader(ds, shuffle=shuffle, mask_channel=True, block_steps=7, shuffle_blocks=3)
    sst, heat, nino = (ds[v].values for v in ("sst", "heat_content", "nino34"))
    seen = 0
    for batch in loader:
        for i in np.flatnonzero(batch.weight):
            t = batch.anchor[i]
            window = slice(t - 2, t + 1)
            np.testing.assert_array_equal(batch.x[i, ..., 0], np.nan_to_num(sst[window]))
            np.testing.assert_array_equal(batch.x[i, ..., 1], np.nan_to_num(heat[window]))
            finite = np.isfinite(sst[window]) & np.isfinite(heat[window])
            np.testing.assert_array_equal(batch.x[i, ..., 2], finite.astype(np.float32))
            future = nino[t + np.array(LEADS)]
            np.testing.assert_array_equal(batch.y[i], np.nan_to_num(future))
            np.testing.assert_array_equal(batch.y_valid[i], np.isfinite(future))
            np.testing.assert_array_equal(batch.target_history[i], np.nan_to_num(nino[window]))
            seen += 1
    assert seen == loader.num_samples == 112


def test_gridded_target_channel_dims_and_spec():
    time_ = pd.date_range("2000-01-01", periods=40, freq="MS")
    rng = np.random.default_rng(0)
    field = rng.standard_normal((40, 3, 4)).astype(np.float32)
    field[:, 0, 0] = np.nan  # a land cell
    feats = rng.standard_normal((40, 2, 3, 4)).astype(np.float32)  # (time, feature, lat, lon)
    data = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), field),
            "wind": (("time", "feature", "lat", "lon"), feats),
        },
        coords={"time": time_},
    )
    loader = cd.WindowLoader(
        data,
        inputs=["wind", "t2m"],
        target="t2m",
        input_steps=2,
        leads=[0, 2],
        anchors=np.arange(1, 38),
        batch_size=8,
    )
    assert loader.spec.input_shape == (2, 3, 4, 3)  # 2 wind features + t2m
    assert loader.spec.output_shape == (2, 3, 4)
    batch = next(iter(loader))
    t = batch.anchor[0]
    np.testing.assert_array_equal(batch.x[0, ..., 0], feats[t - 1 : t + 1, 0])
    np.testing.assert_array_equal(batch.x[0, ..., 1], feats[t - 1 : t + 1, 1])
    np.testing.assert_array_equal(batch.x[0, ..., 2], np.nan_to_num(field[t - 1 : t + 1]))
    np.testing.assert_array_equal(batch.y[0], np.nan_to_num(field[[t, t + 2]]))
    assert batch.y_valid[0, :, 0, 0].sum() == 0 and batch.y_valid[0, :, 1:, :].min() == 1
    shapes = [(8, 2, 3, 4, 3), (8, 2, 3, 4), (8, 2, 3, 4), (8, 2, 3, 4), (8,), (8,)]
    assert [getattr(batch, name).shape for name in batch._fields] == shapes


def test_inputs_stored_in_another_dim_order_are_aligned():
    time_ = pd.date_range("2000-01-01", periods=20, freq="MS")
    u = np.random.default_rng(1).standard_normal((20, 3, 4)).astype(np.float32)
    data = xr.Dataset(
        {"u": (("time", "lat", "lon"), u), "v": (("lon", "time", "lat"), u.transpose(2, 0, 1))},
        coords={"time": time_},
    )
    loader = cd.WindowLoader(
        data,
        inputs=["u", "v"],
        target="v",
        input_steps=2,
        leads=[1],
        anchors=np.arange(1, 19),
        batch_size=4,
    )
    batch = next(iter(loader))
    np.testing.assert_array_equal(batch.x[..., 0], batch.x[..., 1])
    np.testing.assert_array_equal(batch.y[:, 0], u[batch.anchor + 1])
    assert loader.spec.output_shape == (1, 3, 4)


def test_one_dimensional_inputs_give_time_by_channel(ds):
    loader = cd.WindowLoader(
        ds,
        inputs=["nino34"],
        target="nino34",
        input_steps=4,
        leads=[1],
        anchors=np.arange(3, 100),
        batch_size=5,
    )
    batch = next(iter(loader))
    assert batch.x.shape == (5, 4, 1) and loader.spec.input_shape == (4, 1)
    t = batch.anchor[2]
    np.testing.assert_array_equal(
        batch.x[2, :, 0], np.nan_to_num(ds["nino34"].values[t - 3 : t + 1])
    )


def test_shuffle_is_seeded_complete_and_differs_between_epochs(ds):
    loader = _loader(ds, shuffle=True, seed=3, block_steps=10, shuffle_blocks=2)
    epoch0 = _real(loader.epoch(0))
    assert np.array_equal(
        epoch0, _real(_loader(ds, shuffle=True, seed=3, block_steps=10, shuffle_blocks=2).epoch(0))
    )
    epoch1 = _real(loader.epoch(1))
    other_seed = _real(_loader(ds, shuffle=True, seed=4, block_steps=10, shuffle_blocks=2).epoch(0))
    for order in (epoch0, epoch1, other_seed):
        np.testing.assert_array_equal(np.sort(order), np.arange(2, 114))  # each sample once
    assert not np.array_equal(epoch0, epoch1) and not np.array_equal(epoch0, other_seed)
    unshuffled = _real(_loader(ds).epoch(0))
    np.testing.assert_array_equal(unshuffled, np.arange(2, 114))


def test_resuming_mid_epoch_gives_the_same_batches(ds):
    loader = _loader(ds, shuffle=True, seed=1, block_steps=9, shuffle_blocks=2)
    full = list(loader.epoch(2))
    tail = list(loader.epoch(2, start_batch=4))
    assert len(tail) == len(full) - 4
    for a, b in zip(full[4:], tail, strict=True):
        for name in a._fields:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert list(loader.epoch(2, start_batch=len(loader))) == []


def test_fixed_batch_shapes_with_padding_weights(ds):
    loader = _loader(ds, batch_size=16, anchors=np.arange(2, 52))  # 50 samples
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert {b.x.shape for b in batches} == {(16, 3, 8, 16, 2)}
    last = batches[-1]
    np.testing.assert_array_equal(last.weight, [1, 1] + [0] * 14)
    assert (
        (last.anchor[2:] == -1).all() and (last.x[2:] == 0).all() and (last.y_valid[2:] == 0).all()
    )
    assert all(b.x.dtype == np.float32 and b.anchor.dtype == np.int64 for b in batches)
    dropped = _loader(ds, batch_size=16, anchors=np.arange(2, 52), drop_last=True)
    assert len(dropped) == 3 and all(b.weight.min() == 1 for b in dropped)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_each_block_is_read_once_per_epoch(ds, prefetch):
    """Reads are contiguous blocks of many samples, never one read per sample."""
    loader = _loader(ds, shuffle=True, block_steps=20, shuffle_blocks=2, prefetch=prefetch)
    reads = []
    read_block = loader._read_block
    loader._read_block = lambda b: reads.append(b) or read_block(b)
    _real(loader.epoch(0))
    assert sorted(reads) == list(range(6))  # 112 anchors / 20 per block -> 6 blocks, once each


def test_block_cache_reads_one_group_ahead_and_frees_finished_groups():
    reads = []
    group = np.array([0, 0, 1, 1, 2, 2])
    cache = BlockCache(lambda b: reads.append(b) or f"block {b}", group, np.arange(6), ahead=1)
    try:
        assert cache.get(np.array([1])) == {1: "block 1"}
        assert sorted(cache._blocks) == [0, 1, 2, 3]  # group 0 and, read ahead, group 1
        cache.get(np.array([2, 3]))
        assert sorted(cache._blocks) == [2, 3, 4, 5]  # group 0 freed, group 2 read ahead
        cache.get(np.array([5]))
        assert sorted(cache._blocks) == [4, 5]
    finally:
        cache.close()
    assert sorted(reads) == list(range(6))


def test_prefetched_and_synchronous_batches_are_identical(ds):
    threaded = list(_loader(ds, shuffle=True, prefetch=3).epoch(1))
    inline = list(_loader(ds, shuffle=True, prefetch=0).epoch(1))
    for a, b in zip(threaded, inline, strict=True):
        np.testing.assert_array_equal(a.x, b.x)


def test_breaking_early_leaves_no_thread(ds):
    loader = _loader(ds, shuffle=True, prefetch=2)
    for i, _ in enumerate(loader.epoch(0)):
        if i == 1:
            break
    assert _prefetch_threads() == []
    iterator = loader.epoch(1)
    next(iterator)
    del iterator
    assert _prefetch_threads() == []


def test_errors_in_the_reading_thread_reach_the_consumer():
    def explode(block, block_info=None):
        if block_info[0]["array-location"][0][0] >= 20:
            raise OSError("disk gone")
        return block

    values = dask.array.ones((40, 2), chunks=(10, 2)).map_blocks(explode, dtype=float)
    data = xr.Dataset(
        {"v": (("time", "x"), values)},
        coords={"time": pd.date_range("2000", periods=40, freq="MS")},
    )
    loader = cd.WindowLoader(
        data,
        inputs=["v"],
        target="v",
        input_steps=2,
        leads=[1],
        anchors=np.arange(1, 39),
        batch_size=4,
        block_steps=8,
    )
    with pytest.raises(OSError, match="disk gone"):
        list(loader)
    assert _prefetch_threads() == []


def test_lazy_zarr_pipeline_matches_in_memory(ds, tmp_path):
    ds.chunk({"time": 16}).to_zarr(tmp_path / "d.zarr", consolidated=False)
    lazy = cd.open_dataset(tmp_path / "d.zarr")
    norm = cd.Normalizer.fit(lazy, climatology=True, time_range=("1870-01", "1875-12"))
    from_disk = list(_loader(norm.apply(lazy), shuffle=True))
    in_memory = list(_loader(norm.apply(ds), shuffle=True))
    for a, b in zip(from_disk, in_memory, strict=True):
        np.testing.assert_allclose(a.x, b.x, rtol=1e-6)
        np.testing.assert_allclose(a.y, b.y, rtol=1e-6)


def test_batches_land_on_devices_with_the_given_sharding(ds):
    import jax
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = cd.batch_sharding(mesh)
    loader = _loader(ds, batch_size=8 * len(jax.devices()), sharding=sharding)
    batch = next(iter(loader))
    assert isinstance(batch.x, jax.Array) and batch.x.sharding == sharding
    assert isinstance(batch.anchor, np.ndarray)  # bookkeeping stays on the host
    with pytest.raises(ConfigError, match="mesh axis"):
        cd.batch_sharding(mesh, axis="model")
    if len(jax.devices()) > 1:
        with pytest.raises(ConfigError, match=r"data\.batch_size: expected a multiple"):
            _loader(ds, batch_size=len(jax.devices()) + 1, sharding=sharding)


def test_bad_arguments_name_the_field(ds):
    with pytest.raises(DataError, match=r"data\.inputs: expected variables with the same"):
        _loader(ds, inputs=["sst", "nino34"])
    with pytest.raises(DataError, match=r"wind: expected a data variable"):
        _loader(ds, inputs=["wind"])
    with pytest.raises(ConfigError, match=r"anchors: expected indices in \[2, 113\]"):
        _loader(ds, anchors=np.arange(0, 10))
    with pytest.raises(ConfigError, match=r"data\.leads"):
        _loader(ds, leads=[-1])
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        _loader(ds, anchors=np.arange(2, 10), drop_last=True)
    with pytest.raises(ConfigError, match=r"start_batch"):
        _loader(ds).epoch(0, start_batch=99)
