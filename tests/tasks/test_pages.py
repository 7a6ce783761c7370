"""`tasks.pages.PageReader`: a list read page by page in a thread, into a bounded queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tasks.fetch
from clients.pipedrive import ReadStart
from tasks.pages import PageReader


@pytest.fixture(autouse=True)
def pages_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.fetch, "PAGE_SIZE", 2)


def test_the_writer_works_while_no_page_is_there_and_pages_come_in_order() -> None:
    released = threading.Event()

    def records(_: ReadStart) -> Iterator[dict[str, Any]]:
        yield from ({"id": n} for n in (1, 2))
        released.wait(timeout=10)  # the next page is not there until the writer's work is done
        yield from ({"id": n} for n in (3, 4, 5))

    done: list[int] = []

    def idle() -> bool:
        if released.is_set():
            return False  # nothing left to do: wait for the page
        done.append(len(done))
        released.set()
        return True

    reader = PageReader("persons", records, depth=1).begin()
    try:
        pages = [[r["id"] for r in page] for page in reader.pages(idle=idle)]
    finally:
        reader.close()
    assert pages == [[1, 2], [3, 4], [5]]
    assert done == [0]  # the work was done once, while the second page was awaited
