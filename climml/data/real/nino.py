"""Monthly Niño 1+2 sea surface temperature, 1950-01 to 2010-12, as an xarray Dataset.

Source: ``statsmodels.datasets.elnino`` — NOAA Climate Prediction Center, ERSST.v3b, area-mean
SST of the Niño 1+2 region (0–10°S, 90°W–80°W), http://www.cpc.ncep.noaa.gov/data/indices/.
License: public domain (U.S. Government work, as stated by statsmodels' ``COPYRIGHT``). The table
ships inside statsmodels, so loading it needs no network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import DataError, expected

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _monthly_series() -> pd.Series:
    """The statsmodels table (one row per year, one column per month) as one monthly series."""
    from statsmodels.datasets import elnino

    table = elnino.load_pandas().data
    missing = [m for m in ("YEAR", *MONTHS) if m not in table.columns]
    if missing:
        raise DataError(
            expected("statsmodels elnino columns", "YEAR, JAN..DEC", f"missing {missing}")
        )
    start = f"{int(table['YEAR'].iloc[0])}-01-01"
    values = table[list(MONTHS)].to_numpy(dtype=np.float64).reshape(-1)  # row-major: year by year
    time = pd.date_range(start, periods=values.size, freq="MS")
    return pd.Series(values, index=time)


def nino12(base_period: tuple[str, str] = ("1951-01", "1980-12")) -> xr.Dataset:
    """Niño 1+2 SST with its anomaly and seasonal features; 732 months on a ``time`` axis.

    Args:
      base_period: inclusive (start, end) months of the climatology the anomaly is taken from.
        The default 1951–1980 is a classic 30-year WMO normal that lies wholly before the usual
        held-out decades (1990s, 2000s), so anomalies do not leak test-period information.

    Returns:
      Dataset on ``time`` (month starts, ``datetime64``) with variables, all ``(time,)``:
      ``nino12`` (°C), ``nino12_anom`` (°C, departure from the base-period mean of the same
      calendar month), ``month_sin`` and ``month_cos`` (position in the annual cycle, unitless).
    """
    sst = _monthly_series()
    base = sst.loc[base_period[0] : base_period[1]]
    if base.empty or base.index.month.nunique() < 12:
        raise DataError(
            expected("base_period", "a range covering all 12 months of 1950-2010", base_period)
        )
    climatology = base.groupby(base.index.month).mean()
    anomaly = sst.to_numpy() - climatology.loc[sst.index.month].to_numpy()
    phase = 2.0 * np.pi * (sst.index.month.to_numpy() - 1) / 12.0
    ds = xr.Dataset(
        {
            "nino12": ("time", sst.to_numpy(), {"units": "degC", "long_name": "Nino 1+2 SST"}),
            "nino12_anom": (
                "time",
                anomaly,
                {
                    "units": "degC",
                    "long_name": "Nino 1+2 SST anomaly",
                    "base_period": f"{base_period[0]} to {base_period[1]}",
                },
            ),
            "month_sin": ("time", np.sin(phase), {"units": "1", "long_name": "sin of month phase"}),
            "month_cos": ("time", np.cos(phase), {"units": "1", "long_name": "cos of month phase"}),
        },
        coords={"time": sst.index.to_numpy().astype("datetime64[ns]")},
        attrs={
            "title": "Nino 1+2 monthly sea surface temperature (ERSST.v3b)",
            "source": "statsmodels.datasets.elnino; NOAA CPC, http://www.cpc.ncep.noaa.gov/data/indices/",
            "license": "public domain",
        },
    )
    return ds
