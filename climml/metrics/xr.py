"""xarray wrappers of the metric kernels: ``dim=``, ``weights=``, ``skipna=``, coords kept.

Inputs are aligned on their shared coordinates (inner join, as ``xr.apply_ufunc`` and
xskillscore do) and broadcast by dimension name, so latitude weights can simply be a
``DataArray`` over ``lat``. ``dim`` names the dimensions reduced (None: all); the result keeps
the other dimensions and the coordinates that live on them. Datasets are scored variable by
variable (the observation Dataset must hold the same names). dask-backed inputs stay lazy:
chunks along kept dimensions are scored in parallel, reduced dimensions are gathered into one
chunk (accumulate the kernels' statistics yourself to stream over them).

``skipna=True`` applies the NaN policy of ``climml.metrics`` (NaN points are masked);
``skipna=False`` makes a score NaN as soon as any of its points is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml.errors import DataError, expected
from climml.metrics import categorical, continuous, probabilistic, roc, spatial, spectral
from climml.metrics._masking import weighted_mean

Dims = Hashable | Sequence[Hashable] | None
DataLike = xr.DataArray | xr.Dataset


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


def _apply(
    kernel: Callable,
    arrays: Sequence[DataLike],
    dim: Dims,
    weights: xr.DataArray | None,
    skipna: bool,
) -> DataLike:
    """Run ``kernel(*values, axis=..., weights=...)`` over ``dim`` of aligned arrays.

    Datasets are handled variable by variable; other arguments are shared.
    """
    if isinstance(arrays[0], xr.Dataset):
        return xr.Dataset(
            {
                name: _apply(kernel, [_variable(a, name) for a in arrays], dim, weights, skipna)
                for name in arrays[0].data_vars
            }
        )
    with_weights = list(arrays) + ([] if weights is None else [weights])
    aligned = xr.broadcast(*xr.align(*with_weights, join="inner"))
    dims = _reduced_dims(aligned[0], dim)
    out_dtype = _default_float()

    def run(*data: np.ndarray) -> np.ndarray:
        values, w = (data[:-1], data[-1]) if weights is not None else (data, None)
        axis = tuple(range(-len(dims), 0))
        out = kernel(*values, axis=axis, weights=w)
        if not skipna:
            any_nan = np.any([np.isnan(np.asarray(v, dtype=float)) for v in values], axis=0)
            out = jnp.where(np.any(any_nan, axis=axis), jnp.nan, out)
        return np.asarray(out).astype(out_dtype)

    return xr.apply_ufunc(
        run,
        *aligned,
        input_core_dims=[dims] * len(aligned),
        dask="parallelized",
        output_dtypes=[out_dtype],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def _variable(data: DataLike, name: Hashable) -> xr.DataArray:
    """``data[name]`` for a Dataset (with a clear error), the array itself otherwise."""
    if isinstance(data, xr.DataArray):
        return data
    if name not in data.data_vars:
        raise DataError(expected("observed", f"a variable named {name!r}", list(data.data_vars)))
    return data[name]


def rmse(forecast: DataLike, observed: DataLike, dim: Dims = None, weights=None, skipna=True):
    """Root mean squared error over ``dim``."""
    return _apply(continuous.rmse, [forecast, observed], dim, weights, skipna)


def mae(forecast: DataLike, observed: DataLike, dim: Dims = None, weights=None, skipna=True):
    """Mean absolute error over ``dim``."""
    return _apply(continuous.mae, [forecast, observed], dim, weights, skipna)


def bias(forecast: DataLike, observed: DataLike, dim: Dims = None, weights=None, skipna=True):
    """Mean error ``forecast - observed`` over ``dim``."""
    return _apply(continuous.bias, [forecast, observed], dim, weights, skipna)


def correlation(
    forecast: DataLike, observed: DataLike, dim: Dims = None, weights=None, skipna=True
):
    """Pearson correlation over ``dim``."""
    return _apply(continuous.correlation, [forecast, observed], dim, weights, skipna)


def acc(
    forecast: DataLike,
    observed: DataLike,
    climatology: DataLike | None = None,
    dim: Dims = None,
    weights=None,
    skipna: bool = True,
    centered: bool = False,
):
    """Anomaly correlation over ``dim`` (see ``climml.metrics.acc``)."""
    if climatology is not None:
        forecast, observed = forecast - climatology, observed - climatology

    def kernel(f, o, axis, weights):
        return continuous.acc(f, o, axis=axis, weights=weights, centered=centered)

    return _apply(kernel, [forecast, observed], dim, weights, skipna)


def brier_score(
    probability: DataLike, observed: DataLike, dim: Dims = None, weights=None, skipna=True
):
    """Brier score over ``dim``."""
    return _apply(probabilistic.brier_score, [probability, observed], dim, weights, skipna)


def crps_ensemble(
    forecast: DataLike,
    observed: DataLike,
    member_dim: Hashable = "member",
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    member_weights: xr.DataArray | None = None,
    fair: bool = False,
    skipna: bool = True,
):
    """Mean ensemble CRPS over ``dim`` (per-point CRPS first, then the weighted mean).

    ``weights`` weight points in the mean (e.g. latitude weights); ``member_weights`` weight
    ensemble members (see ``climml.metrics.crps_ensemble``). ``dim=None`` reduces every
    dimension of the observations.
    """
    if isinstance(forecast, xr.Dataset):
        return xr.Dataset(
            {
                name: crps_ensemble(
                    forecast[name],
                    _variable(observed, name),
                    member_dim,
                    dim,
                    weights,
                    member_weights,
                    fair,
                    skipna,
                )
                for name in forecast.data_vars
            }
        )
    if member_dim not in forecast.dims:
        raise DataError(
            expected("member_dim", f"a dimension of forecast {list(forecast.dims)}", member_dim)
        )
    inputs = [forecast, observed] + ([] if member_weights is None else [member_weights])
    forecast, observed, *member_weights = xr.align(*inputs, join="inner")
    member_weights = [w.broadcast_like(forecast) for w in member_weights]

    def per_point(f, o, w=None):
        return np.asarray(probabilistic.crps_ensemble(f, o, ensemble_axis=-1, fair=fair, weights=w))

    score = xr.apply_ufunc(
        per_point,
        forecast,
        observed,
        *member_weights,
        input_core_dims=[[member_dim], [], [member_dim]][: 2 + len(member_weights)],
        dask="parallelized",
        output_dtypes=[_default_float()],
    )
    return _apply(weighted_mean, [score], dim, weights, skipna)


def roc_auc(
    scores: DataLike,
    labels: DataLike,
    dim: Dims = None,
    weights=None,
    bins: int | Sequence[float] | None = None,
):
    """AUC over the sample dimensions ``dim``, one value per remaining index.

    NaN scores or labels always mask their sample (there is no ``skipna`` for ranks).
    """

    def kernel(s, y, axis, weights):
        return roc.roc_auc(s, y, axis=axis, weights=weights, bins=bins)

    return _apply(kernel, [scores, labels], dim, weights, skipna=True)


def contingency(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    threshold: float | Sequence[float],
    dim: Dims = None,
    op: str = ">=",
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Contingency table over ``dim`` as a Dataset of hits, misses, false_alarms and
    correct_negatives; a sequence of thresholds adds a ``threshold`` dimension.
    """
    thresholds = np.atleast_1d(np.asarray(threshold, dtype=float))
    fields = categorical.Contingency._fields

    def kernel(f, o, axis, weights):
        table = categorical.contingency(f, o, thresholds, op, axis, weights)  # fields of (K, ...)
        return jnp.moveaxis(jnp.stack(table, axis=-1), 0, -2)  # (..., K, 4)

    counts = _table_apply(kernel, forecast, observed, dim, weights, len(thresholds))
    counts = counts.assign_coords(threshold=thresholds)
    table = xr.Dataset({name: counts.isel(field=i, drop=True) for i, name in enumerate(fields)})
    return table.isel(threshold=0) if np.ndim(threshold) == 0 else table


def _table_apply(kernel, forecast, observed, dim, weights, n_thresholds: int) -> xr.DataArray:
    """Like ``_apply`` for a kernel returning ``(..., K, 4)`` tables (new dims last)."""
    with_weights = [forecast, observed] + ([] if weights is None else [weights])
    aligned = xr.broadcast(*xr.align(*with_weights, join="inner"))
    dims = _reduced_dims(aligned[0], dim)
    dtype = np.dtype(np.int32) if weights is None else _default_float()

    def run(*data):
        w = data[2] if weights is not None else None
        return np.asarray(kernel(data[0], data[1], tuple(range(-len(dims), 0)), w)).astype(dtype)

    return xr.apply_ufunc(
        run,
        *aligned,
        input_core_dims=[dims] * len(aligned),
        output_core_dims=[["threshold", "field"]],
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={
            "allow_rechunk": True,
            "output_sizes": {"threshold": n_thresholds, "field": 4},
        },
    )


def categorical_scores(
    table: xr.Dataset, scores: Sequence[str] = ("csi", "pod", "far", "frequency_bias", "ets", "hss")
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


def fss(
    forecast: xr.DataArray,
    observed: xr.DataArray,
    threshold: float,
    window: int,
    spatial_dims: tuple[Hashable, Hashable] = ("lat", "lon"),
    dim: Dims = None,
    op: str = ">=",
) -> xr.DataArray:
    """Fractions skill score with neighbourhood ``window`` (cells) over ``spatial_dims``,
    pooling the fields along ``dim`` (None: all other dimensions) into one score.
    """
    forecast, observed = xr.broadcast(*xr.align(forecast, observed, join="inner"))
    for d in spatial_dims:
        if d not in forecast.dims:
            raise DataError(expected("spatial_dims", f"dimensions among {list(forecast.dims)}", d))
    pooled = forecast.dims if dim is None else _reduced_dims(forecast, dim)
    core = [*(d for d in pooled if d not in spatial_dims), *spatial_dims]

    def run(f, o):
        axis = tuple(range(f.ndim - len(core), f.ndim - 2))
        return np.asarray(spatial.fss(f, o, threshold, window, op, axis=axis))

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
    spatial_dims: tuple[Hashable, Hashable] = ("lat", "lon"),
    spacing: float = 1.0,
) -> xr.DataArray:
    """Radially averaged power spectrum over ``spatial_dims``, with a ``wavenumber`` dimension
    (cycles per ``spacing`` unit)."""
    for d in spatial_dims:
        if d not in field.dims:
            raise DataError(expected("spatial_dims", f"dimensions among {list(field.dims)}", d))
    wavenumber = spectral.radial_wavenumbers(*(field.sizes[d] for d in spatial_dims), spacing)

    def run(x):
        return np.asarray(spectral.radial_psd(x, spacing)[1])

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
