"""A small thread pool for the image steps' independent pieces (bands of rows, tile strips, colour channels).

numpy and OpenCV release the GIL in their loops, so pieces that each write their own part of an output run side
by side. The pool is made per call (a few threads start in well under a millisecond) and never outlives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Threads per job: the pieces are memory-bound array passes, which more than three threads do not speed up on the
# few cores a ComfyUI machine spares beside its sampler.
WORKERS = max(1, min(3, os.cpu_count() or 1))


def each(work: Callable[[T], R], items: Iterable[T], parallel: bool = True) -> list[R]:
    """``[work(item) for item in items]``, on a pool of up to WORKERS threads when ``parallel`` and there is more
    than one item (a worker's exception is raised here)."""
    items = list(items)
    if not (parallel and WORKERS > 1 and len(items) > 1):
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return [done.result() for done in [pool.submit(work, item) for item in items]]
