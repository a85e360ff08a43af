"""Real observational series that ship inside installed packages (no download needed).

- :func:`nino12`: monthly Niño 1+2 sea surface temperature, 1950–2010 (statsmodels; public domain).
- :func:`seattle_weather`: daily Seattle weather, 2012–2015 (vega_datasets; NOAA, public domain).
"""

from climml.data.real.nino import nino12
from climml.data.real.seattle import seattle_weather

__all__ = ["nino12", "seattle_weather"]
