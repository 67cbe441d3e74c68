"""ordered_map: run a function over items in background threads, results in item order, bounded.

At most `ahead` results are computed but not yet consumed, so a long dataset never piles up in
memory, and the consumer (the training loop) finds the next batch ready whenever the workers keep
up. Threads suffice: Pillow's decoding and resizing and NumPy's array work release the GIL.
workers=0 runs inline. The order of results never depends on `workers`."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor


def ordered_map(fn, items, workers=2, ahead=2):
    """Yield fn(item) for each item, in order; up to max(ahead, workers) computed in advance."""
    if workers <= 0:
        for item in items:
            yield fn(item)
        return
    depth = max(int(ahead), int(workers), 1)
    executor = ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="alexnet_raw-data")
    pending = deque()
    try:
        it = iter(items)
        for item in it:
            pending.append(executor.submit(fn, item))
            if len(pending) >= depth:
                break
        for item in it:
            result = pending.popleft().result()
            pending.append(executor.submit(fn, item))
            yield result
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
