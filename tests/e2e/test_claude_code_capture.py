"""The capture and recall hooks in the real Claude Code CLI (2.1.197, offline against the
Messages API stand-in), installed as the README says: the block `reflexio-mcp config
claude-code --hooks` prints, in ~/.claude/settings.json; the server added with the command
`reflexio-mcp config claude-code` prints. Each hook run is the real command Claude Code runs
(this checkout's installed reflexio-mcp), on the embedded store in the test's folder."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.capture.conversation import project_key
from reflexio_mcp.core.models import GetRequest, Interaction
from tests.support.claude_code import ClaudeCode, claude_code
from tests.support.messages_api import MessagesApi, tool_results

USER = "dev-ana"


def reflexio_mcp(
    *args: str, data: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", *args],
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(data.parent),
             "REFLEXIO_MCP_DATA_DIR": str(data), "REFLEXIO_USER_ID": USER},
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def claude(tmp_path: Path) -> ClaudeCode:
    """Claude Code with the hooks installed as the README says."""
    claude = claude_code(tmp_path)
    printed = reflexio_mcp("config", "claude-code", "--hooks", data=tmp_path / "data")
    assert printed.returncode == 0, printed.stderr
    settings = claude.home / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(printed.stdout)
    return claude


def add_server(claude: ClaudeCode, data: Path) -> dict[str, str]:
    """The server, added with the command `reflexio-mcp config claude-code` prints; the
    environment uvx needs (the CLI's throwaway HOME would give it an empty cache)."""
    server = reflexio_mcp("config", "claude-code", data=data)
    added = claude.shell(f"claude mcp add-json reflexio {shlex.quote(server.stdout)}")
    assert added.returncode == 0, added.stdout + added.stderr
    return uv_environment()


def uv_environment() -> dict[str, str]:
    cache = subprocess.run(
        ["uv", "cache", "dir"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    return {"UV_PYTHON": sys.executable, "UV_CACHE_DIR": cache}


async def stored(data: Path) -> list[Interaction]:
    async with EmbeddedStore(data) as store:
        return list(reversed(await store.get_interactions(GetRequest(user_id=USER, top_k=100))))


def session_of(claude: ClaudeCode, session: str) -> str:
    return f"claude-code:{project_key(str(claude.project.resolve()))}:{session}"


async def test_a_session_is_captured_once_and_again_nothing_twice(
    claude: ClaudeCode, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    with MessagesApi() as api:
        api.reply_text("We settled on PostgreSQL 16 for the orders service.")
        api.reply_text("pnpm, pinned in package.json.")
        first = claude.prompt("which database did we pick?", "--session-id", session, api=api)
        second = claude.prompt("and the package manager?", "--resume", session, api=api)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr

    turns = await stored(tmp_path / "data")
    assert [(t.role, t.content) for t in turns] == [
        ("user", "which database did we pick?"),
        ("assistant", "We settled on PostgreSQL 16 for the orders service."),
        ("user", "and the package manager?"),
        ("assistant", "pnpm, pinned in package.json."),
    ]
    assert {t.session_id for t in turns} == {session_of(claude, session)}

    transcript = claude.sessions_folder / f"{session}.jsonl"
    event = {
        "session_id": session,
        "transcript_path": str(transcript),
        "cwd": str(claude.project),
        "hook_event_name": "SessionEnd",
        "reason": "other",
    }
    again = reflexio_mcp("hook", "claude-code", data=tmp_path / "data", stdin=json.dumps(event))
    assert again.returncode == 0
    assert again.stdout == ""
    imported = reflexio_mcp(
        "import", str(claude.home / ".claude" / "projects"), data=tmp_path / "data"
    )
    assert imported.returncode == 0, imported.stderr
    assert "0 turn(s) stored, 4 already stored" in imported.stdout
    assert len(await stored(tmp_path / "data")) == 4

    fresh = tmp_path / "imported"  # the real transcript, imported into a store of its own
    into_fresh = reflexio_mcp("import", str(claude.home / ".claude" / "projects"), data=fresh)
    assert "1 session(s): 4 turn(s) stored, 0 already stored, 0 skipped" in into_fresh.stdout
    assert [(t.role, t.content, t.session_id, t.request_id) for t in await stored(fresh)] == [
        (t.role, t.content, t.session_id, t.request_id) for t in turns
    ]


async def test_a_new_session_starts_knowing_an_earlier_one_and_searches_it(
    claude: ClaudeCode, tmp_path: Path
) -> None:
    with MessagesApi() as api:
        api.reply_text("Noted: deploys go out on Thursdays only.")
        earlier = claude.prompt("remember: we deploy on Thursdays", api=api)
    assert earlier.returncode == 0, earlier.stderr

    uv = add_server(claude, tmp_path / "data")
    with MessagesApi() as api:
        api.reply_tool_use("mcp__reflexio__search_interactions", {"query": "deploy Thursdays"})
        api.reply_text("You deploy on Thursdays.")
        later = claude.prompt(
            "when do we deploy?", "--allowedTools", "mcp__reflexio__search_interactions",
            api=api, **uv,
        )  # fmt: skip
        requests = api.requests
    assert later.returncode == 0, later.stderr
    assert later.stdout.strip() == "You deploy on Thursdays."

    context = json.dumps(requests[0]["messages"])
    assert "SessionStart hook additional context" in context
    assert "Noted: deploys go out on Thursdays only." in context  # a turn of the earlier session
    [result] = tool_results(requests[1])
    assert "deploys go out on Thursdays" in json.dumps(result["content"])
    assert result.get("is_error") is not True


def test_the_checkout_installs_as_a_plugin_that_captures_and_serves(tmp_path: Path) -> None:
    claude = claude_code(tmp_path)
    checkout = Path(__file__).resolve().parents[2]
    for step in (f"claude plugin marketplace add {shlex.quote(str(checkout))}",
                 "claude plugin install reflexio-mcp@reflexio-mcp"):  # fmt: skip
        done = claude.shell(step)
        assert done.returncode == 0, done.stdout + done.stderr
    env = {
        **uv_environment(),
        "REFLEXIO_USER_ID": USER,
        "REFLEXIO_MCP_DATA_DIR": str(tmp_path / "data"),
    }
    assert "plugin:reflexio-mcp:reflexio: " in (listed := claude.list_servers(**env))
    assert "✔ Connected" in listed, listed
    with MessagesApi() as api:
        api.reply_text("The staging database is on port 5433.")
        run = claude.prompt("which port is staging on?", api=api, **env)
    assert run.returncode == 0, run.stderr
    turns = anyio.run(stored, tmp_path / "data")
    assert [(t.role, t.content) for t in turns] == [
        ("user", "which port is staging on?"),
        ("assistant", "The staging database is on port 5433."),
    ]
