"""Daily Seattle weather, 2012-01-01 to 2015-12-31, as an xarray Dataset.

Source: ``vega_datasets`` (``seattle-weather.csv``, bundled in the package so no web access is
needed), derived from NOAA daily observations at Seattle-Tacoma airport by the Vega project
(https://github.com/vega/vega-datasets). License: the observations are public-domain NOAA data
(https://www.weather.gov/disclaimer); the vega_datasets package is MIT-licensed.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climml.errors import DataError, expected

WEATHER_TYPES = ("drizzle", "fog", "rain", "snow", "sun")
"""Categories of the ``weather`` column, coded 0..4 in this order."""

UNITS = {"precipitation": "mm", "temp_max": "degC", "temp_min": "degC", "wind": "m s-1"}


def seattle_weather() -> xr.Dataset:
    """Daily precipitation, temperature extremes, wind and weather type; 1461 days on ``time``.

    Returns:
      Dataset on ``time`` (days, ``datetime64``) with ``(time,)`` variables ``precipitation``
      (mm/day), ``temp_max`` and ``temp_min`` (°C), ``wind`` (m/s, daily mean), ``weather``
      (int8 category code, CF ``flag_values``/``flag_meanings`` name them), and ``doy_sin`` /
      ``doy_cos`` (position in the annual cycle, unitless).

    Raises:
      DataError: if the installed vega_datasets lacks the bundled file (it would otherwise
        fetch it from the web) or the table has unexpected columns or categories.
    """
    from vega_datasets import local_data  # the loader that never falls back to a download

    try:
        dataset = local_data.seattle_weather
    except ValueError:  # installed without the file
        found = "a vega_datasets install without it"
        raise DataError(
            expected("vega_datasets seattle-weather", "bundled local file", found)
        ) from None
    frame = dataset(use_local=True)
    missing = [c for c in ("date", "weather", *UNITS) if c not in frame.columns]
    if missing:
        raise DataError(
            expected(
                "seattle-weather columns", f"date, weather, {list(UNITS)}", f"missing {missing}"
            )
        )
    unknown = sorted(set(frame["weather"]) - set(WEATHER_TYPES))
    if unknown:
        raise DataError(
            expected("seattle-weather weather", f"one of {list(WEATHER_TYPES)}", unknown)
        )

    time = frame["date"].to_numpy().astype("datetime64[ns]")
    codes = frame["weather"].map({w: i for i, w in enumerate(WEATHER_TYPES)}).to_numpy(np.int8)
    # 365.25-day phase so that the seasonal features do not drift across leap years.
    phase = 2.0 * np.pi * (frame["date"].dt.day_of_year.to_numpy() - 1) / 365.25
    variables = {
        name: ("time", frame[name].to_numpy(np.float64), {"units": units})
        for name, units in UNITS.items()
    }
    variables["weather"] = (
        "time",
        codes,
        {
            "flag_values": np.arange(len(WEATHER_TYPES), dtype=np.int8),
            "flag_meanings": " ".join(WEATHER_TYPES),
        },
    )
    variables["doy_sin"] = ("time", np.sin(phase), {"units": "1"})
    variables["doy_cos"] = ("time", np.cos(phase), {"units": "1"})
    return xr.Dataset(
        variables,
        coords={"time": time},
        attrs={
            "title": "Seattle daily weather 2012-2015",
            "source": "vega_datasets seattle-weather.csv (NOAA observations via the Vega project)",
            "license": "public domain (NOAA); vega_datasets package MIT",
        },
    )
