"""The command as a user types it: a misspelled flag or variable is named with the real one,
a closed pipe is not a traceback, and a terminal on stdin is told what the command is for."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexio_mcp.settings import ENVIRONMENT
from reflexio_mcp.settings.unknown_variables import (
    OURS,
    REFLEXIO_OWN,
    TEST_ONLY,
    nearest,
    unknown_variables,
)

COMMAND = [sys.executable, "-m", "reflexio_mcp"]


def run(
    *args: str, env: dict[str, str], stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=stdin,
    )


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("REFLEXIO_MCP_READONLY", "REFLEXIO_MCP_READ_ONLY"),
        ("REFLEXIO_ULR", "REFLEXIO_URL"),
        ("REFLEXIO_USERID", "REFLEXIO_USER_ID"),
        ("REFLEXIO_MCP_TIMEOUT", "REFLEXIO_TIMEOUT"),
    ],
)
def test_a_misspelled_variable_is_named_at_start_up(
    tmp_path: Path, variable: str, meant: str
) -> None:
    done = run(env={"REFLEXIO_MCP_DATA_DIR": str(tmp_path), variable: "1"})  # stdin at EOF: exits
    assert f"{variable} is ignored: no such variable; did you mean {meant}?" in done.stderr, (
        done.stderr
    )


def test_variables_reflexio_itself_reads_are_not_flagged(tmp_path: Path) -> None:
    done = run(
        env={
            "REFLEXIO_MCP_DATA_DIR": str(tmp_path),
            "REFLEXIO_EMBEDDING_PROVIDER": "openai",
            "REFLEXIO_TEST_PYTHON": sys.executable,
            "REFLEXIO_ROW_LIMIT_INTERACTIONS": "10",
        }
    )
    assert "is ignored" not in done.stderr, done.stderr


@pytest.mark.parametrize("real", sorted(OURS))
def test_our_names_without_underscores_or_with_mcp_lead_back_to_them(real: str) -> None:
    body = real.removeprefix("REFLEXIO_")
    squeezed = "REFLEXIO_" + body.replace("_", "")
    assert nearest(squeezed) == real or squeezed == real
    if not body.startswith("MCP_"):
        assert nearest(f"REFLEXIO_MCP_{body}") == real


@settings(max_examples=500, deadline=None)
@given(names=st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", max_size=30)))
def test_only_names_nothing_reads_are_flagged_each_with_a_real_nearest(names: list[str]) -> None:
    environ = {f"REFLEXIO_{name}": "1" for name in names}
    environ.update(dict.fromkeys(ENVIRONMENT.values(), "1"))
    for unknown in unknown_variables(environ):
        assert unknown.name not in OURS | REFLEXIO_OWN | TEST_ONLY
        assert unknown.nearest is None or unknown.nearest in OURS | REFLEXIO_OWN
        assert unknown.name in unknown.describe()


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (["--data_dir", "/tmp/x"], "--data-dir"),
        (["--data_dir=/tmp/x"], "--data-dir"),
        (["doctor", "--readonly"], "--read-only"),
        (["--user_id", "ana", "config", "cursor"], "--user-id"),
        (["--trasport", "sse"], "--transport"),
    ],
)
def test_an_unknown_flag_is_named_with_the_real_one(
    tmp_path: Path, typed: list[str], meant: str
) -> None:
    done = run(*typed, env={"REFLEXIO_MCP_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    flag = typed[0] if typed[0].startswith("--") else typed[1]
    assert f"unknown flag {flag.split('=')[0]}: did you mean {meant}?" in done.stderr, done.stderr
    assert "invalid choice" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("args", [["doctor", "--json"], ["doctor"], ["config", "vscode"]])
def test_a_reader_that_stops_reading_gets_no_traceback(tmp_path: Path, args: list[str]) -> None:
    """`reflexio-mcp doctor --json | head`: the pipe is closed before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*COMMAND, *args],
            env={"PATH": os.environ.get("PATH", ""), "REFLEXIO_MCP_DATA_DIR": str(tmp_path)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_a_terminal_on_stdin_is_told_what_the_command_is_for(tmp_path: Path) -> None:
    main, terminal = pty.openpty()
    try:
        os.write(main, b"\x04")  # Ctrl-D: the server reads end of input and exits
        done = subprocess.run(
            COMMAND,
            env={"PATH": os.environ.get("PATH", ""), "REFLEXIO_MCP_DATA_DIR": str(tmp_path)},
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(main)
    [line] = [line for line in done.stderr.splitlines() if "for MCP clients" in line]
    assert "reflexio-mcp demo" in line
    assert "reflexio-mcp config" in line


def test_a_pipe_on_stdin_is_not_told_so(tmp_path: Path) -> None:
    done = run(env={"REFLEXIO_MCP_DATA_DIR": str(tmp_path)})
    assert "for MCP clients" not in done.stderr
