"""Fixtures every test may use, and the `backend` marker put on each test that needs the real
Reflexio server (so `pytest -m "not backend"` runs with none)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from types import CodeType

import numpy  # noqa: F401  # pyright: ignore[reportUnusedImport]  imported whole first: see below
import pytest

from tests.support.reflexio_server import (
    SERVER_KEY,
    RunningServer,
    required_reflexio_server,
    restart,
)

# The embedded store imports numpy lazily, in a worker thread, at its first vector work;
# hypothesis's sampled_from peeks at sys.modules["numpy"] and failed on the half-imported module
# when a fuzz test's server did that work first in a process (the completions fuzz test alone).

MEMORY_TMP = "/dev/shm"
MEMORY_TMP_NEEDED = 2 * 2**30
"""Free bytes the tmpfs must have: the suite's files take a few hundred MiB at once."""


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files (tmp_path, tempfile, and so every SQLite store, outbox and Reflexio's
    HOME the tests make) go to memory where the machine has a tmpfs at /dev/shm, unless TMPDIR
    says where: the stores sync each commit to disk, and on a shared disk those syncs were
    most of the wall time of the store and outbox tests (the salvage fuzz test took 12 s on
    disk, 5 s in memory). Set before xdist starts its workers, which inherit it."""
    if os.environ.get("TMPDIR") or not (
        os.path.isdir(MEMORY_TMP) and os.access(MEMORY_TMP, os.W_OK | os.X_OK)
    ):
        return
    free = os.statvfs(MEMORY_TMP)
    if free.f_bavail * free.f_frsize < MEMORY_TMP_NEEDED:  # a container's 64 MiB one: disk
        return
    os.environ["TMPDIR"] = MEMORY_TMP
    tempfile.tempdir = None  # recomputed from TMPDIR at the next use


@pytest.fixture(scope="session")
def reflexio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real Reflexio server, shared by the session. Fails, never skips, if it cannot start."""
    with required_reflexio_server(tmp_path_factory.mktemp("reflexio")) as server:
        yield server


@pytest.fixture(scope="session")
def lone_reflexio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Reflexio server that only tests listing every user's turns (get_all_interactions)
    write to, so that no other test's turns take the newest places."""
    with required_reflexio_server(tmp_path_factory.mktemp("lone-reflexio")) as server:
        yield server


@pytest.fixture(scope="session")
def keyed_reflexio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Reflexio server that demands `Authorization: Bearer SERVER_KEY`."""
    workdir = tmp_path_factory.mktemp("keyed")
    with required_reflexio_server(workdir, extra_env={"REFLEXIO_API_KEY": SERVER_KEY}) as server:
        yield server


@pytest.fixture(scope="session")
def _crashable_reflexio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with required_reflexio_server(tmp_path_factory.mktemp("crashable-reflexio")) as server:
        yield server


@pytest.fixture
def crashable_reflexio(_crashable_reflexio: RunningServer) -> RunningServer:
    """A Reflexio server tests may stop, or kill -9 and restart (kill9, restart), so that
    each need not start its own (seconds each); each test gets it running, restarted if the
    test before left it down. Shared by the session (the modules that crash it used to start
    one each), apart from `reflexio` so that no crash or stop is seen by a test that did not
    ask for one. Tests keep apart by their user ids."""
    if _crashable_reflexio.process.poll() is not None:
        restart(_crashable_reflexio)
    return _crashable_reflexio


@pytest.fixture
def user_id() -> str:
    """A user no other test writes to, so tests share one backend without seeing each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _no_default_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that names no data dir must not write to the user's own (XDG_DATA_HOME)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))


REFLEXIO_FIXTURES = {"reflexio", "lone_reflexio", "keyed_reflexio", "crashable_reflexio"}
"""The fixtures above that start the real Reflexio server."""


LONG_RUNNING = (
    "tests/e2e/test_outbox_delivery.py",
    "tests/e2e/test_publish_lane.py",
    "tests/e2e/test_reflexio_rate_limit.py",
)
"""Modules of tests that take up to a minute or more, mostly waiting (out Reflexio's rate limit,
its restarts, a stuck publish): run first, so that the other workers' short tests fill the time
around them instead of one worker running them alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_reflexio(item):
            item.add_marker(pytest.mark.backend)
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_RUNNING))  # stable


def needs_reflexio(item: pytest.Item) -> bool:
    """Whether a test starts or uses the real Reflexio: through a fixture (directly or through
    another fixture), as the `reflexio` param of a backend-parametrised test (whose fixture asks
    for the server by getfixturevalue), or by calling required_reflexio_server itself."""
    if isinstance(item, pytest.Function) and any(
        _ours(item, name) for name in REFLEXIO_FIXTURES & set(item.fixturenames)
    ):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(
        isinstance(value, str) and value == "reflexio" for value in callspec.params.values()
    ):
        return True
    function = getattr(item, "function", None)
    return function is not None and _calls(function.__code__, required_reflexio_server.__name__)


def _ours(item: pytest.Function, name: str) -> bool:
    """Whether the fixture `name` of this test is the one above, not a module's own of that name
    (test_publish_progress.py's `reflexio` is a fake)."""
    definitions = item._fixtureinfo.name2fixturedefs.get(name, ())  # pyright: ignore[reportPrivateUsage]
    return bool(definitions) and definitions[-1].func.__module__ == __name__


def _calls(code: CodeType, name: str) -> bool:
    """Whether `code`, or code nested in it, refers to the global `name`."""
    return name in code.co_names or any(
        _calls(const, name) for const in code.co_consts if isinstance(const, CodeType)
    )
