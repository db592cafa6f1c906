"""How busy the rest of the machine was while we timed something.

On a shared 2-core box another process taking one core slows a 2-thread OpenMP step by up to ~20x (its
threads wait for each other at every barrier), so each sample records the CPU the *other* processes used
(system busy time from /proc/stat minus our own from /proc/self/stat, steal included) and we keep the
samples where that stayed under a threshold. Off Linux every sample counts as clean.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLEAN_OTHER_CORES = 0.25  # a sample is clean if other processes used less than this many cores on average
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, incl. steal; ticks of this process), or None off Linux."""
    try:
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime


@dataclass
class Sample:
    seconds: float
    other_cores: float  # average number of cores busy with other processes (or steal) meanwhile

    @property
    def clean(self) -> bool:
        return self.other_cores < CLEAN_OTHER_CORES


def measure(fn: Callable[[], object]) -> Sample:
    """Wall time of fn() and the other processes' CPU use during it."""
    before = _busy_ticks()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    after = _busy_ticks()
    if before is None or after is None:
        return Sample(seconds, 0.0)
    other = (after[0] - before[0]) - (after[1] - before[1])
    return Sample(seconds, max(0.0, other / _TICK / seconds))


def median_clean(samples: list[Sample]) -> tuple[float, int]:
    """(median seconds, number of clean samples): the median over the clean samples when there are >= 3, else
    over all of them."""
    clean = [s.seconds for s in samples if s.clean]
    used = clean if len(clean) >= 3 else [s.seconds for s in samples]
    return statistics.median(used), len(clean)
