"""How many CPU threads torch should use: the cores this process may use, less those
other processes keep busy. Oversubscribed threads collapse on a CPU: with one of two
cores busy, two threads trained LSTM(100) at half the speed of one thread
(docs/benchmarks.md)."""

from __future__ import annotations

import os
import time

import torch

from rnnlab.core.errors import check


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def busy_cores(interval: float = 0.1) -> float:
    """CPUs kept busy by other processes right now (this one sleeps while /proc/stat is
    sampled over ``interval`` seconds); 0 where /proc/stat is missing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            # user nice system idle iowait irq softirq steal
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0.0
    busy = 1.0 - (idle1 - idle0) / max(1, total1 - total0)
    return max(0.0, busy) * (os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a run when none are asked for: the usable cores less the busy ones, >= 1."""
    cores = usable_cores()
    return max(1, min(cores, round(cores - busy_cores())))


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads; returns the number in force. ``None`` keeps torch's
    setting but lowers it to the cores other processes leave free."""
    if threads is None:
        threads = min(torch.get_num_threads(), default_threads())
    check(threads >= 1, "threads", f"must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()
