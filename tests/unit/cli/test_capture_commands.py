"""`reflexio-mcp import` and `reflexio-mcp hook claude-code` as commands, on the embedded store:
what they print, how they exit, and that a hook never fails the session."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.capture.conversation import Tally
from reflexio_mcp.capture.meter import Meter
from reflexio_mcp.core.models import GetRequest, Interaction
from tests.support.transcripts import Transcript, exchange

USER = "dev-ana"
AWS_ID = (
    "AKIA" + "J7QX2V9ZB3LKTM4P"
)  # an AWS access key id's shape, split so no scanner flags this file


def run(*args: str, data: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", *args],
        env={"PATH": os.environ["PATH"], "HOME": str(data.parent),
             "REFLEXIO_MCP_DATA_DIR": str(data), "REFLEXIO_USER_ID": USER, **env},
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def stored(data: Path, user: str = USER) -> list[Interaction]:
    async def read() -> list[Interaction]:
        async with EmbeddedStore(data) as store:
            return await store.get_interactions(GetRequest(user_id=user, top_k=1000))

    return list(reversed(anyio.run(read)))


def hook_event(transcript: Path, event: str, **extra: str) -> str:
    return json.dumps(
        {"session_id": transcript.stem, "transcript_path": str(transcript),
         "cwd": "/home/dev/projects/shop", "hook_event_name": event, **extra}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import"], "import needs the files or folders to import"),
        (["import", "/no/such/folder"], "no such file or folder: /no/such/folder"),
        (["hook"], "hook takes the agent whose hook it is: claude-code"),
        (["hook", "codex"], "hook takes the agent whose hook it is: claude-code"),
        (["doctor", "/tmp"], "'/tmp' goes with `config`"),
        (["config", "cursor", "--hooks"], "--hooks goes with `config claude-code`"),
    ],
)
def test_misused_capture_commands_exit_2_saying_why(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run(*args, data=tmp_path / "data")
    assert done.returncode == 2
    assert message in done.stderr


def test_import_writes_nothing_on_a_read_only_server(tmp_path: Path) -> None:
    path = exchange(Transcript(), "a", "1").write(tmp_path / "sessions")
    done = run("import", str(path), data=tmp_path / "data", REFLEXIO_MCP_READ_ONLY="1")
    assert done.returncode == 2
    assert "--read-only" in done.stderr


def test_import_says_what_it_stored_skipped_and_redacted(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    exchange(exchange(Transcript(), "our AWS key is " + AWS_ID, "Rotate it."), "b", "2").write(
        sessions
    )
    damaged = exchange(Transcript(), "c", "3").write(sessions)
    damaged.write_text(damaged.read_text() + "{oops\n")
    (sessions / "notes.json").write_text('{"title": "not a transcript"}')
    done = run("import", str(sessions), data=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "imported 2 file(s), 2 session(s): 6 turn(s) stored, 0 already stored, 2 skipped"
    )
    assert "1 secret(s) replaced by [REDACTED:...] markers" in done.stdout
    assert f"{damaged}:" in done.stdout
    assert "import: 3/3 files" not in done.stderr  # a count line every 5 s, not per file
    contents = [t.content for t in stored(tmp_path / "data")]
    assert AWS_ID not in " ".join(contents)
    assert "our AWS key is [REDACTED:aws-access-key]" in contents
    again = run("import", str(sessions), str(damaged), data=tmp_path / "data")
    assert "0 turn(s) stored, 6 already stored" in again.stdout
    assert len(stored(tmp_path / "data")) == 6


def test_the_meter_draws_a_bar_on_a_terminal_and_counts_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        meter = Meter(stream)
        meter.start(2)
        meter.advance(Tally(stored=4))
        meter.advance(Tally(stored=8))
        meter.finish(Tally(stored=8))
    assert terminal.getvalue().endswith(
        "██████████████████████████████ 2/2 files, 8 turns stored, 0 already stored\x1b[K\n"
    )
    assert log.getvalue() == ""  # nothing to say before LINE_SECONDS have passed


def test_the_stop_hook_publishes_what_is_new_and_prints_nothing(tmp_path: Path) -> None:
    transcript = exchange(Transcript(), "first", "one")
    path = transcript.write(tmp_path / "sessions")
    data = tmp_path / "data"
    done = run(
        "hook",
        "claude-code",
        data=data,
        stdin=hook_event(path, "Stop", last_assistant_message="one"),
    )
    assert (done.returncode, done.stdout) == (0, "")
    exchange(transcript, "second", "two").write(tmp_path / "sessions")  # the same lines, and more
    run(
        "hook",
        "claude-code",
        data=data,
        stdin=hook_event(path, "Stop", last_assistant_message="two"),
    )
    run("hook", "claude-code", data=data, stdin=hook_event(path, "SessionEnd"))
    assert [t.content for t in stored(data)] == ["first", "one", "second", "two"]
    log = (data / "hook.log").read_text()
    assert "Stop: 2 turn(s) stored, 0 already stored" in log
    assert "SessionEnd: 0 turn(s) stored, 4 already stored" in log


def test_the_session_start_hook_recalls_this_project_first_within_its_budget(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    here = exchange(Transcript(), "we use pnpm here", "Noted: pnpm.")
    elsewhere = exchange(Transcript(cwd="/home/dev/projects/blog"), "hugo builds the blog", "Yes.")
    for transcript in (here, elsewhere):
        path = transcript.write(tmp_path / "sessions")
        run("hook", "claude-code", data=data, stdin=hook_event(path, "SessionEnd"))
    new = tmp_path / "sessions" / "new-session.jsonl"
    done = run(
        "hook", "claude-code", data=data, stdin=hook_event(new, "SessionStart", source="startup")
    )
    assert done.returncode == 0
    output = json.loads(done.stdout)
    context = output["hookSpecificOutput"]["additionalContext"]
    assert output["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert "we use pnpm here" in context
    assert "hugo" not in context  # another project's session
    assert len(context) <= 2000

    question = hook_event(new, "UserPromptSubmit", prompt="how is the blog built? hugo?")
    asked = run("hook", "claude-code", data=data, stdin=question)
    assert (
        "hugo builds the blog"
        in json.loads(asked.stdout)["hookSpecificOutput"]["additionalContext"]
    )


def test_recall_shows_only_the_callers_turns_and_no_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    mine = exchange(Transcript(), "the deploy key is " + AWS_ID, "Stored.")
    path = mine.write(tmp_path / "sessions")
    run(
        "hook",
        "claude-code",
        data=data,
        stdin=hook_event(path, "SessionEnd"),
        REFLEXIO_MCP_KEEP_SECRETS="1",
    )
    theirs = exchange(Transcript(), "ben's private note", "ok").write(tmp_path / "ben")
    run(
        "hook",
        "claude-code",
        data=data,
        stdin=hook_event(theirs, "SessionEnd"),
        REFLEXIO_USER_ID="ben",
    )
    done = run(
        "hook", "claude-code", data=data, stdin=hook_event(tmp_path / "x.jsonl", "SessionStart")
    )
    context = json.loads(done.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "the deploy key is [REDACTED:aws-access-key]" in context  # kept as sent, never shown
    assert AWS_ID not in context
    assert "ben" not in context


BAD_INPUTS = [
    "not json",
    "[1, 2]",
    '{"hook_event_name": "Stop"}',
    '{"hook_event_name": "Stop", "transcript_path": "/etc/passwd"}',
    '{"hook_event_name": "Stop", "transcript_path": "/etc/../etc/.jsonl"}',
    '{"hook_event_name": "SessionStart", "cwd": "$(touch /tmp/pwned); `id`"}',
    "x" * (2**20 + 10),
]


def test_a_hook_never_fails_the_session_and_says_why_in_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for stdin in BAD_INPUTS:
        done = run("hook", "claude-code", data=data, stdin=stdin)
        assert (done.returncode, done.stdout) == (0, ""), stdin[:80]
    log = (data / "hook.log").read_text()
    assert "the hook input is not JSON" in log
    assert "the hook input is larger than 1048576 bytes" in log
    assert "transcript_path: missing, or not a .jsonl file" in log
    assert not Path("/tmp/pwned").exists()
    doctor = run("doctor", data=data)
    assert "WARN  capture hooks: 5 of the last 7 hook runs failed" in doctor.stdout, doctor.stdout


def test_a_hook_with_broken_settings_exits_0(tmp_path: Path) -> None:
    done = run("hook", "claude-code", data=tmp_path / "data", stdin="{}", REFLEXIO_TIMEOUT="soon")
    assert (done.returncode, done.stdout) == (0, "")
    assert "REFLEXIO_TIMEOUT" in done.stderr
