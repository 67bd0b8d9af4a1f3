"""meters.ingest.prefetch: items in order, one read ahead, the reader's error where its item would be."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from meters.ingest.prefetch import prefetched


def test_items_come_in_order_and_are_read_one_ahead_in_another_thread() -> None:
    read: list[int] = []
    threads: set[str] = set()

    def items() -> Iterator[int]:
        for n in range(4):
            threads.add(threading.current_thread().name)
            read.append(n)
            yield n

    seen = []
    for item in prefetched(items()):
        seen.append(item)
        # the next item is being read (or was) while this one is worked on
        assert len(read) <= item + 2
    assert seen == [0, 1, 2, 3]
    assert threads and threading.current_thread().name not in threads


def test_a_reader_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise ValueError("file damaged at row 2")

    got = []
    with pytest.raises(ValueError, match="damaged at row 2"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1]


def test_closing_early_stops_reading() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for n in range(100):
            read.append(n)
            yield n

    stream = prefetched(items())
    assert next(stream) == 0
    stream.close()
    assert len(read) <= 2
