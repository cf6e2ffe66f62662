"""`reflexio-mcp import` (the real CLI, in a subprocess, on the embedded store) killed with
SIGKILL midway and run again, and run over folders that overlap: every exchange the
transcripts hold is stored exactly once, and the summary counts the rest as already stored."""

from __future__ import annotations

import copy
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

from reflexio_mcp.backends.embedded.schema import FILE_NAME
from tests.support.transcripts import Transcript, exchange

USER = "dev-ana"
SESSIONS = 200
KILL_AFTER_TURNS = 100
SUMMARY = re.compile(r"(?P<stored>[\d,]+) turn\(s\) stored, (?P<already>[\d,]+) already stored")

Turn = tuple[str, str]
"""(role, content) as the store keeps it."""


def environment(data: Path) -> dict[str, str]:
    return {"PATH": str(Path(sys.executable).parent), "HOME": str(data.parent),
            "REFLEXIO_MCP_DATA_DIR": str(data), "REFLEXIO_USER_ID": USER}  # fmt: skip


def import_command(*folders: Path) -> list[str]:
    return [sys.executable, "-m", "reflexio_mcp", "import", *map(str, folders)]


def imported(*folders: Path, data: Path) -> tuple[int, int]:
    """Run an import to its end: the turns it stored and those it found already stored."""
    done = subprocess.run(
        import_command(*folders), env=environment(data), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    found = SUMMARY.search(done.stdout)
    assert found is not None, done.stdout
    return int(found["stored"].replace(",", "")), int(found["already"].replace(",", ""))


def with_exchanges(transcript: Transcript, name: str, count: int) -> list[Turn]:
    """`count` exchanges appended, a tool call in every third; the turns they should store."""
    turns: list[Turn] = []
    for n in range(count):
        prompt, answer = f"{name} question {n}: which port?", f"{name} answer {n}: port {n}."
        if n % 3 == 2:
            transcript.queue(prompt).prompt(prompt).attachment()
            transcript.tool("Bash", {"command": f"grep -n port {name}.conf"}, f"{n}: port")
            transcript.text(answer).last_prompt()
        else:
            exchange(transcript, prompt, answer)
        turns += [("user", prompt), ("assistant", answer)]
    return turns


def store_counts(data: Path) -> tuple[list[Turn], dict[str, int]]:
    """Every turn stored (one entry per row), and how many turns each request_id holds."""
    path = data / FILE_NAME
    if not path.exists():
        return [], {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        turns = [(role, content) for role, content in db.execute(
            "SELECT role, content FROM interactions ORDER BY interaction_id")]  # fmt: skip
        per_request = dict(
            db.execute("SELECT request_id, count(*) FROM interactions GROUP BY request_id")
        )
    return turns, per_request


def stored_turns(data: Path) -> int:
    try:
        return len(store_counts(data)[0])
    except sqlite3.OperationalError:  # the file is being created
        return 0


def assert_each_once(data: Path, expected: list[Turn]) -> None:
    turns, per_request = store_counts(data)
    assert len(turns) == len(set(turns)), "a turn stored twice"
    assert sorted(turns) == sorted(expected)
    assert set(per_request.values()) == {2}, "each exchange: its prompt and its answer"
    assert len(per_request) == len(expected) // 2


def test_an_import_killed_midway_and_run_again_stores_every_exchange_once(
    tmp_path: Path,
) -> None:
    folder, data = tmp_path / "projects" / "-home-dev-projects-shop", tmp_path / "data"
    expected: list[Turn] = []
    for n in range(SESSIONS):
        transcript = Transcript()
        expected += with_exchanges(transcript, f"s{n}", 3 + n % 4)
        transcript.write(folder)

    process = subprocess.Popen(
        import_command(tmp_path / "projects"), env=environment(data),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while stored_turns(data) < KILL_AFTER_TURNS:
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "no turns stored within 60 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    before = stored_turns(data)
    assert KILL_AFTER_TURNS <= before < len(expected), "killed midway"

    stored, already = imported(tmp_path / "projects", data=data)

    assert (stored, already) == (len(expected) - before, before)
    assert_each_once(data, expected)


def test_overlapping_folders_and_a_resumed_session_store_nothing_twice(tmp_path: Path) -> None:
    first, second, data = tmp_path / "first", tmp_path / "second", tmp_path / "data"
    original = Transcript()
    expected = with_exchanges(original, "original", 4)
    copied = original.write(first)
    second.mkdir()
    shutil.copy(copied, second / copied.name)
    # A session resumed into a file of its own: the earlier lines copied, under its own id.
    resumed = Transcript(session=str(uuid.uuid4()))
    resumed.lines = [
        {**copy.deepcopy(line), "sessionId": resumed.session} for line in original.lines
    ]
    expected += with_exchanges(resumed, "resumed", 2)
    resumed.write(second)
    other = Transcript()
    expected += with_exchanges(other, "other", 3)
    other.write(first)

    stored, already = imported(first, second, data=data)
    again = imported(second, first, data=data)

    copies_of_original = 2 * 4 * 2  # its copy in `second` and the resumed file's earlier lines
    assert (stored, already) == (len(expected), copies_of_original)
    assert again == (0, len(expected) + copies_of_original)
    assert_each_once(data, expected)
