"""What only the embedded store has: its file, its schema, its ids, and several writers at once."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import uuid
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from reflexio_mcp.embedded_store import SCHEMA_VERSION, EmbeddedStore
from reflexio_mcp.errors import NotFound, ReflexioError
from reflexio_mcp.models import GetRequest, InteractionData, PublishRequest
from tests.test_stdio_reflexio import server_command


def publish(user_id: str, *contents: str, request_id: str | None = None) -> PublishRequest:
    return PublishRequest(
        request_id=request_id or str(uuid.uuid4()),
        user_id=user_id,
        session_id="s",
        interaction_data_list=[InteractionData(content=c) for c in contents],
    )


async def test_file_and_folder_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "reflexio-mcp"
    async with EmbeddedStore(data_dir) as store:
        await store.publish(publish("u", "hello"), wait_for_response=False)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "interactions.sqlite3").stat().st_mode) == 0o600


async def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "interactions.sqlite3")
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


async def test_a_newer_schema_is_refused_with_a_fix(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "interactions.sqlite3")
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(ReflexioError, match=r"written by a newer reflexio-mcp .*upgrade"):
        async with EmbeddedStore(tmp_path):
            pass


async def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(publish("u", "kept"), wait_for_response=False)
    async with EmbeddedStore(tmp_path) as store:
        found = await store.get_interactions(GetRequest(user_id="u"))
    assert [i.content for i in found] == ["kept"]


async def test_a_request_id_is_stored_once(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        first = await store.publish(publish("u", "once", request_id="r-1"), wait_for_response=False)
        second = await store.publish(
            publish("u", "twice", request_id="r-1"), wait_for_response=False
        )
        found = await store.get_interactions(GetRequest(user_id="u"))
    assert not first.already_stored
    assert second.already_stored
    assert second.message == (
        "request_id 'r-1' was already stored by an earlier publish: nothing was stored twice"
    )
    assert [i.content for i in found] == ["once"]


async def test_ids_are_stable_and_never_reused(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(publish("u", "a", "b"), wait_for_response=False)
        before = {
            i.content: i.interaction_id
            for i in await store.get_interactions(GetRequest(user_id="u"))
        }
        await store.delete_interaction("u", before["b"])
        await store.publish(publish("u", "c"), wait_for_response=False)
        after = {
            i.content: i.interaction_id
            for i in await store.get_interactions(GetRequest(user_id="u"))
        }
        with pytest.raises(NotFound):
            await store.delete_interaction("u", before["b"])
    assert after["a"] == before["a"]
    assert after["c"] > before["b"]


async def test_learning_flags_are_reported_as_ignored(tmp_path: Path) -> None:
    request = publish("u", "x").model_copy(update={"force_extraction": True})
    async with EmbeddedStore(tmp_path) as store:
        answer = await store.publish(request, wait_for_response=True)
    assert answer.warnings == [
        "wait_for_response, force_extraction ignored: stored in the embedded store; no learning "
        "happens here: profiles and playbooks need a Reflexio backend (set REFLEXIO_URL)"
    ]


async def test_two_server_processes_share_the_file_without_losing_writes(tmp_path: Path) -> None:
    """Two Claude windows: two reflexio-mcp processes publishing into one store at once."""
    publishes_each = 25
    command, args = server_command()

    async def window(name: str) -> None:
        server = StdioServerParameters(
            command=command,
            args=[*args, "--backend", "embedded", "--data-dir", str(tmp_path)],
            env={"REFLEXIO_MCP_LOG_LEVEL": "WARNING"},
        )
        async with Client(server) as client:
            for n in range(publishes_each):
                result = await client.call_tool(
                    "publish_interaction",
                    {"user_id": "shared", "user_message": f"{name} {n}", "agent_response": "ok"},
                )
                assert not result.is_error

    with anyio.fail_after(120):
        async with anyio.create_task_group() as windows:
            windows.start_soon(window, "left")
            windows.start_soon(window, "right")

    async with EmbeddedStore(tmp_path) as store:
        stored = await store.get_interactions(GetRequest(user_id="shared", top_k=1000))
    messages = {i.content for i in stored if i.role == "user"}
    assert len(stored) == 2 * publishes_each * 2
    assert messages == {f"{side} {n}" for side in ("left", "right") for n in range(publishes_each)}


def test_demo_command_runs_end_to_end() -> None:
    """The README's first command: a real stdio session on a throwaway embedded store."""
    command, args = server_command()
    result = subprocess.run(
        [command, *args, "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [
        "1. Connected.",
        "2. publish_interaction: stored 3 turns",
        "3. search_interactions",
        "4. get_interactions: 3 turns",
        "5. delete_interaction",
        "6. reflexio://status",
        "All steps passed.",
    ]
    for step in steps:
        assert step in result.stdout


def test_startup_says_which_backend_on_stderr_only(tmp_path: Path) -> None:
    command, args = server_command()
    result = subprocess.run(
        [command, *args, "--data-dir", str(tmp_path)],
        input="",  # end of input: the server stops at once
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"serving the embedded store at {tmp_path / 'interactions.sqlite3'}" in result.stderr
    assert "no learning on the embedded store: set REFLEXIO_URL" in result.stderr


def test_unusable_data_dir_fails_with_a_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    command, args = server_command()
    result = subprocess.run(
        [command, *args, "--data-dir", str(blocker / "sub")],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot open the embedded store" in result.stderr
    assert "set REFLEXIO_MCP_DATA_DIR to a writable folder" in result.stderr
    assert "Traceback" not in result.stderr
