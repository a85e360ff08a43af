"""Config loading: strict keys with nearest-key hints, type checks, overrides, round trip."""

import pytest
import yaml

from climml import config
from climml.errors import ConfigError

BASE = {"model": {"name": "mlp"}}


def test_defaults_and_model_section_are_typed():
    cfg = config.from_dict({"model": {"name": "cnn", "filters": [8, 16]}})
    assert cfg.model.filters == (8, 16) and cfg.model.name == "cnn"
    assert cfg.data.leads == (1, 3, 6) and cfg.train.lr == 1e-3


def test_unknown_key_names_path_and_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key \(did you mean 'lr'\?\)"):
        config.from_dict({**BASE, "train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"model\.hiden: unknown key \(did you mean 'hidden'\?\)"):
        config.from_dict({"model": {"name": "mlp", "hiden": [3]}})
    with pytest.raises(ConfigError, match=r"^trian: unknown key \(did you mean 'train'\?\)"):
        config.from_dict({**BASE, "trian": {}})


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ({"train": {"epochs": "ten"}}, None, r"train\.epochs: expected int, found 'ten'"),
        ({"train": {"epochs": 2.5}}, None, r"train\.epochs: expected int, found 2\.5"),
        ({"data": {"mask_channel": "yes"}}, None, r"data\.mask_channel: expected bool"),
        ({"data": {"leads": [1, "x"]}}, None, r"data\.leads\[1\]: expected int"),
        ({"train": {"clip_norm": "big"}}, None, r"train\.clip_norm: expected float or null"),
        ({"model": {"name": "nope"}}, None, r"model\.name: expected one of \["),
    ],
)
def test_wrong_types_are_rejected_with_their_path(section, value, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict({**BASE, **section})


def test_missing_model_name():
    with pytest.raises(ConfigError, match=r"model\.name: expected one of"):
        config.from_dict({"train": {}})


def test_overrides_are_parsed_and_type_checked():
    cfg = config.from_dict(
        BASE,
        [
            "train.lr=1e-3",
            "data.leads=[2,4]",
            "train.clip_norm=null",
            "model.hidden=[5]",
            "train.loss={mse: 1.0, mae: 0.5}",
        ],
    )
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.data.leads == (2, 4) and cfg.train.clip_norm is None
    assert cfg.model.hidden == (5,) and cfg.train.loss == {"mse": 1.0, "mae": 0.5}
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int, found 'many'"):
        config.from_dict(BASE, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"--set: expected KEY=VALUE"):
        config.from_dict(BASE, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key \(did you mean 'epochs'\?\)"):
        config.from_dict(BASE, ["train.epoch=3"])


def test_load_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config: expected an existing YAML file"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config.load(bad)


def test_yaml_tags_are_not_executed(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config.load(evil)


def test_dump_round_trips_and_differences(tmp_path):
    cfg = config.load("configs/quickstart.yaml", ["train.epochs=3"])
    path = tmp_path / "config.yaml"
    path.write_text(config.dump(cfg))
    again = config.load(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 3
    other = config.from_dict(config.to_dict(cfg), ["train.lr=0.5", "output.workdir=elsewhere"])
    assert config.differences(cfg, other) == ["train.lr"]


def test_unquoted_yaml_dates_become_iso_strings():
    raw = yaml.safe_load("model: {name: mlp}\ndata:\n  splits: {train: [1870-01-01, 1900-12-31]}\n")
    cfg = config.from_dict(raw)
    assert cfg.data.splits["train"] == ("1870-01-01", "1900-12-31")
