"""The real Claude Code CLI (npm @anthropic-ai/claude-code), for tests that check what we print
for it works in it.

It is installed once from the npm registry into the test cache (beside the Reflexio venv, see
tests/support/reflexio_server.py), under a file lock so two xdist workers never install at
once. Each run gets its own HOME (so its ~/.claude.json starts empty), no telemetry, and an
ANTHROPIC_BASE_URL on a free loopback port nothing listens on: nothing leaves the machine.
`ClaudeCode.prompt` runs `claude -p` against a Messages API stand-in
(tests/support/messages_api.py) instead, and `transcript` reads the session it wrote.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.support.messages_api import MessagesApi
from tests.support.reflexio_server import cache_dir, free_port

VERSION = "2.1.197"
INSTALL_SECONDS = 300
RUN_SECONDS = 120
MAX_SLUG = 200


def app_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the dev venv and our own settings, as an app the
    user starts passes its own to the servers it starts (proxy and CA settings kept)."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")
        and not key.startswith(("REFLEXIO_", "PYTEST_", "ANTHROPIC_", "CLAUDE"))
    }
    return {**kept, "UV_PYTHON_DOWNLOADS": "never", **extra}


def ensure_claude() -> Path:
    """The `claude` executable, installed on first use (seconds with npm's cache)."""
    prefix = cache_dir() / f"claude-code-{VERSION}"
    claude = prefix / "node_modules" / ".bin" / "claude"
    done = prefix / ".complete"
    if done.exists():
        return claude
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm (Node 18+) is needed to install the Claude Code CLI and is not on PATH")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / ".claude-code.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return claude
        shutil.rmtree(prefix, ignore_errors=True)
        installed = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
             f"@anthropic-ai/claude-code@{VERSION}"],
            capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False,
        )  # fmt: skip
        if installed.returncode != 0 or not claude.exists():
            pytest.fail(f"installing the Claude Code CLI failed:\n{installed.stderr[-3000:]}")
        done.touch()
    return claude


@dataclass
class ClaudeCode:
    """One user's Claude Code: its own HOME, run in `project`, `claude` first on PATH."""

    executable: Path
    home: Path
    project: Path

    def shell(self, line: str, **env: str) -> subprocess.CompletedProcess[str]:
        """A command line as a user pastes it into their shell."""
        return subprocess.run(
            ["/bin/sh", "-c", line],
            cwd=self.project,
            env={**self.environment(), **env},
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def prompt(
        self, text: str, *flags: str, api: MessagesApi, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`claude -p TEXT FLAGS...` answered by `api`. Tools need `--allowedTools NAME`
        (as root, --dangerously-skip-permissions is refused). MCP servers are waited for
        (MCP_CONNECTION_NONBLOCKING=false, up to MCP_CONNECT_TIMEOUT_MS): in -p mode they
        connect in the background and the first request would otherwise list none of their
        tools."""
        return subprocess.run(
            [str(self.executable), "-p", text, *flags],
            cwd=self.project,
            env={
                **self.environment(),
                "ANTHROPIC_BASE_URL": api.url,
                "MCP_CONNECTION_NONBLOCKING": "false",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    @property
    def sessions_folder(self) -> Path:
        """Where Claude Code keeps the transcripts of sessions run in `project`."""
        return self.home / ".claude" / "projects" / project_slug(self.project)

    def transcripts(self) -> list[Path]:
        """Every session's transcript (<sessionId>.jsonl) under HOME, any project, oldest
        first; subagents' files (<sessionId>/subagents/) are not among them."""
        found = (self.home / ".claude" / "projects").glob("*/*.jsonl")
        return sorted(found, key=lambda path: path.stat().st_mtime)

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        """The lines of session `session_id`'s transcript, parsed."""
        path = self.sessions_folder / f"{session_id}.jsonl"
        if not path.exists():
            written = [str(found) for found in self.transcripts()]
            raise FileNotFoundError(f"no transcript {path}; transcripts under HOME: {written}")
        return transcript_lines(path)

    def list_servers(self, **env: str) -> str:
        """`claude mcp list`: it starts (stdio) or connects to (HTTP) each server and prints
        "Connected" or "Failed to connect" for each."""
        listed = self.shell("claude mcp list", **env)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        return listed.stdout

    def environment(self) -> dict[str, str]:
        return {
            **app_environment(),
            "PATH": os.pathsep.join([str(self.executable.parent), os.environ.get("PATH", "")]),
            "HOME": str(self.home),
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # It gives a server 5 s to connect by default; uvx alone takes 3 s and more on a
            # busy machine (`claude mcp list` says "Failed to connect", -p starts without it).
            "MCP_CONNECT_TIMEOUT_MS": "60000",
            "ANTHROPIC_API_KEY": "sk-ant-test-offline",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        }


def project_slug(cwd: Path) -> str:
    """The folder under ~/.claude/projects for sessions run in `cwd`: each character other
    than a-z, A-Z, 0-9 becomes "-" (Claude Code 2.1.197)."""
    slug = re.sub(r"[^a-zA-Z0-9]", "-", str(cwd.resolve()))
    if len(slug) > MAX_SLUG:
        raise ValueError(
            f"project_slug: {cwd} makes a slug over {MAX_SLUG} characters, which Claude Code "
            "shortens with a hash this helper does not know; use a shorter project path"
        )
    return slug


def transcript_lines(path: Path) -> list[dict[str, Any]]:
    """A transcript's JSON lines, parsed (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [cast("dict[str, Any]", json.loads(line)) for line in lines if line.strip()]


def claude_code(workdir: Path) -> ClaudeCode:
    home = workdir / "claude-home"
    project = workdir / "claude-project"
    home.mkdir(parents=True, exist_ok=True)
    project.mkdir(parents=True, exist_ok=True)
    return ClaudeCode(ensure_claude(), home, project)
