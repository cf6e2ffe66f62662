"""Start-up's shortcuts (cli/main.py, cli/serve.py): pydantic models defined while the server is
built get their validators when first used, only on a pydantic whose deferred build is safe
across threads, and the cyclic collector is back on whatever a command does."""

from __future__ import annotations

import gc
import threading

import pydantic.main
import pytest
from pydantic import BaseModel

from reflexio_mcp.cli import serve
from reflexio_mcp.cli.main import main


def test_models_defined_while_the_server_is_built_are_built_when_first_used() -> None:
    with serve._models_built_when_first_used():  # pyright: ignore[reportPrivateUsage]

        class During(BaseModel):
            n: int

    class After(BaseModel):
        n: int

    assert not During.__pydantic_complete__
    assert After.__pydantic_complete__  # pydantic's own default is back
    assert During(n=1).n == 1
    assert During.__pydantic_complete__


def test_a_deferred_model_first_used_by_many_threads_at_once_validates_in_each() -> None:
    with serve._models_built_when_first_used():  # pyright: ignore[reportPrivateUsage]

        class Base(BaseModel):
            pass

        class Turn(Base):
            n: int

    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def first_use() -> None:
        start.wait()
        try:
            assert Turn(n=3).n == 3
        except BaseException as err:  # noqa: BLE001  collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_without_pydantics_rebuild_lock_models_are_built_as_they_are_defined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(pydantic.main, "_rebuild_lock")
    with serve._models_built_when_first_used():  # pyright: ignore[reportPrivateUsage]

        class During(BaseModel):
            n: int

    assert During.__pydantic_complete__


@pytest.mark.parametrize("argv", [["--version"], ["--no-such-flag"], ["config", "nowhere"]])
def test_the_collector_is_on_after_a_command_run_in_process(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert gc.isenabled()
