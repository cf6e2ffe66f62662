"""How many cores a search may take now: the query's embedding takes a second thread only
when a core is idle.

The engine splits each step of a query between its threads and waits for the slowest at every
step. A second thread halves a query's time on an idle machine (23 to 11 ms), but when another
process holds the other core the waits take a time slice each: a query then took 0.3 to 1.6 s.
So a query takes a second thread only when the kernel counts nobody else running on it, and
only where that can be read (Linux's /proc), with two CPUs this process may use and a CPU
quota, if any, of two or more. A burst that begins during a query still costs that query.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
MAX_THREADS = 2
"""Two halve a query's time; more were not measured (the machines here have two cores)."""


def query_threads(busy_threads: int) -> int:
    """Threads a query's embedding may use now: a second one when a core is idle beside the
    caller's and the `busy_threads` of this process that keep a core each (an indexing
    batch). Call it from the thread that embeds."""
    others = _others_running()
    if others is None or others + busy_threads + MAX_THREADS > usable_cpus():
        return 1
    return MAX_THREADS


@cache
def usable_cpus() -> int:
    """CPUs this process may run on, bounded by its cgroup's CPU quota (v2 or v1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, int(quota))) if quota is not None else cpus


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup may use, or None if unbounded or unknown."""
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (CGROUP / "cpu" / "cpu.cfs_quota_us").read_text()
            period = (CGROUP / "cpu" / "cpu.cfs_period_us").read_text()
        except (OSError, ValueError):
            return None
    try:
        share = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None  # v2's "max"
    return share if share > 0 else None  # v1's -1: no quota


def _others_running() -> int | None:
    """Threads of other processes running or waiting for a CPU now, or None where the kernel
    does not say. /proc/loadavg counts every runnable thread (this one too); this process's
    own are taken off (its event loop finishing a step, the engine's thread still spinning
    after a query, another search's read: short work, which counted kept 30 of 301 LoCoMo
    questions on one thread, against 3 of 301). A count of none is not the kernel's (gVisor
    writes 0/0): it counts the reader."""
    try:
        running = int((PROC / "loadavg").read_text().split()[3].partition("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    if running < 1:
        return None
    return max(0, running - _own_running())


def _own_running() -> int:
    """This process's threads the kernel counts as runnable (this one at least)."""
    own = 0
    tasks = PROC / "self" / "task"
    try:
        ids = os.listdir(tasks)
    except OSError:
        return 1
    for task in ids:
        try:
            stat = (tasks / task / "stat").read_bytes()
        except OSError:
            continue  # the thread ended
        if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"R":
            own += 1
    return max(own, 1)
