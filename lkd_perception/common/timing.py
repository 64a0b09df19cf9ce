"""Timing and memory measurement shared by nodes (diagnostics) and benchmarks.

Latency statistics keep a bounded window so a node running for hours uses constant memory.
"""

from __future__ import annotations

import resource
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """Latency and rate over the recent window, in milliseconds and hertz."""

    count: int
    rate_hz: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float


class LatencyWindow:
    """Rolling record of (arrival time, processing latency) for rate and latency statistics."""

    def __init__(self, window: int = 200, clock=time.monotonic) -> None:
        self._arrivals: deque[float] = deque(maxlen=window)
        self._latencies: deque[float] = deque(maxlen=window)
        self._clock = clock
        self.total = 0

    def record(self, latency_s: float) -> None:
        self._arrivals.append(self._clock())
        self._latencies.append(latency_s)
        self.total += 1

    def summary(self) -> LatencySummary:
        n = len(self._latencies)
        if n == 0:
            return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        lat = np.asarray(self._latencies) * 1e3
        span = self._arrivals[-1] - self._arrivals[0] if n > 1 else 0.0
        # A rate over a window that has gone quiet must fall: measure up to now, not to the last arrival.
        since_last = self._clock() - self._arrivals[-1]
        rate = (n - 1) / (span + since_last) if n > 1 and span + since_last > 0 else 0.0
        return LatencySummary(
            count=self.total,
            rate_hz=float(rate),
            mean_ms=float(lat.mean()),
            p50_ms=float(np.percentile(lat, 50)),
            p95_ms=float(np.percentile(lat, 95)),
            max_ms=float(lat.max()),
        )


class Stopwatch:
    """Context manager measuring wall time with ``perf_counter``: ``with Stopwatch() as sw: ...``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.start


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Reads ``VmHWM`` from /proc: unlike ``getrusage``, it is not inherited from the parent, so a
    benchmark run in a spawned child measures only itself.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident memory of this process, in MiB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return 0.0
