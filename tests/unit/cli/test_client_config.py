"""`reflexio-mcp config <client>`: every client's document parses and says what that client
reads. (tests/test_distribution.py launches a printed config through a real MCP client.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reflexio_mcp.cli.config import CLIENTS
from tests.support.claude_code import claude_code
from tests.support.mcp_http import http_bridge

TOKEN = "T" * 40


def config(*args: str, path: str = "", **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", "config", *args],
        env={"PATH": path, "HOME": os.environ.get("HOME", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "rk-secret-key" not in done.stdout + done.stderr
    assert "pw-7f3e9d" not in done.stdout + done.stderr
    return json.loads(done.stdout)


def entry_of(client: str, document: dict[str, Any]) -> dict[str, Any]:
    if client == "claude-code":
        return document  # the entry `claude mcp add-json` takes, not a whole .mcp.json
    servers = document["servers"] if client == "vscode" else document["mcpServers"]
    assert list(servers) == ["reflexio"]
    return servers["reflexio"]


@pytest.fixture
def uvx_dir(tmp_path: Path) -> Path:
    """A PATH folder holding an executable named uvx."""
    uvx = tmp_path / "uvx"
    uvx.write_text("#!/bin/sh\n")
    uvx.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("client", CLIENTS)
def test_stdio_names_uvx_by_absolute_path_and_passes_settings(client: str, uvx_dir: Path) -> None:
    entry = entry_of(
        client,
        config(
            client,
            path=str(uvx_dir),
            REFLEXIO_URL="http://127.0.0.1:8081",
            REFLEXIO_USER_ID="ana",
            REFLEXIO_API_KEY="rk-secret-key",
            REFLEXIO_MCP_DATA_DIR="relative/memories",
            REFLEXIO_MCP_READ_ONLY="1",
        ),
    )
    assert entry["command"] == str(uvx_dir / "uvx")
    assert entry["args"][-1] == "reflexio-mcp"
    if entry["args"][0] == "--from":  # this checkout (an editable install) or a wheel
        assert Path(entry["args"][1]).is_absolute()
        assert Path(entry["args"][1]).exists()
    assert entry["env"] == {
        "REFLEXIO_URL": "http://127.0.0.1:8081",
        "REFLEXIO_USER_ID": "ana",
        "REFLEXIO_MCP_DATA_DIR": str(Path.cwd() / "relative/memories"),
        "REFLEXIO_MCP_READ_ONLY": "true",
        "REFLEXIO_API_KEY": "<your Reflexio API key>",
    }
    if client in ("claude-code", "vscode"):
        assert entry["type"] == "stdio"


def test_a_url_password_is_left_as_a_placeholder(uvx_dir: Path) -> None:
    entry = entry_of(
        "cursor",
        config("cursor", path=str(uvx_dir), REFLEXIO_URL="https://ana:pw-7f3e9d@proxy.example"),
    )
    assert entry["env"]["REFLEXIO_URL"] == "https://ana:<password>@proxy.example"


def test_a_url_without_a_password_is_passed_as_given(uvx_dir: Path) -> None:
    url = "http://127.0.0.1:8081/reflexio@v1"  # a port's colon and an @ in the path
    entry = entry_of("cursor", config("cursor", path=str(uvx_dir), REFLEXIO_URL=url))
    assert entry["env"]["REFLEXIO_URL"] == url


def test_without_uvx_on_path_it_says_how_to_get_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", "config", "cursor"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["mcpServers"]["reflexio"]["command"] == "uvx"
    assert "uvx is not on PATH: install uv" in done.stderr


@pytest.mark.parametrize("client", CLIENTS)
def test_http_gives_the_url_and_a_header_that_references_the_token(client: str) -> None:
    document = config(
        client,
        "--http",
        REFLEXIO_MCP_TRANSPORT="streamable-http",
        REFLEXIO_MCP_PORT="8123",
        REFLEXIO_MCP_ACCESS_TOKEN=TOKEN,
    )
    entry = entry_of(client, document)
    url = "http://127.0.0.1:8123/mcp"
    if client == "claude-desktop":
        assert entry["args"][:3] == ["-y", "mcp-remote", url]
        assert entry["args"][3:] == ["--header", "Authorization:${AUTH_HEADER}"]
        assert entry["env"] == {"AUTH_HEADER": "Bearer <the access token>"}
        return
    assert entry["serverUrl" if client == "windsurf" else "url"] == url
    header = entry["headers"]["Authorization"]
    expected = {
        "claude-code": "Bearer ${REFLEXIO_MCP_ACCESS_TOKEN}",
        "cursor": "Bearer ${env:REFLEXIO_MCP_ACCESS_TOKEN}",
        "windsurf": "Bearer ${env:REFLEXIO_MCP_ACCESS_TOKEN}",
        "vscode": "Bearer ${input:reflexio-token}",
    }
    assert header == expected[client]
    if client == "vscode":
        [prompt] = document["inputs"]
        assert prompt["id"] == "reflexio-token"
        assert prompt["password"] is True
    if client in ("claude-code", "vscode"):
        assert entry["type"] == "http"


def test_http_without_a_token_sends_no_header_and_sse_says_so() -> None:
    entry = entry_of(
        "claude-code",
        config("claude-code", "--http", REFLEXIO_MCP_TRANSPORT="sse", REFLEXIO_MCP_PORT="8124"),
    )
    assert entry == {"type": "sse", "url": "http://127.0.0.1:8124/sse"}


def test_a_public_url_is_what_clients_are_given() -> None:
    entry = entry_of(
        "cursor",
        config(
            "cursor",
            "--http",
            REFLEXIO_MCP_TRANSPORT="streamable-http",
            REFLEXIO_MCP_HOST="0.0.0.0",
            REFLEXIO_MCP_PUBLIC_URL="https://memory.example.com/",
            REFLEXIO_MCP_ACCESS_TOKEN=TOKEN,
        ),
    )
    assert entry["url"] == "https://memory.example.com/mcp"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["config"], "config needs a client"),
        (["config", "emacs"], "invalid choice: 'emacs'"),
        (["doctor", "cursor"], "'cursor' goes with `config`"),
        (["--http"], "--http goes with `config`"),
        (["--json"], "--json goes with `doctor`"),
    ],
)
def test_misused_arguments_exit_2_saying_why(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert message in done.stderr


# -- Claude Code: what is printed works in the real CLI --------------------------------------


def printed(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", "config", *args],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def ready_command(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of stderr that is the command to paste."""
    [line] = [line for line in done.stderr.splitlines() if line.startswith("claude mcp add")]
    return line


def test_claude_code_gets_the_entry_and_a_ready_command_that_connects(tmp_path: Path) -> None:
    done = printed("claude-code", REFLEXIO_MCP_DATA_DIR=str(tmp_path / "data"))
    entry = json.loads(done.stdout)
    assert entry["type"] == "stdio"  # the entry itself: what `claude mcp add-json` takes
    command = ready_command(done)
    assert command.startswith("claude mcp add-json reflexio '")
    claude = claude_code(tmp_path)
    added = claude.shell(command)
    assert added.returncode == 0, added.stdout + added.stderr
    uv_cache = subprocess.run(
        ["uv", "cache", "dir"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()  # the CLI's throwaway HOME would give uvx an empty cache
    listed = claude.list_servers(UV_PYTHON=sys.executable, UV_CACHE_DIR=uv_cache)
    assert "reflexio: " in listed
    assert "✔ Connected" in listed, listed
    also = claude.shell(
        f'claude mcp add-json again "$({sys.executable} -m reflexio_mcp config claude-code)"'
    )
    assert also.returncode == 0, also.stdout + also.stderr  # stdout alone is the entry too


@pytest.mark.parametrize("transport", [None, "streamable-http"])
def test_claude_code_http_entry_connects_to_a_running_server(
    tmp_path: Path, transport: str | None
) -> None:
    with http_bridge(tmp_path, env={"REFLEXIO_MCP_ACCESS_TOKEN": TOKEN}) as bridge:
        port = bridge.base_url.rsplit(":", 1)[1]
        flags = ["--transport", transport] if transport else []
        done = printed(
            "claude-code", "--http", "--port", port, *flags, REFLEXIO_MCP_ACCESS_TOKEN=TOKEN
        )
        assert json.loads(done.stdout)["url"] == bridge.endpoint
        lines = done.stderr.splitlines()
        assert len(lines) == len(set(lines)), done.stderr  # no hint twice
        assert TOKEN not in done.stdout + done.stderr
        claude = claude_code(tmp_path)
        added = claude.shell(ready_command(done))
        assert added.returncode == 0, added.stdout + added.stderr
        listed = claude.list_servers(REFLEXIO_MCP_ACCESS_TOKEN=TOKEN)
    assert f"reflexio: {bridge.endpoint} (HTTP) - ✔ Connected" in listed, listed


def test_vscode_gets_its_add_mcp_command_when_the_entry_needs_no_input(uvx_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", "config", "vscode"],
        env={"PATH": str(uvx_dir), "REFLEXIO_USER_ID": "o'brien"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("code --add-mcp ")]
    [_, _, argument] = shlex.split(line)
    entry = entry_of("vscode", json.loads(done.stdout))
    assert json.loads(argument) == {"name": "reflexio", **entry}
    with_input = printed("vscode", "--http", REFLEXIO_MCP_ACCESS_TOKEN=TOKEN)
    assert "code --add-mcp" not in with_input.stderr  # its token input needs the file
