"""A list read page by page in a thread of its own, into a small bounded queue, for a writer
in another thread (`tasks.stream`): the reader waits when the queue is full, and a read error
is raised in the writer's thread. A reader may start the next list's reader when its own list
is read (`then`), so that lists are read one after another in the order they are written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from clients.pipedrive import ReadStart
from tasks import fetch

Record = dict[str, Any]

#: pages a reader may hold ahead of the writer, per stream. A chunk's write (up to 5,000 records
#: mapped, one bulk upsert, their links and run-log lines) holds the writer for 0.5-1 s, in which
#: a reader paced at Pipedrive's 20 calls/s fetches 10-20 pages: the queue absorbs that, so the
#: budget is not left idle while the writer catches up (at 4 pages, the persons' and notes'
#: readers of a paced `large` backfill waited 3.4 and 5.0 s on a full queue; at 16, 1.5 and 0).
#: Costs some 15 MiB of peak memory, the same at every size of account.
QUEUE_PAGES = 16

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class PageReader:
    """One stream read page by page in its own thread, into a bounded queue."""

    def __init__(
        self, stream: str, open_records: Callable[[ReadStart], Iterable[Record]], depth: int
    ) -> None:
        self.stream = stream
        #: our clock before the read; Pipedrive's (`start.at`) from its first answer
        self.began = datetime.now(UTC)
        self.start = ReadStart()
        self._open = open_records
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        #: the reader to start when this one has read its stream (streams are read one after
        #: another, in the order they are written: the budget goes to the stream needed first)
        self.then: PageReader | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"read-{stream}", daemon=True)

    def begin(self) -> PageReader:
        self._thread.start()
        return self

    @property
    def read_started(self) -> datetime:
        return self.start.at if self.start.at is not None else self.began

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            page: list[Record] = []
            for record in self._open(self.start):
                page.append(record)
                if len(page) >= fetch.page_size():
                    if not self._put(page):
                        return
                    page = []
            if page and not self._put(page):
                return
            self._put(_END)
        except BaseException as error:  # handed to the writer, which raises it
            self._put(_Failed(error))
        finally:
            if self.then is not None and not self._stop.is_set():
                self.then.begin()  # the next stream's read, now that this one's is done

    def pages(self, idle: Callable[[], bool] | None = None) -> Iterator[list[Record]]:
        """The stream's pages in order; a read error is raised here, in the writer's thread.
        `idle`: work the writer may do instead of waiting for the next page (called while none
        is there, until it returns False: it did nothing)."""
        while True:
            while idle is not None and self._queue.empty() and idle():
                pass
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=30)
