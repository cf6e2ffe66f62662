from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.reflexio_server import SERVER_KEY, RunningServer, required_reflexio_server


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
