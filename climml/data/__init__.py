"""The data path: open and check datasets, synthetic data, normalization, splits and loaders.

``import climml.data`` does not import JAX; the loader imports it only to place batches on
devices when given a sharding.
"""

from climml.data import synthetic
from climml.data.loader import Batch, WindowLoader
from climml.data.normalize import Normalizer
from climml.data.open import open_dataset
from climml.data.sharding import batch_sharding
from climml.data.sources import SOURCES, load_source
from climml.data.splits import split_anchors
from climml.data.validate import validate_dataset

__all__ = [
    "SOURCES",
    "Batch",
    "Normalizer",
    "WindowLoader",
    "batch_sharding",
    "load_source",
    "open_dataset",
    "split_anchors",
    "synthetic",
    "validate_dataset",
]
