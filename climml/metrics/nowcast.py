"""Nowcast verification in one call: every score the field judges radar nowcasts on.

``nowcast_statistics(forecast, observed, ...)`` reduces forecast/observation fields to
additive sufficient statistics per lead time; ``a + b`` (or ``climml.metrics.merge`` of
stacked ones) merges them across events, chunks and devices, and ``nowcast_scores(stats)``
forms the scores last:

* CSI, POD, FAR of the events ``x op threshold`` (default ``>= 1, 2, 4, 8`` mm/h) on the
  fields and after max pooling (``pools``; Ravuri et al. 2021 score CSI on max-pooled fields);
* FSS (Roberts & Lean 2008) at neighbourhood sizes ``fss_scales`` and the same thresholds;
* CRPS of the fields after average and after max pooling over each of ``pools`` (1: the
  per-pixel CRPS; a deterministic forecast is a one-member ensemble, whose CRPS is the MAE);
* the radially averaged power spectrum of forecast and observation (blur shows as missing
  power at high wavenumbers);
* for ensembles (``member_axis``): rank histogram and spread/skill (``climml.metrics.ensemble``).

Ensembles and deterministic scores: with a member axis, CSI/POD/FAR, FSS and the spectra
score every member as a forecast of its own and pool their statistics over the members (the
score of a typical member: the ensemble mean would be blurred and lose the very sharpness
these scores judge); CRPS, the rank histogram and spread/skill use the members together.

Conventions (and how they compare with ``pysteps.verification``, tested on MeteoSwiss radar):

* events are ``x >= threshold`` by default; pysteps' ``det_cat_fct`` uses ``x > threshold``
  (``op=">"`` reproduces it exactly; the two differ only for values equal to a threshold).
* FSS windows are centred with zero padding, as ``scipy.ndimage.uniform_filter`` and pysteps'
  ``fss``; NaN cells are non-events in both, but here they are left out of the sums while
  pysteps sums them (identical on complete fields; see ``climml.metrics.spatial``).
* CRPS is the exact CRPS of the members' empirical distribution (``crps_ensemble``), which
  pysteps' ``probscores.CRPS`` (Hersbach 2000) computes too, except at points where the
  observation equals a member: its loop has no case for the tie and drops terms there (a
  dry observation among some dry members, common in radar, scores too low). Points with a
  NaN observation are left out; a NaN member is left out of its point (pysteps drops the
  point).
* Pooling is ``climml.metrics.pooling.pool`` (no padding; a window holding NaN is masked).
* Spectra need complete fields: a field holding NaN is left out of the mean spectrum (crop
  radar composites to their covered area first). Rings are those of pysteps' ``rapsd`` on
  square fields, plus the Nyquist ring; on non-square fields both axes are scaled to one
  wavenumber, where ``rapsd`` counts rings in pixel offsets (``climml.metrics.spectral``).
* Rank histograms share a tie among the tied ranks where pysteps draws one at random.

NaN marks missing data everywhere and is masked as zero weight (``climml.metrics``' policy).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected
from climml.metrics._masking import as_float, check_broadcast, ratio, sum_together
from climml.metrics.categorical import COMPARISONS, Contingency, contingency
from climml.metrics.ensemble import RankHistogram, SpreadSkill, rank_histogram, spread_skill
from climml.metrics.pooling import check_pooling, pool
from climml.metrics.probabilistic import crps_ensemble
from climml.metrics.spatial import FssSums, fss_sums
from climml.metrics.spectral import radial_psd, radial_wavenumbers

CRPS_POOLINGS = ("avg", "max")  # order of the pooling axis of NowcastStats.crps


class MeanSums(NamedTuple):
    """Weighted sums for a mean, ``total / weight``; ``a + b`` merges."""

    total: Array
    weight: Array  # broadcasts against total

    def __add__(self, other: MeanSums) -> MeanSums:
        return MeanSums(self.total + other.total, self.weight + other.weight)

    def mean(self) -> Array:
        """The mean; NaN where nothing was summed."""
        return ratio(self.total, self.weight)


_DATA = ("contingency", "fss", "crps", "psd_forecast", "psd_observed", "rank", "spread")
_META = ("thresholds", "pools", "scales", "op", "stride", "fair", "grid", "spacing")


@functools.partial(jax.tree_util.register_dataclass, data_fields=_DATA, meta_fields=_META)
@dataclasses.dataclass(frozen=True)
class NowcastStats:
    """Sufficient statistics of ``nowcast_statistics``; ``a + b`` merges, a pytree (so it
    crosses ``jit``, ``vmap``, ``lax.all_gather`` and ``merge``). ``*lead`` is the lead-time
    axis when ``lead_axis`` was given, else empty.

    Fields:
      contingency: ``Contingency`` of the max-pooled fields, ``(*lead, P, K)`` counts.
      fss: ``FssSums`` ``(*lead, S, K)``.
      crps: ``MeanSums`` of the CRPS ``(*lead, 2, P)``, pooling ``CRPS_POOLINGS`` = avg, max.
      psd_forecast, psd_observed: ``MeanSums`` of spectra, total ``(*lead, R)``, weight
        ``(*lead, 1)`` (number of complete fields).
      rank: ``RankHistogram`` ``(*lead, M + 1)``, None for a deterministic forecast.
      spread: ``SpreadSkill`` ``(*lead,)``, None for a deterministic forecast.

    The remaining fields are the static settings (sums with different settings do not merge).
    """

    contingency: Contingency
    fss: FssSums
    crps: MeanSums
    psd_forecast: MeanSums
    psd_observed: MeanSums
    rank: RankHistogram | None
    spread: SpreadSkill | None
    thresholds: tuple[float, ...]
    pools: tuple[int, ...]
    scales: tuple[int, ...]
    op: str
    stride: int | None
    fair: bool
    grid: tuple[int, int]  # (H, W) of the fields, for the spectra's wavenumbers
    spacing: float

    def settings(self) -> dict:
        """The static settings; only statistics with equal settings merge."""
        return {f: getattr(self, f) for f in _META}

    def __add__(self, other: NowcastStats) -> NowcastStats:
        """Merged statistics: every field is a sum. On the host (NumPy arrays, e.g. after
        ``jax.device_get``) the sums widen to int64 / float64, so that accumulating many
        batches neither overflows the int32 counts (2**31 cells) nor rounds in float32."""
        if self.settings() != other.settings():
            raise DataError(
                expected("nowcast statistics settings", self.settings(), other.settings())
            )
        return jax.tree.map(_add, self, other)


def _add(a: Array, b: Array) -> Array:
    if isinstance(a, np.ndarray | np.generic) and isinstance(b, np.ndarray | np.generic):
        wide = np.int64 if np.issubdtype(a.dtype, np.integer) else np.float64
        return a.astype(wide) + b.astype(wide)
    return a + b


def nowcast_statistics(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    thresholds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
    pools: tuple[int, ...] = (1, 4, 16),
    fss_scales: tuple[int, ...] = (1, 4, 16),
    member_axis: int | None = None,
    lead_axis: int | None = None,
    op: str = ">=",
    stride: int | None = None,
    fair: bool = False,
    spacing: float = 1.0,
) -> NowcastStats:
    """Mergeable nowcast verification statistics of fields ``(..., H, W)``.

    Args:
      forecast: ``observed``'s shape, with a member axis at ``member_axis`` for an ensemble,
        e.g. ``(events, leads, H, W)`` or ``(events, members, leads, H, W)``; rain rate in
        mm/h (any units shared with ``thresholds``); NaN = missing.
      observed: ``(..., H, W)``, spatial axes last; NaN = missing.
      thresholds: event thresholds ``K`` (``x op threshold``) for CSI/POD/FAR and FSS.
      pools: pooling window sides ``P`` in cells for CSI (max pooling) and CRPS (average and
        max pooling); 1 is the unpooled field.
      fss_scales: FSS neighbourhood sizes ``S`` in cells.
      member_axis: the member axis of ``forecast`` (None: a deterministic forecast); an
        ensemble needs >= 2 members and also gets a rank histogram and spread/skill.
      lead_axis: an axis of ``observed`` (not a spatial one) kept in the statistics, e.g. the
        lead time; every other axis is summed (None: all are).
      op: event comparison, ``">="`` (default), ``">"``, ``"<="`` or ``"<"``.
      stride: pooling window step (None: the window side, non-overlapping windows).
      fair: fair (ensemble-size unbiased) CRPS; needs an ensemble.
      spacing: grid spacing (e.g. km) setting the spectra's wavenumber units.

    Returns:
      ``NowcastStats`` (fields and shapes in its docstring); ``nowcast_scores`` scores it.
    """
    settings = _checked_settings(thresholds, pools, fss_scales, op, stride, fair, spacing)
    forecast, observed = as_float(forecast, observed)
    members, observed, lead = _layout(forecast, observed, member_axis, lead_axis, pools)
    if member_axis is None and fair:
        raise ConfigError(expected("fair", "False for a deterministic forecast", fair))
    stats = _statistics(members, observed, ensemble=member_axis is not None, **settings)
    if not lead:  # the lead axis was a stand-in of size 1
        stats = jax.tree.map(lambda x: x[0], stats)
    return stats


def _checked_settings(thresholds, pools, scales, op, stride, fair, spacing) -> dict:
    """The settings as hashable tuples (jit static arguments), ``ConfigError`` if invalid."""
    if op not in COMPARISONS:
        raise ConfigError(expected("op", f"one of {sorted(COMPARISONS)}", repr(op)))
    thresholds = tuple(float(t) for t in np.atleast_1d(thresholds))
    if not thresholds or not all(np.isfinite(thresholds)):
        raise ConfigError(expected("thresholds", "one or more finite numbers", thresholds))
    pools, scales = tuple(np.atleast_1d(pools).tolist()), tuple(np.atleast_1d(scales).tolist())
    for name, sizes in (("pools", pools), ("fss_scales", scales)):
        if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ConfigError(expected(name, "one or more positive ints", sizes))
    for size in pools:
        check_pooling(size=size, stride=stride, names=("pools", "kind", "stride"))
    if not spacing > 0:
        raise ConfigError(expected("spacing", "a positive grid spacing", spacing))
    return dict(
        thresholds=thresholds,
        pools=pools,
        scales=scales,
        op=op,
        stride=stride,
        fair=bool(fair),
        spacing=float(spacing),
    )


def _layout(forecast, observed, member_axis, lead_axis, pools) -> tuple[Array, Array, bool]:
    """``(L, M, N, H, W)`` members and ``(L, N, H, W)`` observations (``L = 1`` without a lead
    axis, ``M = 1`` for a deterministic forecast), each moved with one transpose, and whether
    there is a lead axis."""
    if observed.ndim < 2 or min(observed.shape[-2:]) < max(2, *pools):
        want = f"(..., H, W) with H, W >= {max(2, *pools)} (the largest pool)"
        raise DataError(expected("observed.shape", want, observed.shape))
    ndim = observed.ndim
    want_ndim = ndim + (member_axis is not None)
    if forecast.ndim != want_ndim:
        what = "plus a member axis" if member_axis is not None else "(member_axis is None)"
        raise DataError(
            expected("forecast.ndim", f"{want_ndim}: observed's axes {what}", forecast.shape)
        )
    if member_axis is None:
        forecast, member = forecast[None], 0
    else:
        _check_axis("member_axis", member_axis, "forecast", forecast.shape)
        member = member_axis % forecast.ndim
        if forecast.shape[member] < 2:
            raise DataError(expected("forecast members", ">= 2", forecast.shape[member]))
    point_axes = [a for a in range(forecast.ndim) if a != member]  # observed axis i = point_axes[i]
    points = tuple(forecast.shape[a] for a in point_axes)
    shape = check_broadcast(**{"forecast without members": points, "observed": observed})
    full = list(shape)
    full.insert(member, forecast.shape[member])
    forecast, observed = jnp.broadcast_to(forecast, tuple(full)), jnp.broadcast_to(observed, shape)
    if lead_axis is not None:
        _check_axis("lead_axis", lead_axis, "observed", shape)
        lead = [lead_axis % ndim]
    else:
        lead = []
    rest = [a for a in range(ndim - 2) if a not in lead]
    order = [*lead, *rest, ndim - 2, ndim - 1]  # observed's axes, lead first
    observed = jnp.transpose(observed, order)
    members = jnp.transpose(
        forecast,
        [point_axes[a] for a in lead] + [member] + [point_axes[a] for a in order[len(lead) :]],
    )
    h, w = shape[-2:]
    leads = observed.shape[0] if lead else 1
    observed = observed.reshape(leads, -1, h, w)
    members = members.reshape(leads, members.shape[len(lead)], -1, h, w)
    return members, observed, lead_axis is not None


def _check_axis(name: str, axis: int, of: str, shape: tuple[int, ...]) -> None:
    """``DataError`` unless ``axis`` is a non-spatial (not one of the last two) axis."""
    ndim = len(shape)
    if (
        not isinstance(axis, int | np.integer)
        or not -ndim <= axis < ndim
        or axis % ndim >= ndim - 2
    ):
        raise DataError(expected(name, f"a non-spatial axis of {of} {shape}", axis))


@functools.partial(
    jax.jit,
    static_argnames=(
        "ensemble",
        "thresholds",
        "pools",
        "scales",
        "op",
        "stride",
        "fair",
        "spacing",
    ),
)
def _statistics(
    members: Array,
    observed: Array,
    *,
    ensemble: bool,
    thresholds: tuple[float, ...],
    pools: tuple[int, ...],
    scales: tuple[int, ...],
    op: str,
    stride: int | None,
    fair: bool,
    spacing: float,
) -> NowcastStats:
    """Statistics of ``(L, M, N, H, W)`` members against ``(L, N, H, W)`` observations, per L.

    The lead axis comes first so that every sum runs over trailing axes (a reshape, no
    transpose). Python loops run over the (static) pool sizes and FSS scales only, since
    window shapes must be static; thresholds, ranks and members are looped with ``lax.map``
    / ``fori_loop`` where a vmap would hold K (or M) copies of the fields at once.
    """
    dtype = observed.dtype
    threshold = jnp.asarray(thresholds, dtype)
    obs = observed[:, None]  # a size-1 member axis, broadcast against the members

    def pooled(size: int, kind: str) -> tuple[Array, Array]:
        if size == 1:
            return members, observed
        return (
            pool(members, size=size, kind=kind, stride=stride),
            pool(observed, size=size, kind=kind, stride=stride),
        )

    @functools.cache  # once per pooled field: avg and max pooling coincide at size 1
    def crps_sums(size: int, kind: str) -> MeanSums:
        f, o = pooled(size, kind)
        score = crps_ensemble(f, o, ensemble_axis=1, fair=fair)  # (L, N, H', W')
        valid = ~jnp.isnan(score)
        return MeanSums(*sum_together([jnp.where(valid, score, 0), valid.astype(dtype)], (1, 2, 3)))

    def stacked(items: list, lead_at: int = -1):
        """Stack statistics along a new leading axis and move their lead axis first."""
        together = jax.tree.map(lambda *xs: jnp.stack(xs), *items)
        return jax.tree.map(lambda x: jnp.moveaxis(x, lead_at, 0), together)

    tables = []
    for size in pools:
        f, o = pooled(size, "max")
        tables.append(contingency(f, o[:, None], threshold=threshold, op=op, axis=(1, 2, 3, 4)))
    table = stacked(tables)  # (L, P, K)

    def fss_at(window: int) -> FssSums:  # (K, L)
        return jax.lax.map(
            lambda t: fss_sums(members, obs, threshold=t, window=window, op=op, axis=(1, 2)),
            threshold,
        )

    fss = stacked([fss_at(s) for s in scales])  # (L, S, K)

    crps = [
        crps_sums(size, "avg" if size == 1 else kind) for kind in CRPS_POOLINGS for size in pools
    ]
    crps = jax.tree.map(lambda x: x.reshape(len(CRPS_POOLINGS), len(pools), -1), stacked(crps, 0))
    crps = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), crps)  # (L, 2, P)

    def spectra(fields: Array) -> MeanSums:
        """Summed spectra of the complete ``(L, N, H, W)`` fields: total ``(L, R)``, count
        ``(L, 1)``."""
        _, psd = radial_psd(fields, spacing=spacing)
        complete = ~jnp.any(jnp.isnan(psd), axis=-1)  # (L, N)
        psd = jnp.moveaxis(jnp.where(complete[..., None], psd, 0), -1, 1)  # (L, R, N)
        count = jnp.broadcast_to(complete[:, None, :], psd.shape).astype(dtype)
        total, count = sum_together([psd, count], (2,))
        return MeanSums(total, count[..., :1])  # the count is the same for every wavenumber

    def add_member(m: int, sums: MeanSums) -> MeanSums:  # one member's FFT at a time
        return sums + spectra(jax.lax.dynamic_index_in_dim(members, m, axis=1, keepdims=False))

    psd_forecast = spectra(members[:, 0])
    psd_forecast = jax.lax.fori_loop(1, members.shape[1], add_member, psd_forecast)

    rank = spread = None
    if ensemble:
        rank = rank_histogram(members, observed, ensemble_axis=1, axis=(1, 2, 3))
        spread = spread_skill(members, observed, ensemble_axis=1, axis=(1, 2, 3))
    return NowcastStats(
        contingency=table,
        fss=fss,
        crps=crps,
        psd_forecast=psd_forecast,
        psd_observed=spectra(observed),
        rank=rank,
        spread=spread,
        thresholds=thresholds,
        pools=pools,
        scales=scales,
        op=op,
        stride=stride,
        fair=fair,
        grid=tuple(observed.shape[-2:]),
        spacing=spacing,
    )


def nowcast_scores(stats: NowcastStats) -> dict[str, Array]:
    """Scores of (merged) ``NowcastStats``; ``*lead`` as in the statistics.

    Returns:
      ``csi``, ``pod``, ``far``: ``(*lead, P, K)`` per max-pooling size and threshold;
      ``fss``: ``(*lead, S, K)`` per scale and threshold;
      ``crps_avg``, ``crps_max``: ``(*lead, P)`` per pooling size (size 1: the plain CRPS);
      ``wavenumber``: ``(R,)`` cycles per ``spacing`` unit; ``psd_forecast``,
      ``psd_observed``: ``(*lead, R)`` mean power spectra;
      for ensembles also ``rank_histogram`` ``(*lead, M + 1)`` rank frequencies and
      ``spread``, ``skill`` (RMSE of the ensemble mean), ``spread_skill`` ``(*lead,)``.
    """
    # Host-merged counts are int64, which JAX (without x64) would wrap into int32: score
    # them as floats.
    stats = jax.tree.map(_float_counts, stats)
    crps = stats.crps.mean()
    scores = {
        "csi": stats.contingency.csi(),
        "pod": stats.contingency.pod(),
        "far": stats.contingency.far(),
        "fss": stats.fss.fss(),
        "crps_avg": crps[..., 0, :],
        "crps_max": crps[..., 1, :],
        "wavenumber": radial_wavenumbers(*stats.grid, stats.spacing),
        "psd_forecast": stats.psd_forecast.mean(),
        "psd_observed": stats.psd_observed.mean(),
    }
    if stats.rank is not None:
        scores["rank_histogram"] = stats.rank.frequencies()
    if stats.spread is not None:
        scores["spread"] = stats.spread.spread()
        scores["skill"] = stats.spread.skill()
        scores["spread_skill"] = stats.spread.ratio()
    return scores


def _float_counts(x: Array) -> Array:
    if isinstance(x, np.ndarray | np.generic) and np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64)
    return x


def nowcast_table(stats: NowcastStats) -> dict[str, Array]:
    """The scalar scores under ``metrics.json`` keys, each ``(*lead,)``.

    Keys: ``csi@<t>`` (and ``pod``, ``far``) on the fields and ``csi@<t>/max<p>`` after max
    pooling over ``p`` cells; ``fss@<t>/<scale>`` (as ``climml.tasks.metric_specs``);
    ``crps`` (per pixel), ``crps/avg<p>`` and ``crps/max<p>``; for ensembles ``spread``,
    ``skill`` and ``spread_skill``. Spectra and rank histograms are curves: see
    ``nowcast_scores``.
    """
    scores = nowcast_scores(stats)
    table: dict[str, Array] = {}
    for name in ("csi", "pod", "far"):
        for i, size in enumerate(stats.pools):
            suffix = "" if size == 1 else f"/max{size}"
            for k, t in enumerate(stats.thresholds):
                table[f"{name}@{t:g}{suffix}"] = scores[name][..., i, k]
    for j, scale in enumerate(stats.scales):
        for k, t in enumerate(stats.thresholds):
            table[f"fss@{t:g}/{scale}"] = scores["fss"][..., j, k]
    for i, size in enumerate(stats.pools):
        if size == 1:
            table["crps"] = scores["crps_avg"][..., i]
        else:
            table[f"crps/avg{size}"] = scores["crps_avg"][..., i]
            table[f"crps/max{size}"] = scores["crps_max"][..., i]
    for name in ("spread", "skill", "spread_skill"):
        if name in scores:
            table[name] = scores[name]
    return table
