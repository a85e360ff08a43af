"""Sorting small ensembles fast on every backend.

XLA's generic sort is slow on CPU (a comparator call per comparison: ~5 s for 10^6 rows of
50 values, 10x numpy). For ensembles of up to ``NETWORK_MAX`` members we instead run a
sorting network: a fixed list of compare-exchange steps on whole member slices, which XLA
fuses into one vectorised loop over points (about 0.05 s for the same array). Larger
ensembles are sorted as one array with ``lax.sort`` by the callers.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import Array

NETWORK_MAX = 64


@functools.cache
def merge_exchange_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Comparator pairs ``(i, j)``, i < j, of Batcher's merge-exchange sort for n inputs.

    Knuth, TAOCP vol. 3, Algorithm 5.2.2M; valid for any n (not only powers of two), with
    O(n log^2 n) comparators (395 for n = 50).
    """
    if n < 2:
        return ()
    pairs = []
    t = (n - 1).bit_length()
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while d > 0:
            pairs.extend((i, i + d) for i in range(n - d) if i & p == r)
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(pairs)


def sort_members(
    values: list[Array], weights: list[Array] | None = None
) -> tuple[list[Array], list[Array] | None]:
    """Sort M member slices elementwise, carrying optional weights along.

    Members are passed and returned as lists of equally shaped slices so that XLA can fuse
    the whole network, and the reductions the caller writes over the list, into a single
    loop over points (returning a stacked array instead forces every comparator's result
    to memory, several times slower; benchmarks/RESULTS.md).

    Args:
      values: M <= ``NETWORK_MAX`` arrays of one shape, without NaN (callers map NaN to +inf).
      weights: M arrays permuted together with ``values``, or None.

    Returns:
      ``(sorted_values, permuted_weights)`` as lists of M arrays.
    """
    m = len(values)
    if m > NETWORK_MAX:  # the unrolled network (and the callers' sums) would not compile well
        raise ValueError(f"sort_members: {m} members, the network handles <= {NETWORK_MAX}")
    rows = list(values)
    wrows = None if weights is None else list(weights)
    for i, j in merge_exchange_pairs(m):
        a, b = rows[i], rows[j]
        rows[i], rows[j] = jnp.minimum(a, b), jnp.maximum(a, b)
        if wrows is not None:
            swap = a > b
            wa, wb = wrows[i], wrows[j]
            wrows[i], wrows[j] = jnp.where(swap, wb, wa), jnp.where(swap, wa, wb)
    return rows, wrows
