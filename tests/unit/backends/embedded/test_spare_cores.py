"""A query's embedding takes a second thread only when the kernel counts a core idle, and the
vector it makes is the one a single thread makes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from reflexio_mcp.backends.embedded import spare_cores
from reflexio_mcp.backends.embedded.embedder import Embedder, EmbeddingChoice

BUSY_LOOP = "print('spinning', flush=True)\nwhile True: pass"


def fake_proc(root: Path, running: int, own_states: str) -> Path:
    """A /proc whose loadavg counts `running` runnable threads, this process's threads being
    in `own_states` (one letter each, R = runnable)."""
    (root / "loadavg").parent.mkdir(parents=True, exist_ok=True)
    (root / "loadavg").write_text(f"0.50 0.40 0.30 {running}/300 4242\n")
    for n, state in enumerate(own_states, start=1):
        task = root / "self" / "task" / str(n)
        task.mkdir(parents=True)
        # a thread's name may hold spaces and parentheses: the state follows the last ")"
        (task / "stat").write_text(f"{n} (py (worker) 2) {state} 1 1 1 0 -1\n")
    return root


@pytest.mark.parametrize(
    ("cpus", "running", "own_states", "busy", "threads"),
    [
        (2, 1, "RSS", 0, 2),  # only the caller runs
        (2, 3, "RRS", 0, 1),  # one other process's thread runs
        (2, 3, "RRR", 0, 2),  # the process's own words read and engine thread run: not others
        (2, 1, "RS", 1, 1),  # an indexing batch keeps the other core
        (4, 2, "RS", 1, 2),  # one other and a batch leave two cores of four
        (4, 3, "RS", 1, 1),
        (1, 1, "R", 0, 1),  # one CPU
    ],
)
def test_a_second_thread_only_when_a_core_is_idle(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    running: int,
    own_states: str,
    busy: int,
    threads: int,
) -> None:
    monkeypatch.setattr(spare_cores, "PROC", fake_proc(tmp_path, running, own_states))
    monkeypatch.setattr(spare_cores, "usable_cpus", lambda: cpus)
    assert spare_cores.query_threads(busy_threads=busy) == threads


@pytest.mark.parametrize(
    "loadavg", [None, "", "0.1 0.1 0.1\n", "0.1 0.1 0.1 x/y 1\n", "0.00 0.00 0.00 0/0 0\n"]
)
def test_one_thread_where_the_kernel_does_not_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loadavg: str | None
) -> None:
    if loadavg is not None:
        (tmp_path / "loadavg").write_text(loadavg)
    monkeypatch.setattr(spare_cores, "PROC", tmp_path)
    monkeypatch.setattr(spare_cores, "usable_cpus", lambda: 8)
    assert spare_cores.query_threads(busy_threads=0) == 1


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
)
def test_a_cgroup_quota_bounds_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], quota: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(spare_cores, "CGROUP", tmp_path)
    assert spare_cores._cgroup_quota() == quota  # pyright: ignore[reportPrivateUsage]


def two_cpus(pid: int) -> set[int]:
    return {0, 1}


@pytest.mark.parametrize(("quota", "cpus"), [("150000 100000", 1), ("max 100000", 2)])
def test_a_fractional_quota_is_rounded_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quota: str, cpus: int
) -> None:
    (tmp_path / "cpu.max").write_text(f"{quota}\n")
    monkeypatch.setattr(spare_cores, "CGROUP", tmp_path)
    monkeypatch.setattr(spare_cores.os, "sched_getaffinity", two_cpus)
    spare_cores.usable_cpus.cache_clear()
    try:
        assert spare_cores.usable_cpus() == cpus
    finally:
        spare_cores.usable_cpus.cache_clear()


def test_a_busy_process_keeps_a_query_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real kernel's count: another process spinning on the other of two cores."""
    monkeypatch.setattr(spare_cores, "usable_cpus", lambda: 2)
    with subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE) as busy:
        try:
            assert busy.stdout is not None
            assert busy.stdout.readline() == b"spinning\n"
            assert [spare_cores.query_threads(busy_threads=0) for _ in range(50)] == [1] * 50
        finally:
            busy.kill()


def test_this_process_counts_its_own_running_threads() -> None:
    """What the count of others leaves out: a thread of this process hashing (the GIL let
    go) is runnable, and counted as this process's own."""
    stop = threading.Event()

    def hash_until_stopped() -> None:
        block = b"x" * 4_000_000
        while not stop.is_set():
            hashlib.sha256(block).digest()

    hasher = threading.Thread(target=hash_until_stopped)
    hasher.start()
    try:
        counts = [spare_cores._own_running() for _ in range(200)]  # pyright: ignore[reportPrivateUsage]
    finally:
        stop.set()
        hasher.join()
    assert max(counts) >= 2


def fixed_threads(threads: int, busy_threads: int) -> int:
    return threads


def threads_of_this_process() -> set[str]:
    return set(os.listdir("/proc/self/task"))


async def test_a_query_made_by_two_threads_is_the_one_made_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each output of a step is one thread's whole sum, so the vectors are equal bit for bit;
    and the second thread is real: the engine starts it for the calling thread."""
    embedder = Embedder(EmbeddingChoice())
    text = "Which datastore did the team choose after the long argument?"

    def embedded_by(threads: int) -> tuple[npt.NDArray[np.float32], int]:
        found: list[tuple[npt.NDArray[np.float32], int]] = []

        def run() -> None:  # a thread of its own: the engine's threads belong to the caller's
            before = threads_of_this_process()
            vector = embedder.query(f"{text} ({threads})")
            assert vector is not None
            found.append((vector, len(threads_of_this_process() - before)))

        monkeypatch.setattr(spare_cores, "query_threads", partial(fixed_threads, threads))
        caller = threading.Thread(target=run)
        caller.start()
        caller.join()
        return found[0]

    await anyio.to_thread.run_sync(embedder.query, "load the model")
    one, started_by_one = embedded_by(1)
    two, started_by_two = embedded_by(2)
    assert (started_by_one, started_by_two) == (0, 1)
    again = Embedder(EmbeddingChoice())
    monkeypatch.setattr(spare_cores, "query_threads", partial(fixed_threads, 1))
    assert np.array_equal(np.asarray(again.query(f"{text} (2)")), two)
    assert np.array_equal(np.asarray(again.query(f"{text} (1)")), one)
