"""Timing helper shared by the benchmark scripts (``python benchmarks/bench_*.py`` puts this
folder first on ``sys.path``, so the scripts import it as ``timing``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time in seconds of ``repeat`` calls of ``fn``, after one warm-up call.

    Examples
    --------
    >>> median_time(lambda: sum(range(10)), 3) >= 0.0
    True
    """
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
