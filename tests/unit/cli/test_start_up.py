"""Start-up's shortcuts (cli/main.py, cli/serve.py): pydantic models defined while the server is
built get their validators when first used, only on a pydantic whose deferred build is safe
across threads (its rebuild lock: without it, 64 threads' first use of a deferred model failed
3 times in 30 on pydantic 2.13.5; with it, never), and the cyclic collector is back on whatever
a command does."""

from __future__ import annotations

import gc

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
