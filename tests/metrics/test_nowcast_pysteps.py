"""nowcast_statistics against pysteps.verification on random fields and MeteoSwiss radar.

Where the conventions differ, the tests pin the difference down (see climml.metrics.nowcast):

* pysteps' categorical events are ``x > thr``: compared with ``op=">"``.
* pysteps counts a NaN cell as a non-event (so a NaN forecast over observed rain is a miss);
  climml masks it. With the NaN cells made common to both fields they agree.
* pysteps' FSS sums the fractions of NaN cells too (as non-events); climml leaves NaN cells
  out of the sums. Equal on complete fields; on radar frames each matches its own float64
  reference.
* pysteps' CRPS drops a point with any NaN member; with common NaN cells they agree. Its
  Hersbach loop also mis-scores points where the observation equals a member (a dry
  observation among dry members is common in radar): climml matches the exact CRPS there and
  pysteps everywhere else.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

import climml.metrics as cm

pysteps = pytest.importorskip("pysteps")
from pysteps.verification import detcatscores, probscores, spatialscores  # noqa: E402

THRESHOLDS = (0.5, 1.0, 2.0, 4.0, 8.0)
# det_cat_fct forms every score first, so a table without correct negatives (max-pooled rain
# everywhere) divides 0 by 0 in its POFD; the scores compared here are finite.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _radar_root() -> Path:
    env = os.environ.get("CLIMML_RADAR_DATA")
    return Path(env) if env else Path(__file__).parents[2].parent / "shared/data/pysteps-data"


def _blocks(x, size, kind):
    """float64 non-overlapping pooling; trailing rows/columns that fill no window dropped."""
    *lead, h, w = x.shape
    x = np.asarray(x, np.float64)[..., : h // size * size, : w // size * size]
    b = np.moveaxis(x.reshape(*lead, h // size, size, w // size, size), -3, -2)
    return b.mean(axis=(-2, -1)) if kind == "avg" else b.max(axis=(-2, -1))


def _energy_crps(members, obs):
    """CRPS of the members' empirical distribution per point, float64 (NaN where missing)."""
    skill = np.mean(np.abs(members - obs), axis=0)
    spread = np.mean(np.abs(members[:, None] - members[None, :]), axis=(0, 1))
    return skill - 0.5 * spread


def test_pysteps_crps_drops_terms_where_the_observation_ties_a_member():
    """pysteps' Hersbach loop has no case for an observation equal to a member, so a dry
    observation among some dry members scores too low; climml gives the exact CRPS."""
    members = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 0.5], [1.0, 1.0, 3.0]]).T  # (M, points)
    obs = np.array([0.0, 0.0, 1.0])
    exact = _energy_crps(members, obs)  # 5/9, 7/18, 2/9
    np.testing.assert_allclose(exact, [5 / 9, 7 / 18, 2 / 9])
    ours = cm.crps_ensemble(members, obs, ensemble_axis=0)
    np.testing.assert_allclose(ours, exact, rtol=1e-6)
    theirs = [probscores.CRPS(members[:, p : p + 1], obs[p : p + 1]) for p in range(3)]
    np.testing.assert_allclose(theirs, [1 / 9, 1 / 6, 0.0], atol=1e-12)


def _pysteps_categorical(forecast, obs, threshold):
    scores = detcatscores.det_cat_fct(forecast, obs, threshold, scores=["CSI", "POD", "FAR"])
    return [scores["CSI"], scores["POD"], scores["FAR"]]


def _check_against_pysteps(members, obs, pools, scales, rtol=1e-5, fss=True):
    """Per-lead scores of ``(M, L, H, W)`` members (M = 1: deterministic) vs pysteps; ``fss``
    also checks FSS (which agrees on complete fields only)."""
    ensemble = members.shape[0] > 1
    stats = cm.nowcast_statistics(
        members if ensemble else members[0],
        obs,
        thresholds=THRESHOLDS,
        pools=pools,
        fss_scales=scales,
        member_axis=0 if ensemble else None,
        lead_axis=0,
        op=">",
    )
    scores = cm.nowcast_scores(stats)
    for lead in range(obs.shape[0]):
        for i, size in enumerate(pools):
            f, o = _blocks(members[:, lead], size, "max"), _blocks(obs[lead], size, "max")
            for k, t in enumerate(THRESHOLDS):
                got = [scores[name][lead, i, k] for name in ("csi", "pod", "far")]
                # pysteps pools members by flattening them into the sample axis.
                want = _pysteps_categorical(f, np.broadcast_to(o, f.shape), t)
                np.testing.assert_allclose(got, want, rtol=rtol)
            for kind in ("avg", "max"):
                f, o = _blocks(members[:, lead], size, kind), _blocks(obs[lead], size, kind)
                got = scores[f"crps_{kind}"][lead, i]
                np.testing.assert_allclose(got, np.nanmean(_energy_crps(f, o)), rtol=rtol)
                tie = np.any(f == o, axis=0)  # pysteps' CRPS is wrong there (see below)
                if ensemble and not tie.any():
                    np.testing.assert_allclose(got, probscores.CRPS(f, o), rtol=rtol)
                elif ensemble:
                    want = np.nanmean(_energy_crps(f[:, ~tie], o[~tie]))
                    np.testing.assert_allclose(probscores.CRPS(f[:, ~tie], o[~tie]), want)
        for j, scale in enumerate(scales if fss else ()):
            for k, t in enumerate(THRESHOLDS):
                fss = spatialscores.fss_init(t, scale)
                for member in members[:, lead]:
                    spatialscores.fss_accum(fss, member, obs[lead])
                want = spatialscores.fss_compute(fss)
                np.testing.assert_allclose(scores["fss"][lead, j, k], want, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("members", [1, 5])
def test_random_fields_agree_with_pysteps(members):
    rng = np.random.default_rng(members)
    shape = (2, 48, 40)
    obs = rng.gamma(0.5, 3.0, size=shape) * (rng.random(shape) < 0.5)
    forecast = np.roll(obs, 2, axis=-1) * rng.lognormal(0, 0.5, size=(members, *shape))
    _check_against_pysteps(forecast, obs, pools=(1, 4, 8), scales=(1, 4, 5, 16))


def _mch_frames(event: str, count: int) -> np.ndarray:
    """``count`` consecutive MeteoSwiss rain-rate frames (mm/h) of ``event``; NaN: no data."""
    root = _radar_root() / "radar/mch" / event
    files = sorted(root.glob("AQC*.gif"))
    if len(files) < count:
        pytest.skip(f"MeteoSwiss radar frames not found under {root} (set CLIMML_RADAR_DATA)")
    importers = pytest.importorskip("pysteps.io.importers")
    conversion = pytest.importorskip("pysteps.utils.conversion")
    frames = []
    for path in files[:count]:
        rain, _, metadata = importers.import_mch_gif(str(path), "AQC", "mm", 5.0)
        frames.append(conversion.to_rainrate(rain, metadata)[0])
    return np.stack(frames)


@pytest.fixture(scope="module")
def mch():
    return _mch_frames("20160711", 8)


# Rows/columns of the MeteoSwiss grid: a window across the edge of the radar range (20 % NaN,
# 17 % of cells >= 1 mm/h in the first frames), the full frame, and a square inside the range.
EDGE = (slice(64, 320), slice(384, 704))
FULL = (slice(None), slice(None))
INSIDE = (slice(170, 426), slice(280, 536))


@pytest.mark.parametrize("region", [EDGE, pytest.param(FULL, marks=pytest.mark.slow)])
def test_meteoswiss_agrees_with_pysteps(mch, region):
    """Persistence from frame 3 and a 4-frame lagged ensemble, leads 5-20 min: CSI/POD/FAR
    and CRPS with the radar's NaN cells; FSS and spectra inside its range (no NaN)."""
    frames = mch.copy()
    missing = np.any(np.isnan(frames), axis=0)  # NaN cells made common to every field
    frames[:, missing] = np.nan
    obs = frames[4:8]
    persistence = np.broadcast_to(frames[3], obs.shape)[None]
    part = (slice(None), slice(None), *region)
    assert np.isnan(persistence[part]).any()
    _check_against_pysteps(persistence[part], obs[part[1:]], (1, 4, 16), (1,), fss=False)
    lagged = np.stack([np.broadcast_to(frames[i], obs.shape) for i in range(4)])
    _check_against_pysteps(lagged[part][:, :2], obs[part[1:]][:2], (1, 16), (1,), fss=False)
    inside = (slice(None), slice(None), *INSIDE)
    assert not np.isnan(persistence[inside]).any()
    _check_against_pysteps(persistence[inside], obs[inside[1:]], (1,), (1, 4, 16))


def test_meteoswiss_spectra_agree_with_pysteps_rapsd(mch):
    """On a square field our rings are pysteps' rings (its rapsd stops one ring short of the
    Nyquist ring for even sizes; on non-square fields it counts rings in pixel offsets
    instead of wavenumbers, where climml scales both axes to one wavenumber)."""
    spectral = pytest.importorskip("pysteps.utils.spectral")
    fields = mch[4:8][(slice(None), *INSIDE)]
    forecast = np.broadcast_to(mch[3][INSIDE], fields.shape)
    stats = cm.nowcast_statistics(forecast, fields, lead_axis=0)
    got = cm.nowcast_scores(stats)["psd_observed"]
    want = [spectral.rapsd(field, fft_method=np.fft) for field in fields]
    np.testing.assert_allclose(got[:, :-1], want, rtol=1e-4)


def test_meteoswiss_nan_conventions(mch):
    """Raw frames (NaN masks differ from frame to frame): each side matches its definition."""
    forecast, obs = mch[3], mch[5]
    valid = ~np.isnan(forecast) & ~np.isnan(obs)
    stats = cm.nowcast_statistics(forecast, obs, thresholds=(1.0,), pools=(1,), fss_scales=(9,))
    scores = cm.nowcast_scores(stats)
    f_event, o_event = (forecast >= 1) & valid, (obs >= 1) & valid
    a, b, c = (np.sum(x) for x in (f_event & o_event, f_event & ~o_event, ~f_event & o_event))
    np.testing.assert_allclose(scores["csi"][0, 0], a / (a + b + c), rtol=1e-6)
    pysteps_csi = _pysteps_categorical(forecast, obs, 1.0)[0]  # NaN forecast + rain: a miss
    assert pysteps_csi < scores["csi"][0, 0]
    pf = uniform_filter(f_event * 1.0, size=9, mode="constant")
    po = uniform_filter(o_event * 1.0, size=9, mode="constant")
    ours = 1 - np.sum(((pf - po) ** 2)[valid]) / np.sum((pf**2 + po**2)[valid])
    np.testing.assert_allclose(scores["fss"][0, 0], ours, rtol=1e-5)
    f_any = np.nan_to_num(forecast, nan=0) >= 1  # pysteps: NaN is a non-event, cells summed
    o_any = np.nan_to_num(obs, nan=0) >= 1
    pf = uniform_filter(f_any * 1.0, size=9, mode="constant")
    po = uniform_filter(o_any * 1.0, size=9, mode="constant")
    theirs = 1 - np.sum((pf - po) ** 2) / np.sum(pf**2 + po**2)
    np.testing.assert_allclose(spatialscores.fss(forecast, obs, 1.0, 9), theirs, rtol=1e-10)
