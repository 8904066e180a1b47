"""How much CPU other processes took while edgeq measured something (Linux /proc/stat).

Speed measurements on a shared machine are only as good as the load they ran under: XNNPACK's
threads wait for a peer that another process descheduled, so 2 threads can lose to 1 while a core is
taken. ``edgeq tune`` records this load and says so when it was high, rather than presenting a
ranking made under load as the machine's.
"""
from __future__ import annotations

import dataclasses
import os
import time

BUSY_WARNING = 0.25  # other processes using more than a quarter of a core: say so


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (None where /proc/stat is absent)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")   # minus idle and iowait


@dataclasses.dataclass(frozen=True)
class LoadWatch:
    """A start point: ``others()`` gives the cores other processes used since, on average."""

    busy: float | None
    own: float
    wall: float

    @classmethod
    def start(cls) -> LoadWatch:
        return cls(machine_busy_seconds(), _own_cpu(), time.perf_counter())

    def others(self) -> float | None:
        """Average cores used by processes other than this one and its finished children (None: unknown)."""
        busy = machine_busy_seconds()
        elapsed = time.perf_counter() - self.wall
        if busy is None or self.busy is None or elapsed <= 0:
            return None
        return max(0.0, (busy - self.busy - (_own_cpu() - self.own)) / elapsed)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
