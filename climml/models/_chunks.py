"""Time-major sequences processed a chunk of steps at a time (shared by the recurrent layers)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def chunked_scan(fn: Callable, init, xs, steps: int, chunk: int, *, reverse=False, firsts=None):
    """``fn(carry, (xs_chunk, first)) -> (carry, ys_chunk)`` over chunks of ``chunk`` steps.

    ``xs`` and ``ys`` are pytrees of time-major arrays (``None`` leaves allowed); ``firsts`` is
    an optional pytree of per-chunk values (leading axis: chunks) and ``first`` its entry for the
    chunk. Full chunks run in a ``lax.scan``; a shorter remainder chunk, if any, runs once after
    them (before them when ``reverse``). Returns ``(carry, ys)`` with ``ys`` re-joined along time.
    """
    n = steps // chunk
    pick = lambda tree, index: jax.tree.map(lambda a: a[index], tree)  # noqa: E731
    if chunk >= steps:
        return fn(init, (xs, pick(firsts, 0)))
    full = jax.tree.map(lambda a: a[: n * chunk].reshape(n, chunk, *a.shape[1:]), xs)
    rest = (jax.tree.map(lambda a: a[n * chunk :], xs), pick(firsts, n))
    has_rest = steps > n * chunk
    carry = init
    if has_rest and reverse:
        carry, ys_rest = fn(carry, rest)
    carry, ys = jax.lax.scan(fn, carry, (full, pick(firsts, slice(0, n))), reverse=reverse)
    ys = jax.tree.map(lambda a: a.reshape(n * chunk, *a.shape[2:]), ys)
    if has_rest and not reverse:
        carry, ys_rest = fn(carry, rest)
    if has_rest:
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_rest)
    return carry, ys


def shift(a: jax.Array) -> jax.Array:
    """``a`` delayed by one step along time, with zeros (the initial state) first."""
    return jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]])


def flat(a: jax.Array) -> jax.Array:
    """``(T, B, K)`` -> ``(T*B, K)``: many steps as the rows of one matmul."""
    return a.reshape(-1, a.shape[-1])
