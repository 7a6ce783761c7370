"""The cyclic garbage collector, set for a run that streams many records.

A backfill makes and drops millions of small dicts and lists (pages, records, bodies, answers),
none of them in a reference cycle: reference counting frees every one. CPython's cyclic
collector cannot know that. With its defaults (the youngest generation collected every 700 net
allocations, the whole heap whenever the survivors have grown by a quarter) it walked the heap,
Prefect's and the settings' objects included, some 6,000 times in a `large` backfill: 4.6-5.7 s
of its 22-29 s of CPU.

`bulk_gc()` sets it for the length of a run: what exists when the run begins (imports,
settings, clients) is frozen out of the collector's walks (`gc.freeze`), and the youngest
generation is collected every `GEN0_THRESHOLD` net allocations. Cycles are still collected,
only less often (the run makes few: `clients.http` unbinds each response from its body stream);
on leaving, the thresholds are restored and the frozen objects handed back to the collector.
Runs in one process (`pdsync serve`) share the collector: the first to enter sets it, the last
to leave restores it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: net allocations between collections of the youngest generation during a run (CPython: 700)
GEN0_THRESHOLD = 10_000

_lock = threading.Lock()
_inside = 0  # runs in this process inside `bulk_gc`
_saved = gc.get_threshold()


@contextmanager
def bulk_gc() -> Iterator[None]:
    """The collector set for a bulk run (see the module docstring) until the block ends."""
    global _inside, _saved
    with _lock:
        if _inside == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(GEN0_THRESHOLD, _saved[0]), *_saved[1:])
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
