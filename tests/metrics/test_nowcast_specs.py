"""eval.metrics entries of the nowcast scores: parsing, checks, settings and table keys."""

from types import SimpleNamespace

import numpy as np
import pytest

import climml.metrics as cm
from climml.errors import ConfigError
from climml.tasks import metric_specs
from climml.tasks.metric_specs import CrpsParams, FssParams, NoParams, ThresholdParams

ENTRIES = [
    {"csi": {"thresholds": [1, 2, 4, 8], "pool": [1, 4, 16]}},
    {"pod": {"thresholds": [1]}},
    {"crps": {"pool": [1, 4, 16], "pooling": ["avg", "max"]}},
    {"fss": {"scales": [1, 4], "thresholds": [1, 8]}},
    "rank_histogram",
    "spread_skill",
    "psd",
]


def _cfg(metrics, task="nowcast"):
    return SimpleNamespace(eval=SimpleNamespace(metrics=metrics, task=task, area_weighting="none"))


def test_entries_parse_into_typed_params():
    specs = metric_specs.parse(ENTRIES)
    assert specs[0].params == ThresholdParams(thresholds=(1.0, 2.0, 4.0, 8.0), pool=(1, 4, 16))
    assert specs[1].params == ThresholdParams(thresholds=(1.0,))  # pool defaults to (1,)
    assert specs[2].params == CrpsParams(pool=(1, 4, 16), pooling=("avg", "max"))
    assert specs[3].params == FssParams(thresholds=(1.0, 8.0), scales=(1, 4))
    assert [s.params for s in specs[4:]] == [NoParams()] * 3


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"csi": {"thresholds": [1], "pool": [0]}}, "eval.metrics[0].csi.pool"),
        ({"crps": {"pool": []}}, "eval.metrics[0].crps.pool"),
        ({"crps": {"pooling": ["mean"]}}, "eval.metrics[0].crps.pooling"),
        ({"crps": {"pool": ["4"]}}, "eval.metrics[0].crps.pool"),
        ({"rank_histogram": {"bins": 3}}, "rank_histogram"),
    ],
)
def test_bad_entries_name_the_field(entry, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        metric_specs.parse([entry])


def test_tasks_that_do_not_pool_reject_pooling():
    supported = {"csi": None, "crps": None}
    pooled = _cfg([{"csi": {"thresholds": [1], "pool": [1, 4]}}], task="regression")
    with pytest.raises(ConfigError, match=r"csi\.pool.*does not pool"):
        metric_specs.check(pooled, supported, thresholds=("csi",))
    max_crps = _cfg([{"crps": {"pooling": ["max"]}}], task="regression")
    with pytest.raises(ConfigError, match=r"crps\.pooling"):
        metric_specs.check(max_crps, supported)
    plain = _cfg([{"csi": {"thresholds": [1]}}, "crps"], task="regression")
    assert len(metric_specs.check(plain, supported, thresholds=("csi",))) == 2
    ok = metric_specs.check(pooled, supported, thresholds=("csi",), pooled=("csi", "crps"))
    assert ok[0].params.pool == (1, 4)


def test_settings_cover_every_key_the_specs_ask_for():
    specs = metric_specs.parse(ENTRIES)
    settings = metric_specs.nowcast_settings(specs, fss_scales=(16,))
    assert settings == {
        "thresholds": (1.0, 2.0, 4.0, 8.0),
        "pools": (1, 4, 16),
        "fss_scales": (1, 4),
        "op": ">=",
    }
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 3.0, size=(2, 3, 32, 32)).astype(np.float32)
    forecast = obs[:, None] * rng.lognormal(0, 0.3, size=(2, 4, 3, 32, 32)).astype(np.float32)
    stats = cm.nowcast_statistics(forecast, obs, member_axis=1, lead_axis=1, **settings)
    table = cm.nowcast_table(stats)
    keys = metric_specs.nowcast_keys(specs, list(table))
    csi = [f"csi@{t}{s}" for t in (1, 2, 4, 8) for s in ("", "/max4", "/max16")]
    crps = ["crps", "crps/avg4", "crps/max4", "crps/avg16", "crps/max16"]
    fss = ["fss@1/1", "fss@8/1", "fss@1/4", "fss@8/4"]
    assert sorted(keys) == sorted(
        csi + ["pod@1"] + crps + fss + ["spread", "skill", "spread_skill"]
    )
    mixed = metric_specs.parse(
        [{"csi": {"thresholds": [1], "op": ">"}}, {"fss": {"thresholds": [1]}}]
    )
    with pytest.raises(ConfigError, match="op"):
        metric_specs.nowcast_settings(mixed)
