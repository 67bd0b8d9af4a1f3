"""Read ahead: the next item of an iterator is produced in a thread while the caller
works on the one before (an ingest's next Parquet or text batch is read and decoded in
Python while the engine validates and stores the current one: pyarrow and the engine
both release the GIL)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """The items of `items`, in order, each read one step ahead in one worker thread (so
    at most two items are in memory at once). An exception raised by `items` is raised
    here, where its item would have come. Closing this iterator early waits for the read
    under way, then stops."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterline-read-ahead") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]
