"""split_anchors: every sample's whole span lies in its split, splits never share a time step,
and bad split configs name the offending split."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import climml.data as cd
from climml.errors import ConfigError

TIME = pd.date_range("1870-01-01", periods=240, freq="MS")  # 1870-01 .. 1889-12
SPLITS = {"train": ("1870-01", "1881-12"), "val": ("1882-01", "1885-12"), "test": (1886, 1889)}


def end_of(label) -> pd.Timestamp:
    """Last day covered by a partial date label such as "1881-12" or 1889."""
    text = str(label)
    return pd.Timestamp(text) + (pd.offsets.MonthEnd(0) if len(text) > 4 else pd.offsets.YearEnd(0))


@pytest.mark.parametrize(("input_steps", "max_lead", "gap"), [(1, 0, 0), (3, 6, 0), (12, 24, 6)])
def test_spans_stay_inside_their_split_and_splits_do_not_overlap(input_steps, max_lead, gap):
    anchors = cd.split_anchors(TIME, SPLITS, input_steps=input_steps, max_lead=max_lead, gap=gap)
    used = []
    for position, (name, (start, end)) in enumerate(SPLITS.items()):
        t = anchors[name]
        assert t.dtype == np.int64 and np.all(np.diff(t) == 1)
        first, last = TIME[t - input_steps + 1], TIME[t + max_lead]
        assert (first >= pd.Timestamp(str(start))).all()
        assert (last <= end_of(end)).all()
        # Maximal: the first anchor leaves exactly input_steps-1 steps (after any gap) and the
        # last exactly max_lead steps inside the split.
        inside = np.flatnonzero((TIME >= pd.Timestamp(str(start))) & (TIME <= end_of(end)))
        skipped = gap if position else 0
        assert t[0] == inside[0] + skipped + input_steps - 1
        assert t[-1] == inside[-1] - max_lead
        used.append(set(range(t[0] - input_steps + 1, t[-1] + max_lead + 1)))
    assert not used[0] & used[1] and not used[1] & used[2] and not used[0] & used[2]


def test_expected_counts_for_monthly_splits():
    anchors = cd.split_anchors(TIME, SPLITS, input_steps=3, max_lead=6, gap=2)
    # train: 144 months - 2 input history - 6 lead; val/test: 48 months - 2 gap - 2 - 6.
    assert {k: len(v) for k, v in anchors.items()} == {"train": 136, "val": 38, "test": 38}
    assert anchors["train"][0] == 2 and anchors["val"][0] == 144 + 2 + 2


def test_accepts_xarray_time_and_datetimes():
    as_xarray = cd.split_anchors(xr.DataArray(TIME, dims="time"), SPLITS, input_steps=2, max_lead=1)
    bounds = {k: (pd.Timestamp(str(a)), end_of(b)) for k, (a, b) in SPLITS.items()}
    as_datetimes = cd.split_anchors(TIME.values, bounds, input_steps=2, max_lead=1)
    for name in SPLITS:
        np.testing.assert_array_equal(as_xarray[name], as_datetimes[name])


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (
            {"train": ("1870-01", "1882-06"), "val": ("1882-01", "1885-12")},
            r"data\.splits\.val: expected a range after split 'train'.*overlaps",
        ),
        (
            {"train": ("1880-01", "1885-12"), "val": ("1870-01", "1875-12")},
            r"data\.splits\.val: .*starts before",
        ),
        ({"train": ("1950-01", "1960-12")}, r"data\.splits\.train: expected a range containing"),
        ({"train": ("1875-01", "1870-01")}, r"data\.splits\.train: expected a range containing"),
        ({"train": ("1870-01", "1870-06")}, r"data\.splits\.train: expected a range of at least 9"),
        ({"train": "1870"}, r"data\.splits\.train: expected \[start, end\]"),
        ({}, r"data\.splits: expected a mapping"),
    ],
)
def test_bad_splits_name_the_split(splits, message):
    with pytest.raises(ConfigError, match=message):
        cd.split_anchors(TIME, splits, input_steps=3, max_lead=6)


def test_bad_sizes_name_the_field():
    with pytest.raises(ConfigError, match=r"data\.input_steps"):
        cd.split_anchors(TIME, SPLITS, input_steps=0, max_lead=1)
    with pytest.raises(ConfigError, match=r"data\.gap"):
        cd.split_anchors(TIME, SPLITS, input_steps=1, max_lead=1, gap=-1)
