"""Real observational series that ship inside installed packages (no download needed).

- :func:`nino12`: monthly Niño 1+2 sea surface temperature, 1950–2010 (statsmodels; public domain).
- :func:`hadisst_ice`: open ocean / sea ice / land from HadISST, August 2012 (cartopy; Met Office).
- :func:`radar_mch`, :func:`radar_fmi`: MeteoSwiss / FMI radar rain-rate events read from a
  pysteps-data folder (``CLIMML_RADAR_DATA`` or ``data.source_args.root``; not shipped).
- :func:`seattle_weather`: daily Seattle weather, 2012–2015 (vega_datasets; NOAA, public domain).
"""

from climml.data.real.hadisst import hadisst_ice
from climml.data.real.nino import nino12
from climml.data.real.radar import radar_fmi, radar_mch
from climml.data.real.seattle import seattle_weather

__all__ = ["hadisst_ice", "nino12", "radar_fmi", "radar_mch", "seattle_weather"]
