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


@pytest.mark.parametrize("key", ["thresholds", "pools", "fss_scales"])
def test_moved_nowcast_keys_say_where_they_went(key):
    """The nowcast scores' settings are eval.metrics parameters now; an old config is told so."""
    old = {**BASE, "eval": {"task": "nowcast", "nowcast": {key: [1], "members": 4}}}
    with pytest.raises(ConfigError, match=rf"^eval\.nowcast\.{key}: .*moved to eval\.metrics"):
        config.from_dict(old)
    assert config.from_dict({**BASE, "eval": {"nowcast": {"members": 4}}}).eval.nowcast.members == 4


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


# --------------------------------------------------------------------------- value ranges


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-3", r"^train\.epochs: expected >= 1, found -3$"),
        ("train.lr=0", r"^train\.lr: expected > 0, found 0\.0$"),
        ("train.lr=.nan", r"^train\.lr: expected > 0, found nan$"),
        ("data.batch_size=0", r"^data\.batch_size: expected >= 1, found 0$"),
        ("train.patience=-1", r"^train\.patience: expected >= 0, found -1$"),
        ("model.dropout=1.0", r"^model\.dropout: expected in \[0, 1\), found 1\.0$"),
        ("data.leads=[1, -2]", r"^data\.leads\[1\]: expected >= 0, found -2$"),
        ("data.leads=[]", r"^data\.leads: expected a non-empty list, found \[\]$"),
        ("data.input_steps=0", r"^data\.input_steps: expected >= 1, found 0$"),
        ("eval.explain.n_repeats=0", r"^eval\.explain\.n_repeats: expected >= 1, found 0$"),
        ("train.loss={mse: -1}", r"^train\.loss\.mse: expected >= 0, found -1\.0$"),
        ("model.filters=[8, 0]", r"^model\.filters\[1\]: expected >= 1, found 0$"),
        ("train.momentum=1", r"^train\.momentum: expected in \[0, 1\), found 1\.0$"),
    ],
)
def test_out_of_range_values_name_key_range_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict({"model": {"name": "cnn"}}, [override])


def test_null_passes_where_the_type_allows_it():
    cfg = config.from_dict(BASE, ["train.patience=null", "train.devices=null"])
    assert cfg.train.patience is None and cfg.train.devices is None


def test_check_catches_configs_edited_with_replace():
    import dataclasses

    cfg = config.from_dict(BASE)
    bad = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=0))
    with pytest.raises(ConfigError, match=r"^train\.epochs: expected >= 1, found 0$"):
        config.check(bad)
    wrong = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=["a.nc"]))
    with pytest.raises(ConfigError, match=r"^data\.source: expected a source name, a path or an"):
        config.check(wrong)


def _numeric_keys(cls, prefix):
    """Dotted keys of every field of dataclass ``cls`` whose type admits an int or a float."""
    import dataclasses
    import typing

    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            keys += _numeric_keys(hint, key + ".")
        elif {int, float} & _leaf_types(hint):
            keys.append(key)
    return keys


def _leaf_types(hint):
    import typing

    args = typing.get_args(hint)
    if not args:
        return {hint}
    return set().union(*(_leaf_types(a) for a in args if a is not Ellipsis))


def test_every_numeric_field_has_a_range():
    from climml.models import registry

    keys = _numeric_keys(config.Config, "")  # model: Any, covered below
    for name in registry.names():
        keys += _numeric_keys(registry.config_class(name), "model.")
    assert "train.epochs" in keys and "model.dropout" in keys and "train.loss" in keys
    missing = sorted(set(keys) - set(config.RANGES))
    assert not missing, f"add these keys to climml.config.RANGES: {missing}"


def test_yaml_exponent_numbers_are_floats(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: mlp}\ntrain: {lr: 1e-3, weight_decay: 5E-4, decay_rate: 1e0}\n")
    cfg = config.load(path)
    assert cfg.train.lr == 1e-3 and cfg.train.weight_decay == 5e-4 and cfg.train.decay_rate == 1.0
    assert config.from_dict(BASE, ["train.lr=2e-4"]).train.lr == 2e-4
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text("model: {name: mlp}\ntrain: {lr: '1e-3'}\n")
    with pytest.raises(ConfigError, match=r"^train\.lr: expected float, found '1e-3'$"):
        config.load(quoted)
