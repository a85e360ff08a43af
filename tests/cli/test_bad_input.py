"""Bad config values and bad data through the command line: one line on stderr naming the key
or the variable and split, exit status 2, and no run directory left behind."""

import numpy as np
import pytest

import climml as cm
from climml.cli import main

TINY = [
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[4]",
    "model.hidden=[4]",
    "train.epochs=1",
    "output.progress=false",
    "eval.explain.enabled=false",
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """zarr stores of the tiny ENSO data, each broken in one split."""
    root = tmp_path_factory.mktemp("bad")
    ds = cm.data.synthetic.enso(360, nlat=12, nlon=24, seed=0)
    no_sst = ds.copy(deep=True)
    no_sst["sst"].loc[{"time": slice("1870-01", "1884-12")}] = np.nan
    flat = ds.copy(deep=True)
    flat["nino34"].loc[{"time": slice("1885-01", "1889-12")}] = 0.25
    for name, data in {"nan_sst": no_sst, "flat_nino": flat}.items():
        data.to_zarr(root / f"{name}.zarr", consolidated=False)
    return root


def _fails(tmp_path, capsys, argv, message):
    workdir = tmp_path / "run"
    assert main(["run", *argv[:1], "--workdir", str(workdir), *argv[1:]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("climml: error: "), lines
    assert message in lines[0], lines[0]
    assert not workdir.exists()  # nothing written, not even an empty directory


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-3", "train.epochs: expected >= 1, found -3"),
        ("train.lr=0", "train.lr: expected > 0, found 0.0"),
        ("data.batch_size=0", "data.batch_size: expected >= 1, found 0"),
        ("model.dropout=1.5", "model.dropout: expected in [0, 1), found 1.5"),
        ("data.target=t2m", "t2m: expected a data variable, found none (available: "),
        ("train.optimizer=adamm", "train.optimizer: expected one of"),
        (
            "eval.split=testing",
            "eval.split: expected one of ['test', 'train', 'val'], found 'testing'",
        ),
        (
            "data.splits={train: [1870-01, 1884-12]}",
            "data.splits: expected 'train' and 'val' splits",
        ),
    ],
)
def test_bad_config_values(tmp_path, capsys, override, message):
    _fails(tmp_path, capsys, ["configs/quickstart.yaml", "--set", *TINY, override], message)


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("nan_sst", "sst (split train): expected some values that are not NaN, found only NaN"),
        ("flat_nino", "nino34 (split val): expected values that vary, found the constant 0.25"),
    ],
)
def test_bad_data_names_variable_and_split(tmp_path, capsys, stores, store, message):
    source = [f"data.source={stores / f'{store}.zarr'}", "data.source_args={}"]
    _fails(tmp_path, capsys, ["configs/quickstart.yaml", "--set", *TINY, *source], message)


def test_yaml_file_reads_exponent_numbers(tmp_path, capsys):
    """``lr: 1e-3`` in a file is a float: the only complaint is the out-of-range epochs."""
    text = open("configs/quickstart.yaml").read()
    assert "lr: 0.001" in text and "epochs: 25" in text
    config = tmp_path / "exp.yaml"
    config.write_text(text.replace("lr: 0.001", "lr: 1e-3").replace("epochs: 25", "epochs: -3"))
    shrink = [o for o in TINY if not o.startswith("train.epochs")]
    _fails(tmp_path, capsys, [str(config), "--set", *shrink], "train.epochs: expected >= 1")
    assert cm.config.load(config, ["train.epochs=1"]).train.lr == 1e-3
