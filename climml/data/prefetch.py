"""Run an iterator on a background thread, a bounded number of items ahead of its consumer.

While the device computes one step, the thread reads and cuts the next batches. The thread
stops as soon as the consumer stops iterating (``break``, an exception, or the generator being
garbage collected), and an exception raised in the thread is re-raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a producer blocked on a full queue checks whether to stop
_DONE = object()


class _Failure:
    """Carries an exception from the producer thread to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator[T], size: int) -> Iterator[T]:
    """Yield the items of ``items``, produced on a daemon thread up to ``size`` ahead (>= 1)."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce, args=(items, buffer, stop), name="climml-prefetch", daemon=True
    )
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def _produce(items: Iterator[T], buffer: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _put(buffer, item, stop):
                return
        _put(buffer, _DONE, stop)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the consumer
        _put(buffer, _Failure(error), stop)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _put(buffer: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has gone; False if it has."""
    while not stop.is_set():
        try:
            buffer.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
