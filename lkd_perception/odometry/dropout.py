"""Which scans a busy live node would skip: a reproducible keep-mask for benchmarks and tests.

A node behind a best-effort subscription of depth 1 loses whatever arrives while it is busy:
single scans after an ordinary callback, runs of several after a slow one (a loop closure, a
CPU spike from a neighbour). :func:`scan_drop_mask` reproduces that pattern offline, so the
odometry can be measured on exactly the scans a live run would have seen.
"""

from __future__ import annotations

import numpy as np


def scan_drop_mask(n: int, fraction: float, seed: int = 0, max_burst: int = 5) -> np.ndarray:
    """Boolean keep-mask over ``n`` scans dropping about ``fraction`` of them.

    Dropped scans come in bursts of 1..``max_burst`` consecutive scans (uniform); kept runs
    between bursts are geometric with the mean that gives ``fraction`` in expectation, and at
    least one scan long, so bursts never merge into longer gaps than ``max_burst``. The first
    scan is always kept (it anchors the odometry).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"drop fraction must be in [0, 1), got {fraction}")
    if max_burst < 1:
        raise ValueError(f"max_burst must be >= 1, got {max_burst}")
    keep = np.ones(n, dtype=bool)
    if fraction == 0.0 or n < 2:
        return keep
    rng = np.random.default_rng(seed)
    mean_burst = (1 + max_burst) / 2.0
    mean_kept = max(mean_burst * (1.0 - fraction) / fraction, 1.0)
    i = 1
    while i < n:
        i += int(rng.geometric(1.0 / mean_kept))  # kept run, >= 1
        burst = int(rng.integers(1, max_burst + 1))
        keep[i : i + burst] = False
        i += burst
    return keep
