"""Synthetic datasets with the structure of real climate data, generated from a seed."""

from climml.data.synthetic.ocean import enso
from climml.data.synthetic.radar import radar
from climml.data.synthetic.weather import extreme_weather

__all__ = ["enso", "extreme_weather", "radar"]
