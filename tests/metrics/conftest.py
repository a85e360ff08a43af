"""Metric tests run under strict dtype promotion, so kernels never rely on implicit casts."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _strict_promotion():
    with jax.numpy_dtype_promotion("strict"):
        yield
