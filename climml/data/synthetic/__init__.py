"""Synthetic datasets with the structure of real climate data, generated from a seed."""

from climml.data.synthetic.ocean import enso

__all__ = ["enso"]
