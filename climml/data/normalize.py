"""Standardization statistics fitted on the training period only, applied lazily, invertible.

``Normalizer.fit`` reduces each variable over ``dims`` with dask (out of core, NaN-aware):
``dims=("time",)`` gives one mean/std per grid point, ``("time", "lat", "lon")`` one per
variable. With ``climatology=True`` the mean is a per-calendar-month climatology and the std is
that of the anomalies, so ``apply`` yields standardized anomalies, the usual ENSO input.
With a ``transform`` (``climml.data.rain.RainTransform``: log or dBR of a rain rate) the
statistics are those of the transformed values, ``apply`` transforms first and ``invert``
transforms back last, so physical values (mm/h) go in and come out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from climml.data.rain import RainTransform
from climml.data.validate import validate_dataset
from climml.errors import ConfigError, DataError, expected

_FORMAT = "climml.Normalizer"  # marks datasets written by ``to_dataset``


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-variable means and standard deviations.

    mean: one DataArray per variable over the dims not reduced, plus a leading ``month`` (1-12)
        dim when ``climatology``.
    std: one DataArray per variable over the dims not reduced; zero (or undefined) spreads are
        stored as 1 so constant fields map to 0 instead of dividing by zero.
    dims: dims reduced over when fitting.
    climatology: whether the mean depends on the calendar month.
    transform: applied to every variable before standardizing (None: none).
    """

    mean: xr.Dataset
    std: xr.Dataset
    dims: tuple[str, ...]
    climatology: bool
    transform: RainTransform | None = None

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the normalized variables."""
        return tuple(map(str, self.std.data_vars))

    @classmethod
    def fit(
        cls,
        ds: xr.Dataset,
        *,
        variables: Iterable[str] | None = None,
        dims: Iterable[str] = ("time",),
        climatology: bool = False,
        time_range: tuple[Any, Any] | None = None,
        transform: RainTransform | None = None,
    ) -> Normalizer:
        """Fit statistics of ``variables`` (all data variables if None) of ``ds``.

        dims: dims to reduce over; must include ``"time"``. A variable lacking some of them
            (e.g. a ``(time,)`` index with ``("time", "lat", "lon")``) is reduced over the rest.
        time_range: inclusive ``(start, end)`` time labels (e.g. the training split); only these
            steps are read, so nothing outside the range can leak into the statistics.
        transform: statistics of ``transform.forward`` of the values (see class doc).
        """
        names = list(ds.data_vars) if variables is None else list(variables)
        validate_dataset(ds, names, ("time",))
        dims = _check_dims(tuple(dims), ds)
        ds = _select_range(ds[names], time_range)
        means, stds = {}, {}
        for name in names:
            if transform is not None:
                transform.check_units(name, ds[name].attrs.get("units"))
            x = ds[name] if transform is None else transform.forward(ds[name])
            means[name], stds[name] = _moments(x, dims, climatology)
        with _quiet_all_nan():
            mean, std = dask.compute(xr.Dataset(means), xr.Dataset(stds))  # one pass
        if climatology:
            _check_all_months(mean)
        std = std.where(std > 0, 1.0)  # NaN (all-missing) and zero spreads
        return cls(mean, std, dims, bool(climatology), transform)

    def apply(self, ds: xr.Dataset) -> xr.Dataset:
        """``(T(x) - mean[month]) / std`` for each fitted variable in ``ds`` (others untouched),
        ``T`` the transform (identity if none).

        Lazy for dask-backed input. Float32 input stays float32."""
        out = ds.copy()
        for name in self.variables:
            if name not in ds.data_vars:
                continue
            x = ds[name]
            self._check_dims_of(x, name)
            tx = x if self.transform is None else self.transform.forward(x)
            with xr.set_options(arithmetic_join="exact"), _alignment_error(name):
                z = (tx - self._mean_at(name, x)) / self.std[name]
            out[name] = z.astype(_float_dtype(x.dtype)).transpose(*x.dims)
            out[name].attrs = {k: v for k, v in x.attrs.items() if k != "units"}
        return out

    def invert(
        self,
        data: xr.DataArray | np.ndarray,
        variable: str,
        *,
        time: Any = None,
        add_mean: bool = True,
    ) -> xr.DataArray | np.ndarray:
        """Back to physical units: ``T^-1(data * std + mean[month])``, ``T`` the transform
        (``add_mean=False``: anomalies ``data * std``, in transformed units if there is one).

        data: an ``xr.DataArray`` (aligned on dim names and coords) or an array whose trailing
            axes are the statistics' dims of ``variable`` (e.g. ``(lat, lon)``) and whose other
            axes broadcast, e.g. ``(batch, lead, lat, lon)``.
        time: with ``climatology``, the valid time of each value: an array of datetimes whose
            shape equals the leading axes of ``data`` (e.g. ``(batch,)`` or ``(batch, lead)``).
            A DataArray with a ``time`` coordinate needs none.
        """
        if variable not in self.variables:
            raise DataError(expected("variable", f"one of {list(self.variables)}", repr(variable)))
        if isinstance(data, xr.DataArray):
            out = self._invert_xarray(data, variable, time, add_mean)
        else:
            out = self._invert_numpy(np.asarray(data), variable, time, add_mean)
        if self.transform is None or not add_mean:
            return out
        return self.transform.inverse(out).astype(out.dtype)

    def to_dataset(self) -> xr.Dataset:
        """All statistics in one dataset, writable to netCDF or zarr (see ``from_dataset``)."""
        stats = {}
        for name in self.variables:
            for stat, source in (("mean", self.mean), ("std", self.std)):
                stats[f"{name}_{stat}"] = source[name].assign_attrs(
                    normalizer_variable=name, normalizer_stat=stat
                )
        attrs = {
            "format": _FORMAT,
            "dims": " ".join(self.dims),
            "climatology": int(self.climatology),
        }
        if self.transform is not None:
            attrs["transform"] = self.transform.name
            attrs["transform_threshold"] = self.transform.threshold
        return xr.Dataset(stats, attrs=attrs)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Normalizer:
        """Rebuild a normalizer from ``to_dataset`` output (possibly read back from disk)."""
        if ds.attrs.get("format") != _FORMAT:
            found = f"attrs {dict(ds.attrs)}"
            raise DataError(expected("normalizer", "a dataset from Normalizer.to_dataset", found))
        stats: dict[str, dict[str, xr.DataArray]] = {"mean": {}, "std": {}}
        for var in ds.data_vars.values():
            attrs = dict(var.attrs)
            name, stat = attrs.pop("normalizer_variable"), attrs.pop("normalizer_stat")
            stats[stat][name] = var.load().drop_attrs()
        return cls(
            mean=xr.Dataset(stats["mean"]),
            std=xr.Dataset(stats["std"]),
            dims=tuple(str(ds.attrs["dims"]).split()),
            climatology=bool(int(ds.attrs["climatology"])),
            transform=(
                RainTransform(str(ds.attrs["transform"]), float(ds.attrs["transform_threshold"]))
                if "transform" in ds.attrs
                else None
            ),
        )

    def _mean_at(self, name: str, x: xr.DataArray) -> xr.DataArray:
        """The mean to subtract from ``x``: the climatology of each step's month if needed."""
        mean = self.mean[name]
        if not self.climatology:
            return mean
        return mean.sel(month=x["time"].dt.month).drop_vars("month")

    def _check_dims_of(self, x: xr.DataArray, name: str) -> None:
        kept = [d for d in self.std[name].dims if d not in x.dims]
        if kept:
            raise DataError(expected(f"{name}.dims", f"to include {self.std[name].dims}", x.dims))

    def _invert_xarray(self, data, variable, time, add_mean) -> xr.DataArray:
        with xr.set_options(arithmetic_join="exact"), _alignment_error(variable):
            out = data * self.std[variable]
            if add_mean:
                mean = self.mean[variable]
                if self.climatology:
                    months = _months(_time_of(data, time), dims=data.dims)
                    mean = mean.sel(month=months).drop_vars("month", errors="ignore")
                out = out + mean
        return out.astype(_float_dtype(data.dtype)).transpose(*data.dims, ...)

    def _invert_numpy(self, data, variable, time, add_mean) -> np.ndarray:
        std = self.std[variable].values
        trailing = data.shape[data.ndim - std.ndim :] if std.ndim else ()
        if data.ndim < std.ndim or trailing != std.shape:
            want = f"trailing axes {std.shape} (dims {self.std[variable].dims})"
            raise DataError(expected(f"{variable} data shape", want, data.shape))
        out = data * std
        if add_mean:
            out = out + self._numpy_mean(data, variable, time)
        return out.astype(_float_dtype(data.dtype))

    def _numpy_mean(self, data: np.ndarray, variable: str, time: Any) -> np.ndarray:
        mean = self.mean[variable].values
        if not self.climatology:
            return mean
        if time is None:
            raise DataError(expected("time", "valid times of the values (climatology)", None))
        months = _months(np.asarray(time)).values
        lead = months.ndim
        spatial = mean.ndim - 1
        if data.shape[:lead] != months.shape or lead + spatial > data.ndim:
            want = f"leading axes of the data {data.shape[:lead]}"
            raise DataError(expected("time shape", want, months.shape))
        middle = (1,) * (data.ndim - lead - spatial)  # axes between time and space, e.g. lead
        by_value = mean[months - 1]  # (*time.shape, *spatial)
        return by_value.reshape(months.shape + middle + mean.shape[1:])


def _check_dims(dims: tuple[str, ...], ds: xr.Dataset) -> tuple[str, ...]:
    if "time" not in dims:
        raise ConfigError(expected("data.normalize.dims", "dims that include 'time'", dims))
    unknown = [d for d in dims if d not in ds.dims]
    if unknown:
        want = f"dims of the dataset {tuple(map(str, ds.dims))}"
        raise ConfigError(expected("data.normalize.dims", want, dims))
    return dims


def _select_range(ds: xr.Dataset, time_range: tuple[Any, Any] | None) -> xr.Dataset:
    if time_range is None:
        return ds
    start, end = time_range
    selected = ds.sel(time=slice(start, end))
    if selected.sizes["time"] == 0:
        found = f"({start}, {end}) with data from {ds.time.values[0]} to {ds.time.values[-1]}"
        raise ConfigError(expected("time_range", "a range containing time steps", found))
    return selected


def _moments(x: xr.DataArray, dims: tuple[str, ...], climatology: bool):
    """Lazy (mean, std) of ``x`` over those of ``dims`` it has, in float64, skipping NaN."""
    x = x.astype(np.float64)
    reduce = [d for d in dims if d in x.dims]
    if not climatology:
        return x.mean(reduce), x.std(reduce)
    by_month = x.groupby(x["time"].dt.month.rename("month"))
    mean = by_month.mean(reduce)
    anomalies = by_month - mean
    return mean, anomalies.drop_vars("month").std(reduce)


def _check_all_months(mean: xr.Dataset) -> None:
    missing = sorted(set(range(1, 13)) - set(mean["month"].values.tolist()))
    if missing:
        raise ConfigError(
            expected(
                "time_range", "all 12 calendar months (climatology)", f"months {missing} absent"
            )
        )


def _months(time: Any, dims: tuple = ()) -> xr.DataArray:
    """Calendar month (1-12) of datetimes (numpy datetime64, pandas, datetime or cftime)."""
    if isinstance(time, xr.DataArray):
        return time.dt.month
    values = np.asarray(time)
    if values.dtype.kind == "M":
        months = values.astype("datetime64[M]").astype(np.int64) % 12 + 1
    else:
        try:
            months = np.vectorize(lambda t: t.month, otypes=[np.int64])(values)
        except AttributeError:
            raise DataError(expected("time", "datetimes", f"dtype {values.dtype}")) from None
    return xr.DataArray(months, dims=dims[: months.ndim] or None)


def _time_of(data: xr.DataArray, time: Any) -> Any:
    if time is not None:
        return time
    if "time" in data.coords:
        return data["time"]
    raise DataError(expected("time", "valid times of the values (climatology)", None))


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return np.result_type(dtype, np.float32)


@contextmanager
def _quiet_all_nan() -> Iterator[None]:
    """Silence NumPy's 0/0 warnings for all-NaN cells (land): NaN is the intended result
    there. A warnings filter, unlike ``np.errstate``, also covers dask's worker threads."""
    with warnings.catch_warnings():
        for message in ("invalid value encountered", "Mean of empty slice", "Degrees of freedom"):
            warnings.filterwarnings("ignore", message, RuntimeWarning)
        yield


@contextmanager
def _alignment_error(name: str) -> Iterator[None]:
    """Turn xarray's exact-join failure (coords differ from the fitted ones) into a DataError."""
    try:
        yield
    except xr.AlignmentError as err:
        want = "the coordinates the normalizer was fitted on"
        raise DataError(expected(f"{name} coordinates", want, str(err))) from err
