"""What only the embedded store has: its file, its schema, its ids, and several writers at once."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent

from reflexio_mcp.app import build_server
from reflexio_mcp.backends.embedded.schema import SCHEMA_VERSION
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.sqlite_file import SqliteFile, store_error
from reflexio_mcp.core.errors import (
    NotFound,
    ReflexioMcpError,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
)
from reflexio_mcp.core.models import GetRequest, InteractionData, PublishRequest, SearchRequest
from reflexio_mcp.settings import Settings
from tests.support.embedded_schema import V2_SCHEMA
from tests.support.launch import server_command


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
    with pytest.raises(ReflexioMcpError, match=r"written by a newer reflexio-mcp .*upgrade"):
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


def served_until_end_of_input(
    *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Start reflexio-mcp with `flags` and an empty stdin: it stops at once (or fails)."""
    command, args = server_command()
    return subprocess.run(
        [command, *args, *flags],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_startup_says_which_backend_on_stderr_only(tmp_path: Path) -> None:
    result = served_until_end_of_input(
        "--data-dir", str(tmp_path), env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"serving the embedded store at {tmp_path / 'interactions.sqlite3'}" in result.stderr
    assert "no learning on the embedded store: set REFLEXIO_URL" in result.stderr


def test_unusable_data_dir_fails_with_a_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = served_until_end_of_input("--data-dir", str(blocker / "sub"))
    assert result.returncode == 1
    assert "cannot open the embedded store" in result.stderr
    assert "set REFLEXIO_MCP_DATA_DIR to a writable folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_store_stops_startup_with_one_line_and_stays_untouched(tmp_path: Path) -> None:
    store = tmp_path / "interactions.sqlite3"
    damaged = b"this is not a database " * 500
    store.write_bytes(damaged)
    result = served_until_end_of_input("--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "ExceptionGroup" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert errors[0].endswith(
        f"cannot start: the embedded store {store} is damaged or not a SQLite database (file is "
        f"not a database). It was left as it is: move it aside (e.g. rename it to "
        "interactions.sqlite3.broken) and reflexio-mcp starts a fresh one, or set "
        "REFLEXIO_MCP_DATA_DIR to another folder"
    )
    assert store.read_bytes() == damaged
    assert not (tmp_path / "interactions.sqlite3-wal").exists()


async def test_a_store_held_busy_by_another_process_answers_a_clear_error(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, busy_seconds=0.2)
    async with Client(build_server(Settings(backend="embedded"), store)) as client:
        other = sqlite3.connect(tmp_path / "interactions.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another reflexio-mcp in the middle of a write
        try:
            result = await client.call_tool(
                "publish_interaction", {"user_message": "a", "agent_response": "b"}
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        after = await client.call_tool(
            "publish_interaction", {"user_message": "a", "agent_response": "b"}
        )
    assert result.is_error
    assert text_of(result) == (
        f"the embedded store {tmp_path / 'interactions.sqlite3'} is busy: another process held "
        "its write lock for 0.2 s. Nothing was changed; try again in a moment"
    )
    assert not after.is_error


def sqlite_failure(make: Callable[[Path], None], tmp_path: Path) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as err:
        make(tmp_path)
    return err.value


def fill_past_the_page_limit(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "full.sqlite3")
    db.execute("CREATE TABLE t (x TEXT)")
    db.execute("PRAGMA max_page_count = 3")  # the disk is full as far as SQLite can tell
    db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))


def open_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad.sqlite3").write_bytes(b"garbage" * 1000)
    sqlite3.connect(tmp_path / "bad.sqlite3").execute("SELECT * FROM sqlite_master")


def write_read_only(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "ro.sqlite3").execute("CREATE TABLE t (x)")
    db = sqlite3.connect(f"file:{tmp_path / 'ro.sqlite3'}?mode=ro", uri=True)
    db.execute("INSERT INTO t VALUES (1)")


@pytest.mark.parametrize(
    ("make", "kind", "expected"),
    [
        (fill_past_the_page_limit, StoreFull, "is full. Nothing was changed; free some space"),
        (open_garbage, StoreCorrupt, "is damaged or not a SQLite database"),
        (write_read_only, StoreReadOnly, "make the file and its folder writable by this user"),
    ],
)
def test_sqlite_failures_become_store_errors_naming_the_fix(
    tmp_path: Path, make: Callable[[Path], None], kind: type[StoreError], expected: str
) -> None:
    error = store_error(sqlite_failure(make, tmp_path), tmp_path / "x.sqlite3")
    assert type(error) is kind
    assert expected in str(error)
    assert str(tmp_path / "x.sqlite3") in str(error)


async def test_a_runaway_search_is_stopped_and_the_server_keeps_answering(tmp_path: Path) -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    async with EmbeddedStore(tmp_path) as store:
        for batch in range(20):
            turns = [" ".join(words[(n + batch) % 10 :] + words) for n in range(1000)]
            await store.publish(publish("u", *turns), wait_for_response=False)
    store = EmbeddedStore(tmp_path, read_seconds=0.001)
    async with Client(build_server(Settings(backend="embedded"), store)) as client:
        slow = await client.call_tool(
            "search_interactions", {"user_id": "u", "query": " ".join(words), "top_k": 1000}
        )
        quick = await client.call_tool("get_interactions", {"user_id": "u", "top_k": 1})
    assert slow.is_error
    assert text_of(slow) == (
        "the query ran longer than 0.001 s and was stopped so other calls are not held up: "
        "search for fewer or rarer words, or narrow it with start_time/end_time"
    )
    assert not quick.is_error


async def test_reads_run_beside_one_another(tmp_path: Path) -> None:
    finished: list[str] = []
    started = anyio.Event()

    def slow(db: sqlite3.Connection) -> None:
        started.set()  # set from a worker thread: only read once the quick read is awaited
        time.sleep(0.5)
        finished.append("slow")

    def quick(db: sqlite3.Connection) -> None:
        db.execute("SELECT 1").fetchone()
        finished.append("quick")

    file = SqliteFile(tmp_path / "f.sqlite3", lambda db: None)
    async with file, anyio.create_task_group() as group:
        group.start_soon(file.read, slow)
        await anyio.sleep(0.05)
        await file.read(quick)
    assert finished == ["quick", "slow"]


def test_loose_permissions_of_an_existing_store_are_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "interactions.sqlite3").touch(mode=0o644)
    (folder / "interactions.sqlite3").chmod(0o644)

    async def open_it() -> None:
        async with EmbeddedStore(folder):
            pass

    anyio.run(open_it)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "interactions.sqlite3").stat().st_mode) == 0o600


def test_a_shared_folder_is_left_as_it_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "notes.txt").write_text("the user's own file")

    async def open_it() -> None:
        async with EmbeddedStore(tmp_path):
            pass

    anyio.run(open_it)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "interactions.sqlite3").stat().st_mode) == 0o600
    assert "is open to other users and holds other files" in caplog.text


async def test_rows_other_writers_left_stay_readable_and_deletable(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(publish("u", "fine"), wait_for_response=False)
    db = sqlite3.connect(tmp_path / "interactions.sqlite3")
    rows = [  # what an older version (or a hand edit) could leave behind
        (10**13, "[]", "year 318857"),
        (2**62, "not json", "far beyond any year"),
        (-5, '[{"tool_name": "t", "tool_data": {"x": 1}, "extra": true}]', "before 1970"),
    ]
    db.executemany(
        "INSERT INTO interactions (user_id, request_id, created_at, role, content, expert_content,"
        " user_action, user_action_description, interacted_image_url, image_encoding, tools_used)"
        " SELECT 'u', request_id, ?, 'User', ?, '', 'none', '', '', '', ? FROM publishes",
        [(created, content, tools) for created, tools, content in rows],
    )
    db.commit()
    db.close()
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        listed = await client.call_tool("get_interactions", {"user_id": "u"})
        found = await client.call_tool("search_interactions", {"user_id": "u", "query": "year"})
        assert not listed.is_error, text_of(listed)
        assert not found.is_error, text_of(found)
        content: dict[str, Any] = listed.structured_content or {}
        interactions: list[dict[str, Any]] = content["interactions"]
        times = {i["content"]: i["time"] for i in interactions}
        assert times["year 318857"] == times["far beyond any year"] == "9999-12-31T23:59:59Z"
        assert times["before 1970"] == "1970-01-01T00:00:00Z"
        for interaction in interactions:
            deleted = await client.call_tool(
                "delete_interaction",
                {"user_id": "u", "interaction_id": interaction["interaction_id"], "confirm": True},
            )
            assert not deleted.is_error, text_of(deleted)
        empty = await client.call_tool("get_interactions", {"user_id": "u"})
    assert (empty.structured_content or {})["count"] == 0


async def test_a_version_1_store_gains_cjk_search_when_opened(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "interactions.sqlite3", isolation_level=None)
    for statement in V2_SCHEMA:
        if "interactions_cjk" not in statement:
            db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO publishes VALUES ('r', 'u', 's', '', '', 0)")
    db.execute(
        "INSERT INTO interactions (user_id, request_id, created_at, role, content, expert_content,"
        " user_action, user_action_description, interacted_image_url, image_encoding, tools_used)"
        " VALUES ('u', 'r', 1, 'User', '東京で寿司を食べた', '', 'none', '', '', '', '[]')"
    )
    db.close()
    async with EmbeddedStore(tmp_path) as store:
        found = (
            await store.search_interactions(SearchRequest(user_id="u", query="寿司"))
        ).interactions
    assert [i.content for i in found] == ["東京で寿司を食べた"]
    db = sqlite3.connect(tmp_path / "interactions.sqlite3")
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def test_a_damaged_store_leaves_no_connection_open(tmp_path: Path) -> None:
    (tmp_path / "interactions.sqlite3").write_bytes(b"garbage" * 1000)
    before = open_descriptors()
    for _ in range(20):
        with pytest.raises(StoreCorrupt):
            async with EmbeddedStore(tmp_path):
                pass
    assert open_descriptors() <= before


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_opening_waits_while_another_process_holds_the_new_file(tmp_path: Path) -> None:
    """Two clients starting at once: the switch to WAL waits for the other, as writes do."""
    other = sqlite3.connect(tmp_path / "interactions.sqlite3", isolation_level=None)
    other.execute("CREATE TABLE placeholder (x)")
    other.execute("BEGIN IMMEDIATE")  # as another process does while it sets the file up

    async def release_soon() -> None:
        await anyio.sleep(0.3)
        other.execute("ROLLBACK")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(release_soon)
            async with EmbeddedStore(tmp_path, busy_seconds=10) as store:
                await store.publish(publish("u", "opened"), wait_for_response=False)
    finally:
        other.close()


async def test_a_schema_damaged_into_bytes_that_are_not_utf8_is_reported_damaged(
    tmp_path: Path,
) -> None:
    """SQLite quotes the damaged schema in its message, and Python cannot decode that message:
    found by tests/fuzz/test_doctor_fuzz.py, it used to crash start-up with a
    UnicodeDecodeError."""
    async with EmbeddedStore(tmp_path):
        pass
    path = tmp_path / "interactions.sqlite3"
    data = path.read_bytes()
    # The O of ON in an index's SQL, as sqlite_master keeps it.
    path.write_bytes(data.replace(b"interactions_by_time ON", b"interactions_by_time \x80N"))
    with pytest.raises(StoreCorrupt, match="is damaged or not a SQLite database"):
        async with EmbeddedStore(tmp_path):
            pass
