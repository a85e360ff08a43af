"""The data path: open, conform and check datasets; synthetic data, normalization, splits,
loaders.

``import climml.data`` does not import JAX; the loader imports it only to place batches on
devices when given a sharding.
"""

from climml.data import synthetic
from climml.data.eof import EOF
from climml.data.loader import Batch, WindowLoader
from climml.data.normalize import Normalizer
from climml.data.open import conform, open_dataset
from climml.data.sharding import batch_sharding
from climml.data.sources import SOURCES, load_source
from climml.data.splits import split_anchors
from climml.data.validate import check_splits, validate_dataset

__all__ = [
    "EOF",
    "SOURCES",
    "Batch",
    "Normalizer",
    "WindowLoader",
    "batch_sharding",
    "check_splits",
    "conform",
    "load_source",
    "open_dataset",
    "split_anchors",
    "synthetic",
    "validate_dataset",
]
