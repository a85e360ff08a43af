"""xarray wrappers of the metric kernels: ``dim=``, ``weights=``, ``skipna=``, ``align=``.

Call form
---------
Data arguments are positional-only, options keyword-only:
``rmse(forecast, observed, /, *, dim=None, weights="cell_area", skipna=True, align="exact")``.
``dim`` names the dimensions reduced (None: all); the result keeps the other dimensions and the
coordinates that live on them. Datasets are scored variable by variable (the observation
Dataset must hold the same names).

Area weighting
--------------
Gridded scores are area-weighted by latitude by default, as the field verifies global fields:
``weights="cell_area"`` (exact spherical band areas, WeatherBench 2's weights), ``"cos"``
(cos(latitude)), ``"none"`` (or None: every point alike), or any DataArray broadcast by
dimension name. A named weighting is built by ``latitude_weights`` from the observation's
``lat``/``latitude`` coordinate; data without one are weighted equally. Weights only matter
along reduced dimensions, so ``dim="time"`` scores are the same for every choice.
Kernels normalise by the sum of the weights of the valid points, so the scale of the weights
does not matter.

Aggregation over time (WeatherBench 2's conventions; ``climml.tasks`` scores this way)
----------------------------------------------------------------------------------------
* ACC: per time over the grid, then the mean over time:
  ``acc(f, o, dim=("lat", "lon")).mean("time")``.
* RMSE: the square root of the time mean of the spatially weighted MSE,
  ``sqrt(mean_t Σ w (f-o)² / Σ w)``. ``rmse(f, o)`` over all dimensions pools time and space
  with the same weights, which is the same number whenever every time has the same valid points.

Coordinates must match
----------------------
``align="exact"`` (default): forecast, observation and weights must hold identical coordinate
values on the dimensions they share, else ``DataError`` naming the dimension and showing both
ranges (no silent inner join: longitudes in -180..180 against 0..360 would score half the
globe, disjoint times would give NaN). ``align="inner"`` opts into the intersection (an empty
intersection is still an error); ``align="override"`` takes the forecast's coordinates when
the sizes agree.

dask
----
dask-backed inputs stay lazy: chunks along kept dimensions are scored in parallel, reduced
dimensions (and an ensemble's member dimension) are gathered into one chunk (accumulate the
kernels' statistics yourself to stream over them).

``skipna=True`` applies the NaN policy of ``climml.metrics`` (NaN points are masked);
``skipna=False`` makes a score NaN as soon as any of its points is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml.errors import ConfigError, DataError, expected
from climml.metrics import (
    categorical,
    continuous,
    ensemble,
    nowcast,
    pooling,
    probabilistic,
    roc,
    spatial,
    spectral,
)
from climml.metrics._masking import weighted_mean

Dims = Hashable | Sequence[Hashable] | None
DataLike = xr.DataArray | xr.Dataset
Weights = xr.DataArray | str | None

LATITUDE_NAMES = ("lat", "latitude")
WEIGHTINGS = ("cell_area", "cos", "none")
ALIGNS = ("exact", "inner", "override")


# --------------------------------------------------------------------------- latitude weights


def latitude_dim(data: DataLike) -> Hashable | None:
    """The latitude dimension of ``data`` (``lat`` or ``latitude``), or None."""
    return next((d for d in LATITUDE_NAMES if d in data.dims), None)


def latitude_weights(data: DataLike, /, *, kind: str = "cell_area", normalize: bool = True):
    """Area weights of each latitude as a DataArray over the latitude dimension.

    Args:
      data: a 1-D latitude DataArray (degrees), or a DataArray/Dataset with a ``lat`` or
        ``latitude`` dimension coordinate. A Dataset whose latitude carries CF ``bounds``
        (a ``(n, 2)`` variable in degrees) gives the cell areas from those bounds.
      kind: ``"cell_area"``: the area of each latitude band, ``sin(upper) - sin(lower)``
        with the bounds at the midpoints between neighbours and half a spacing beyond the
        first and last latitude (clipped to ±90°; on a global grid these are WeatherBench 2's
        weights). ``"cos"``: ``cos(lat)``. ``"none"``: ones.
      normalize: divide by the mean (mean 1). ``normalize=False`` with ``"cell_area"`` gives
        each band's fraction of the sphere's area, ``(sin(upper) - sin(lower)) / 2``, so the
        weights sum to the fraction of the sphere the latitudes cover.

    Returns:
      float64 DataArray with dims ``(<latitude dim>,)`` and the latitude coordinate.
    """
    if kind not in WEIGHTINGS:
        raise ConfigError(expected("kind", f"one of {list(WEIGHTINGS)}", repr(kind)))
    dim = latitude_dim(data)
    if (
        isinstance(data, xr.DataArray)
        and data.ndim == 1
        and (dim is None or dim not in data.coords)
    ):
        lat = data  # the latitudes themselves, whatever the name of their dimension
    else:
        if dim is None:
            want = f"a dimension named one of {list(LATITUDE_NAMES)}"
            raise DataError(expected("latitude", want, f"dims {list(data.dims)}"))
        lat = data[dim]
    dim = lat.dims[0]
    values = _checked_latitudes(np.asarray(lat.values, dtype=np.float64))
    if kind == "none":
        weights = np.ones_like(values)
    elif kind == "cos":
        weights = np.cos(np.deg2rad(values))
    else:
        bounds = _cf_bounds(data, dim, values.size)
        if bounds is None:
            bounds = _bounds_from_spacing(values, need=not normalize)
        weights = np.abs(np.diff(np.sin(np.deg2rad(bounds)), axis=-1))[..., 0] / 2
    if normalize:
        weights = weights / weights.mean()
    return xr.DataArray(weights, dims=(dim,), coords={dim: lat.values}, name="latitude_weights")


def _checked_latitudes(lat: np.ndarray) -> np.ndarray:
    if lat.ndim != 1 or lat.size == 0:
        raise DataError(expected("latitude", "a non-empty 1-D coordinate", f"shape {lat.shape}"))
    if np.any(~np.isfinite(lat)) or np.any(np.abs(lat) > 90):
        raise DataError(expected("latitude", "degrees in [-90, 90]", f"{lat.min()}..{lat.max()}"))
    steps = np.diff(lat)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError(expected("latitude", "strictly monotonic values", "repeated or unsorted"))
    return lat


def _cf_bounds(data: DataLike, dim: Hashable, n: int) -> np.ndarray | None:
    """``(n, 2)`` latitude bounds named by the coordinate's CF ``bounds`` attribute, if any."""
    if not isinstance(data, xr.Dataset) or dim not in data.coords:
        return None
    name = data[dim].attrs.get("bounds")
    if name is None or name not in data.variables:
        return None
    bounds = np.asarray(data[name].values, dtype=np.float64)
    if bounds.shape != (n, 2) or np.any(np.abs(bounds) > 90):
        raise DataError(expected(str(name), f"({n}, 2) latitude bounds in degrees", bounds.shape))
    return bounds


def _bounds_from_spacing(lat: np.ndarray, need: bool) -> np.ndarray:
    """``(n, 2)`` band bounds: midpoints between neighbours, half a step beyond the ends."""
    if lat.size == 1:
        if need:
            raise DataError(expected("latitude", "2+ points or CF bounds for cell areas", 1))
        return np.array([[lat[0] - 0.5, lat[0] + 0.5]]).clip(-90, 90)
    steps = np.diff(lat)
    mid = (lat[1:] + lat[:-1]) / 2
    edges = np.concatenate([[lat[0] - steps[0] / 2], mid, [lat[-1] + steps[-1] / 2]])
    edges = np.clip(edges, -90, 90)
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def _resolve_weights(weights: Weights, reference: DataLike) -> xr.DataArray | None:
    """A weights DataArray (or None) from a DataArray, a weighting name or None."""
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in WEIGHTINGS:
            want = f"a DataArray or one of {list(WEIGHTINGS)}"
            raise ConfigError(expected("weights", want, repr(weights)))
        if weights == "none" or latitude_dim(reference) is None:
            return None
        return latitude_weights(reference, kind=weights)
    if not isinstance(weights, xr.DataArray):
        want = f"an xarray.DataArray or one of {list(WEIGHTINGS)}"
        raise DataError(expected("weights", want, type(weights).__name__))
    return weights


# --------------------------------------------------------------------------- alignment


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    if isinstance(value, np.datetime64):
        return np.datetime_as_string(value, unit="auto")
    return str(value)


def _span(index) -> str:
    values = np.asarray(index)
    if values.size == 0:
        return "(empty)"
    return f"{_fmt(values[0])}..{_fmt(values[-1])} ({values.size} values)"


def _check_exact(named: Mapping[str, DataLike]) -> None:
    """DataError naming the first dimension whose sizes or coordinate values differ."""
    first: dict[Hashable, tuple[str, DataLike]] = {}
    hint = "pass align='inner' or align='override', or fix the coordinates"
    for name, data in named.items():
        for d in data.dims:
            if d not in first:
                first[d] = (name, data)
                continue
            ref_name, ref = first[d]
            if ref.sizes[d] != data.sizes[d] and (d not in ref.indexes or d not in data.indexes):
                raise DataError(
                    f"{d}: {ref_name} has {ref.sizes[d]} points, {name} has {data.sizes[d]}"
                )
            if (
                d in ref.indexes
                and d in data.indexes
                and not ref.indexes[d].equals(data.indexes[d])
            ):
                a, b = np.asarray(ref.indexes[d]), np.asarray(data.indexes[d])
                detail = ""
                if a.size == b.size:
                    i = int(np.argmax(a != b))
                    detail = f", first difference at position {i}: {_fmt(a[i])} vs {_fmt(b[i])}"
                raise DataError(f"{d}: {ref_name} {_span(a)} vs {name} {_span(b)}{detail}; {hint}")


def _align(named: Mapping[str, DataLike | None], align: str) -> list[DataLike]:
    """The non-None inputs aligned under ``align`` (see the module docstring)."""
    if align not in ALIGNS:
        raise ConfigError(expected("align", f"one of {list(ALIGNS)}", repr(align)))
    named = {k: v for k, v in named.items() if v is not None}
    if align == "exact":
        _check_exact(named)
    try:
        aligned = xr.align(*named.values(), join=align)
    except ValueError as err:
        raise DataError(f"{', '.join(named)}: cannot align ({str(err).splitlines()[0]})") from None
    if align == "inner":
        sizes = {d: size for data in aligned for d, size in data.sizes.items()}
        for d, size in sizes.items():
            if size == 0 and any(data.sizes.get(d, 0) for data in named.values()):
                spans = " vs ".join(
                    f"{k} {_span(v.indexes[d])}" for k, v in named.items() if d in v.indexes
                )
                raise DataError(f"{d}: no shared coordinate values ({spans})")
    return list(aligned)


# --------------------------------------------------------------------------- applying kernels


def _default_float() -> np.dtype:
    return np.dtype(jnp.asarray(0.0).dtype)


def _reduced_dims(array: xr.DataArray, dim: Dims) -> list[Hashable]:
    """The dims to reduce, checked against the array's dims."""
    if dim is None:
        return list(array.dims)
    dims = [dim] if isinstance(dim, str) or not isinstance(dim, Sequence) else list(dim)
    missing = [d for d in dims if d not in array.dims]
    if missing:
        raise DataError(expected("dim", f"dimensions among {list(array.dims)}", missing))
    return dims


def _variable(data: DataLike, name: Hashable, field: str) -> xr.DataArray:
    """``data[name]`` for a Dataset (with a clear error), the array itself otherwise."""
    if isinstance(data, xr.DataArray):
        return data
    if name not in data.data_vars:
        raise DataError(expected(field, f"a variable named {name!r}", list(data.data_vars)))
    return data[name]


def _apply(
    kernel: Callable,
    named: Mapping[str, DataLike],
    *,
    dim: Dims,
    weights: Weights,
    skipna: bool,
    align: str,
    new_dims: Mapping[str, int] | None = None,
    dtype: np.dtype | None = None,
) -> DataLike:
    """Run ``kernel(*values, axis=..., weights=...)`` over ``dim`` of the aligned inputs.

    ``named`` maps argument names (used in error messages) to the data, in kernel order. The
    kernel returns the kept dimensions followed by ``new_dims`` (name: size), if any.
    Datasets are handled variable by variable; weights are shared.
    """
    names = list(named)
    weights = _resolve_weights(weights, named[names[-1]])
    first = named[names[0]]
    if isinstance(first, xr.Dataset):
        return xr.Dataset(
            {
                var: _apply(
                    kernel,
                    {k: _variable(v, var, k) for k, v in named.items()},
                    dim=dim,
                    weights=weights,
                    skipna=skipna,
                    align=align,
                    new_dims=new_dims,
                    dtype=dtype,
                )
                for var in first.data_vars
            }
        )
    aligned = xr.broadcast(*_align({**named, "weights": weights}, align))
    dims = _reduced_dims(aligned[0], dim)
    out_dtype = dtype or _default_float()
    new_dims = dict(new_dims or {})

    def run(*data: np.ndarray) -> np.ndarray:
        values, w = (data[:-1], data[-1]) if weights is not None else (data, None)
        axis = tuple(range(-len(dims), 0))
        out = kernel(*values, axis=axis, weights=w)
        if not skipna:
            any_nan = np.any([np.isnan(np.asarray(v, dtype=float)) for v in values], axis=0)
            nan_here = np.any(any_nan, axis=axis)
            nan_here = np.expand_dims(nan_here, tuple(range(-len(new_dims), 0)))
            out = jnp.where(nan_here, jnp.nan, out)
        return np.asarray(out).astype(out_dtype)

    return xr.apply_ufunc(
        run,
        *aligned,
        input_core_dims=[dims] * len(aligned),
        output_core_dims=[list(new_dims)],
        dask="parallelized",
        output_dtypes=[out_dtype],
        dask_gufunc_kwargs={"allow_rechunk": True, "output_sizes": new_dims},
    )


# --------------------------------------------------------------------------- continuous scores


def _continuous(kernel: Callable, doc: str) -> Callable:
    """The xarray form of ``kernel(forecast, observed, axis=, weights=)``, reducing ``dim``."""

    def wrapper(
        forecast: DataLike,
        observed: DataLike,
        /,
        *,
        dim: Dims = None,
        weights: Weights = "cell_area",
        skipna: bool = True,
        align: str = "exact",
    ) -> DataLike:
        named = {"forecast": forecast, "observed": observed}
        return _apply(kernel, named, dim=dim, weights=weights, skipna=skipna, align=align)

    wrapper.__name__ = wrapper.__qualname__ = kernel.__name__
    wrapper.__doc__ = doc
    return wrapper


rmse = _continuous(
    continuous.rmse,
    "Root mean squared error over ``dim`` (area-weighted by default; see module docstring).",
)
mae = _continuous(continuous.mae, "Mean absolute error over ``dim``.")
bias = _continuous(continuous.bias, "Mean error ``forecast - observed`` over ``dim``.")
correlation = _continuous(continuous.correlation, "Pearson correlation over ``dim``.")


def acc(
    forecast: DataLike,
    observed: DataLike,
    climatology: DataLike | None = None,
    /,
    *,
    dim: Dims = None,
    weights: Weights = "cell_area",
    skipna: bool = True,
    centered: bool = False,
    align: str = "exact",
):
    """Anomaly correlation over ``dim`` (see ``climml.metrics.acc``).

    WeatherBench 2's ACC is per time, then averaged: ``acc(f, o, c, dim=("lat", "lon"))``
    followed by ``.mean("time")``. ``climatology`` (None: inputs are anomalies already) must
    match the coordinates of the dimensions it shares with the data.
    """
    if climatology is not None:
        named = {"forecast": forecast, "observed": observed, "climatology": climatology}
        forecast, observed, climatology = _align(named, align)
        forecast, observed = forecast - climatology, observed - climatology

    def kernel(f, o, axis, weights):
        return continuous.acc(f, o, axis=axis, weights=weights, centered=centered)

    named = {"forecast": forecast, "observed": observed}
    return _apply(kernel, named, dim=dim, weights=weights, skipna=skipna, align=align)


# --------------------------------------------------------------------------- probabilistic scores


def brier_score(
    probability,
    observed,
    /,
    *,
    dim: Dims = None,
    weights: Weights = "cell_area",
    skipna: bool = True,
    align: str = "exact",
):
    """Brier score over ``dim``: ``probability`` in [0, 1], ``observed`` 0/1 (NaN masks)."""

    def kernel(p, o, axis, weights):  # the kernel checks the ranges, naming the argument
        return probabilistic.brier_score(p, o, axis=axis, weights=weights)

    named = {"probability": probability, "observed": observed}
    return _apply(kernel, named, dim=dim, weights=weights, skipna=skipna, align=align)


def crps_ensemble(
    forecast: DataLike,
    observed: DataLike,
    /,
    *,
    member_dim: Hashable = "member",
    dim: Dims = None,
    weights: Weights = "cell_area",
    member_weights: xr.DataArray | None = None,
    fair: bool = False,
    skipna: bool = True,
    align: str = "exact",
):
    """Mean ensemble CRPS over ``dim`` (per-point CRPS first, then the weighted mean).

    ``weights`` weight points in the mean (area weighting by default); ``member_weights``
    weight ensemble members (see ``climml.metrics.crps_ensemble``). ``dim=None`` reduces every
    dimension of the observations. A dask forecast may be chunked along ``member_dim``: the
    members are gathered into one chunk per point block.
    """
    if isinstance(forecast, xr.Dataset):
        return xr.Dataset(
            {
                name: crps_ensemble(
                    forecast[name],
                    _variable(observed, name, "observed"),
                    member_dim=member_dim,
                    dim=dim,
                    weights=weights,
                    member_weights=member_weights,
                    fair=fair,
                    skipna=skipna,
                    align=align,
                )
                for name in forecast.data_vars
            }
        )
    if member_dim not in forecast.dims:
        want = f"a dimension of forecast {list(forecast.dims)}"
        raise DataError(expected("member_dim", want, repr(member_dim)))
    named = {"forecast": forecast, "observed": observed, "member_weights": member_weights}
    forecast, observed, *member_w = _align(named, align)
    member_w = [w.broadcast_like(forecast) for w in member_w]
    if forecast.chunks is not None:  # the kernel needs every member of a point in one block
        forecast = forecast.chunk({member_dim: -1})
        member_w = [w.chunk({member_dim: -1}) for w in member_w]

    def per_point(f, o, w=None):
        score = probabilistic.crps_ensemble(f, o, ensemble_axis=-1, fair=fair, weights=w)
        return np.asarray(score).astype(_default_float())

    score = xr.apply_ufunc(
        per_point,
        forecast,
        observed,
        *member_w,
        input_core_dims=[[member_dim], [], [member_dim]][: 2 + len(member_w)],
        dask="parallelized",
        output_dtypes=[_default_float()],
    )

    def mean(values, axis, weights):
        return weighted_mean(values, axis=axis, weights=weights)

    w = _resolve_weights(weights, observed)
    return _apply(mean, {"crps": score}, dim=dim, weights=w, skipna=skipna, align=align)


def roc_auc(
    scores,
    labels,
    /,
    *,
    dim: Dims = None,
    weights: Weights = "cell_area",
    bins: int | Sequence[float] | None = None,
    align: str = "exact",
):
    """AUC over the sample dimensions ``dim``, one value per remaining index.

    ``labels`` are 0/1 or boolean; NaN scores or labels always mask their sample (there is no
    ``skipna`` for ranks).
    """

    def kernel(s, y, axis, weights):  # the kernel checks that labels are 0/1
        return roc.roc_auc(s, y, axis=axis, weights=weights, bins=bins)

    named = {"scores": scores, "labels": labels}
    return _apply(kernel, named, dim=dim, weights=weights, skipna=True, align=align)


# --------------------------------------------------------------------------- categorical scores


def contingency(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    /,
    *,
    threshold: float | Sequence[float],
    dim: Dims = None,
    op: str = ">=",
    weights: Weights = None,
    align: str = "exact",
) -> xr.Dataset:
    """Contingency table over ``dim`` as a Dataset of hits, misses, false_alarms and
    correct_negatives; a sequence of thresholds adds a ``threshold`` dimension.

    Counts (int32) by default; ``weights="cell_area"`` (or a DataArray) gives area-weighted
    tables, whose scores equal the one-call wrappers (``csi`` ...).
    """
    thresholds = np.atleast_1d(np.asarray(threshold, dtype=float))
    fields = categorical.Contingency._fields

    def kernel(f, o, axis, weights):
        table = categorical.contingency(
            f, o, threshold=thresholds, op=op, axis=axis, weights=weights
        )
        return jnp.moveaxis(jnp.stack(table, axis=-1), 0, -2)  # (..., K, 4)

    resolved = _resolve_weights(weights, observed)
    dtype = np.dtype(np.int32) if resolved is None else _default_float()
    counts = _apply(
        kernel,
        {"forecast": forecast, "observed": observed},
        dim=dim,
        weights=resolved,
        skipna=True,
        align=align,
        new_dims={"threshold": len(thresholds), "field": 4},
        dtype=dtype,
    )
    counts = counts.assign_coords(threshold=thresholds)
    table = xr.Dataset({name: counts.isel(field=i, drop=True) for i, name in enumerate(fields)})
    return table.isel(threshold=0) if np.ndim(threshold) == 0 else table


def _categorical(score: str) -> Callable:
    def wrapper(
        forecast: DataLike,
        observed: DataLike,
        /,
        *,
        threshold: float | Sequence[float],
        dim: Dims = None,
        op: str = ">=",
        weights: Weights = "cell_area",
        skipna: bool = True,
        align: str = "exact",
    ) -> DataLike:
        thresholds = np.atleast_1d(np.asarray(threshold, dtype=float))

        def kernel(f, o, axis, weights):
            table = categorical.contingency(
                f, o, threshold=thresholds, op=op, axis=axis, weights=weights
            )
            return jnp.moveaxis(getattr(table, score)(), 0, -1)  # (..., K)

        out = _apply(
            kernel,
            {"forecast": forecast, "observed": observed},
            dim=dim,
            weights=weights,
            skipna=skipna,
            align=align,
            new_dims={"threshold": len(thresholds)},
        )
        out = out.assign_coords(threshold=thresholds)
        return out.isel(threshold=0) if np.ndim(threshold) == 0 else out

    wrapper.__name__ = wrapper.__qualname__ = score
    wrapper.__doc__ = (
        f"``Contingency.{score}`` of the event ``x op threshold`` over ``dim`` (area-weighted "
        "by default); a sequence of thresholds adds a ``threshold`` dimension."
    )
    return wrapper


csi = _categorical("csi")
pod = _categorical("pod")
far = _categorical("far")
pofd = _categorical("pofd")
frequency_bias = _categorical("frequency_bias")
ets = _categorical("ets")
hss = _categorical("hss")


def categorical_scores(
    table: xr.Dataset,
    /,
    *,
    scores: Sequence[str] = ("csi", "pod", "far", "frequency_bias", "ets", "hss"),
) -> xr.Dataset:
    """Scores of a ``contingency`` table Dataset (after any summing), one variable each.

    ``scores`` are names of ``climml.metrics.Contingency`` methods.
    """
    fields = categorical.Contingency._fields
    missing = [f for f in fields if f not in table.data_vars]
    if missing:
        raise DataError(expected("table", f"variables {list(fields)}", list(table.data_vars)))
    unknown = [s for s in scores if s.startswith("_") or not hasattr(categorical.Contingency, s)]
    if unknown:
        raise DataError(expected("scores", "names of Contingency methods", unknown))
    counts = categorical.Contingency(*(jnp.asarray(table[f].values) for f in fields))
    template = table[fields[0]]
    return xr.Dataset({s: template.copy(data=np.asarray(getattr(counts, s)())) for s in scores})


# --------------------------------------------------------------------------- spatial scores


def fss(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    /,
    *,
    threshold: float,
    window: int,
    spatial_dims: tuple[Hashable, Hashable] = ("lat", "lon"),
    dim: Dims = None,
    op: str = ">=",
    align: str = "exact",
) -> xr.DataArray:
    """Fractions skill score with neighbourhood ``window`` (cells) over ``spatial_dims``,
    pooling the fields along ``dim`` (None: all other dimensions) into one score.

    Not area-weighted: neighbourhoods are counted in grid cells, as the FSS is defined.
    """
    forecast, observed = xr.broadcast(*_align({"forecast": forecast, "observed": observed}, align))
    for d in spatial_dims:
        if d not in forecast.dims:
            raise DataError(expected("spatial_dims", f"dimensions among {list(forecast.dims)}", d))
    pooled = forecast.dims if dim is None else _reduced_dims(forecast, dim)
    core = [*(d for d in pooled if d not in spatial_dims), *spatial_dims]

    def run(f, o):
        axis = tuple(range(f.ndim - len(core), f.ndim - 2))
        score = spatial.fss(f, o, threshold=threshold, window=window, op=op, axis=axis)
        return np.asarray(score).astype(_default_float())

    return xr.apply_ufunc(
        run,
        forecast,
        observed,
        input_core_dims=[core, core],
        dask="parallelized",
        output_dtypes=[_default_float()],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def radial_psd(
    field: xr.DataArray,
    /,
    *,
    spatial_dims: tuple[Hashable, Hashable] = ("lat", "lon"),
    spacing: float = 1.0,
) -> xr.DataArray:
    """Radially averaged power spectrum over ``spatial_dims``, with a ``wavenumber`` dimension
    (cycles per ``spacing`` unit)."""
    for d in spatial_dims:
        if d not in field.dims:
            raise DataError(expected("spatial_dims", f"dimensions among {list(field.dims)}", d))
    sizes = [field.sizes[d] for d in spatial_dims]
    wavenumber = spectral.radial_wavenumbers(*sizes, spacing=spacing)

    def run(x):
        return np.asarray(spectral.radial_psd(x, spacing=spacing)[1]).astype(_default_float())

    out = xr.apply_ufunc(
        run,
        field,
        input_core_dims=[list(spatial_dims)],
        output_core_dims=[["wavenumber"]],
        dask="parallelized",
        output_dtypes=[_default_float()],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": wavenumber.shape[0]}},
    )
    return out.assign_coords(wavenumber=np.asarray(wavenumber))


# --------------------------------------------------------------------------- ensembles, nowcasts


def _check_dims(data: xr.DataArray, name: str, dims: Sequence[Hashable]) -> None:
    missing = [d for d in dims if d not in data.dims]
    if missing:
        raise DataError(expected(name, f"dimensions among {list(data.dims)}", missing))


def pool(
    field: xr.DataArray,
    /,
    *,
    size: int,
    kind: str = "avg",
    stride: int | None = None,
    spatial_dims: tuple[Hashable, Hashable] = ("y", "x"),
) -> xr.DataArray:
    """Average- or max-pool ``spatial_dims`` over ``size x size`` windows
    (``climml.metrics.pool``); pooled coordinates are the mean coordinate of each window."""
    _check_dims(field, "spatial_dims", spatial_dims)
    size, step = pooling.check_pooling(size=size, kind=kind, stride=stride)
    moved = field.transpose(..., *spatial_dims)
    values = np.asarray(pooling.pool(moved.values, size=size, kind=kind, stride=step))
    coords = {}
    for d in moved.dims:
        if d not in field.coords or field[d].dims != (d,):
            continue
        if d in spatial_dims:
            coord = np.asarray(field[d].values, dtype=np.float64)
            windows = np.lib.stride_tricks.sliding_window_view(coord, size)[::step]
            coords[d] = windows.mean(axis=-1)
        else:
            coords[d] = field[d].values
    out = xr.DataArray(values, dims=moved.dims, coords=coords, attrs=field.attrs, name=field.name)
    return out.transpose(*field.dims)


def _ensemble(
    kernel: Callable,
    forecast: xr.DataArray,
    observed: xr.DataArray,
    member_dim: Hashable,
    dim: Dims,
    align: str,
    new_dims: Mapping[str, int],
) -> xr.DataArray:
    """``kernel(members_last, observed, axis) -> (*kept, *new_dims)`` reducing ``dim`` (None:
    every dimension of ``observed``); members are gathered into one chunk."""
    _check_dims(forecast, "member_dim", [member_dim])
    forecast, observed = _align({"forecast": forecast, "observed": observed}, align)
    dims = list(observed.dims) if dim is None else _reduced_dims(observed, dim)
    if forecast.chunks is not None:
        forecast = forecast.chunk({member_dim: -1})

    def run(f, o):
        axis = tuple(range(o.ndim - len(dims), o.ndim))
        return np.asarray(kernel(f, o, axis)).astype(_default_float())

    return xr.apply_ufunc(
        run,
        forecast,
        observed,
        input_core_dims=[[*dims, member_dim], dims],
        output_core_dims=[list(new_dims)],
        dask="parallelized",
        output_dtypes=[_default_float()],
        dask_gufunc_kwargs={"allow_rechunk": True, "output_sizes": dict(new_dims)},
    )


def rank_histogram(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    /,
    *,
    member_dim: Hashable = "member",
    dim: Dims = None,
    min_value: float | None = None,
    align: str = "exact",
) -> xr.DataArray:
    """Rank histogram counts over ``dim`` with a ``rank`` dimension of size M + 1
    (``climml.metrics.rank_histogram``). Counts add across calls; divide by their sum over
    ``rank`` for frequencies."""
    _check_dims(forecast, "member_dim", [member_dim])
    ranks = forecast.sizes[member_dim] + 1

    def kernel(f, o, axis):
        return ensemble.rank_histogram(f, o, axis=axis, min_value=min_value).counts

    out = _ensemble(kernel, forecast, observed, member_dim, dim, align, {"rank": ranks})
    return out.assign_coords(rank=np.arange(ranks))


def spread_skill(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    /,
    *,
    member_dim: Hashable = "member",
    dim: Dims = None,
    align: str = "exact",
) -> xr.Dataset:
    """``spread``, ``skill`` (RMSE of the ensemble mean) and their ``ratio`` over ``dim``
    (``climml.metrics.spread_skill``; points weigh alike)."""

    def kernel(f, o, axis):
        stats = ensemble.spread_skill(f, o, axis=axis)
        return jnp.stack([stats.spread(), stats.skill(), stats.ratio()], axis=-1)

    out = _ensemble(kernel, forecast, observed, member_dim, dim, align, {"score": 3})
    return xr.Dataset({k: out.isel(score=i) for i, k in enumerate(("spread", "skill", "ratio"))})


def nowcast_scores(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    /,
    *,
    spatial_dims: tuple[Hashable, Hashable] = ("y", "x"),
    lead_dim: Hashable | None = "lead",
    member_dim: Hashable | None = None,
    thresholds: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
    pools: Sequence[int] = (1, 4, 16),
    fss_scales: Sequence[int] = (1, 4, 16),
    op: str = ">=",
    stride: int | None = None,
    fair: bool = False,
    spacing: float = 1.0,
    align: str = "exact",
) -> xr.Dataset:
    """Every nowcast score of ``climml.metrics.nowcast_scores`` as a Dataset, per ``lead_dim``
    (None: everything pooled), every other dimension pooled.

    Variables: ``csi``, ``pod``, ``far`` (``lead, pool, threshold``), ``fss`` (``lead, scale,
    threshold``), ``crps_avg``, ``crps_max`` (``lead, pool``), ``psd_forecast``,
    ``psd_observed`` (``lead, wavenumber``), and with ``member_dim`` ``rank_histogram``
    (``lead, rank``), ``spread``, ``skill``, ``spread_skill``. The data are scored in one
    call (dask inputs are computed); to stream over many events accumulate
    ``climml.metrics.nowcast_statistics`` instead.
    """
    _check_dims(observed, "spatial_dims", spatial_dims)
    if lead_dim is not None:
        _check_dims(observed, "lead_dim", [lead_dim])
    if member_dim is not None:
        _check_dims(forecast, "member_dim", [member_dim])
    forecast, observed = _align({"forecast": forecast, "observed": observed}, align)
    lead = [] if lead_dim is None else [lead_dim]
    rest = [d for d in observed.dims if d not in (*lead, *spatial_dims)]
    order = [*lead, *rest, *spatial_dims]
    observed = observed.transpose(*order)
    members = [] if member_dim is None else [member_dim]
    forecast = forecast.transpose(*members, *order)
    stats = nowcast.nowcast_statistics(
        forecast.values,
        observed.values,
        thresholds=tuple(float(t) for t in thresholds),
        pools=tuple(pools),
        fss_scales=tuple(fss_scales),
        member_axis=0 if member_dim is not None else None,
        lead_axis=0 if lead_dim is not None else None,
        op=op,
        stride=stride,
        fair=fair,
        spacing=spacing,
    )
    scores = {k: np.asarray(v) for k, v in nowcast.nowcast_scores(stats).items()}
    axes = {
        "csi": ("pool", "threshold"),
        "pod": ("pool", "threshold"),
        "far": ("pool", "threshold"),
        "fss": ("scale", "threshold"),
        "crps_avg": ("pool",),
        "crps_max": ("pool",),
        "psd_forecast": ("wavenumber",),
        "psd_observed": ("wavenumber",),
        "rank_histogram": ("rank",),
        "spread": (),
        "skill": (),
        "spread_skill": (),
    }
    coords: dict[Hashable, Any] = {
        "threshold": list(stats.thresholds),
        "pool": list(stats.pools),
        "scale": list(stats.scales),
        "wavenumber": scores.pop("wavenumber"),
    }
    if lead_dim is not None and lead_dim in observed.coords:
        coords[lead_dim] = observed[lead_dim].values
    if "rank_histogram" in scores:
        coords["rank"] = np.arange(scores["rank_histogram"].shape[-1])
    data = {k: ((*lead, *axes[k]), v) for k, v in scores.items()}
    return xr.Dataset(data, coords=coords, attrs={"op": op, "pool_stride": str(stride)})
