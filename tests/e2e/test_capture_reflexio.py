"""`reflexio-mcp import` and `reflexio-mcp hook claude-code` as processes, on the real Reflexio
server: every turn stored once under its session, nothing twice on a second run, a hook that
never fails the session (Reflexio down, hostile input), and what a session starts knowing.
What Reflexio holds is read through its own HTTP API, not through reflexio-mcp."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reflexio_mcp.capture.conversation import project_key
from tests.support.reflexio_direct import (
    StoredTurn,
    publish_directly,
    stored_turns,
    waiting_in_outbox,
)
from tests.support.reflexio_server import RunningServer, kill9, restart
from tests.support.transcripts import Transcript, exchange
from tests.unit.secrets.test_secret_redaction import AWS_ID, GITHUB

QUICK_SECONDS = 6.0
"""Well under the 15 s Claude Code gives the hooks `config claude-code --hooks` installs (the
hook's own budget is 10 s); a hook run takes 0.5-2 s here."""
BUDGET_CHARS = 2000
AN_HOUR_AGO = time.time() - 3600
"""An mtime old enough that import takes a transcript's last exchange as finished."""


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def reflexio_mcp(*args: str, data: Path, url: str, user: str, stdin: bytes = b"") -> Ran:
    """`python -m reflexio_mcp ARGS` as Claude Code or a user runs it, timed."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data.parent),
        "REFLEXIO_URL": url,
        "REFLEXIO_USER_ID": user,
        "REFLEXIO_MCP_DATA_DIR": str(data),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", *args],
        input=stdin, env=env, capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    return Ran(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        time.monotonic() - started,
    )


def hook(event: dict[str, Any] | bytes, *, data: Path, url: str, user: str) -> Ran:
    stdin = event if isinstance(event, bytes) else json.dumps(event).encode()
    return reflexio_mcp("hook", "claude-code", data=data, url=url, user=user, stdin=stdin)


def stop(transcript: Transcript, path: Path) -> dict[str, Any]:
    """The Stop event Claude Code sends once the answer (the transcript's last text) is written."""
    answer = next(
        block["text"]
        for line in reversed(transcript.lines)
        if line.get("type") == "assistant"
        for block in line["message"]["content"]
        if block["type"] == "text"
    )
    return {
        "session_id": transcript.session, "transcript_path": str(path), "cwd": transcript.cwd,
        "permission_mode": "default", "hook_event_name": "Stop", "stop_hook_active": False,
        "last_assistant_message": answer,
    }  # fmt: skip


def session_end(transcript: Transcript, path: Path) -> dict[str, Any]:
    return {
        "session_id": transcript.session, "transcript_path": str(path), "cwd": transcript.cwd,
        "hook_event_name": "SessionEnd", "reason": "other",
    }  # fmt: skip


def session_start(cwd: str) -> dict[str, Any]:
    session = str(uuid.uuid4())
    return {
        "session_id": session, "transcript_path": f"/nowhere/{session}.jsonl", "cwd": cwd,
        "hook_event_name": "SessionStart", "source": "startup",
    }  # fmt: skip


def session_of(transcript: Transcript) -> str:
    return f"claude-code:{project_key(transcript.cwd)}:{transcript.session}"


def said(turns: list[StoredTurn]) -> list[tuple[str, str, str]]:
    return [(t.session_id, t.role, t.content) for t in turns]


def log_lines(data: Path) -> list[str]:
    log = data / "hook.log"
    return log.read_text(errors="replace").splitlines() if log.exists() else []


def context_of(ran: Ran, event: str = "SessionStart") -> str:
    assert ran.returncode == 0, ran.stderr
    output = json.loads(ran.stdout)
    assert set(output) == {"hookSpecificOutput"}
    assert output["hookSpecificOutput"]["hookEventName"] == event
    context = output["hookSpecificOutput"]["additionalContext"]
    assert isinstance(context, str)
    return context


def aged(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


def appended(transcript: Transcript, path: Path, prompt: str, answer: str) -> None:
    """One more exchange, written at the end of the transcript file as Claude Code does."""
    before = len(transcript.lines)
    exchange(transcript, prompt, answer)
    transcript.append_to(path, transcript.lines[before:])


# -- a. import ------------------------------------------------------------------------------


def import_folder(tmp_path: Path, other_user: str) -> tuple[Path, list[tuple[str, str, str]]]:
    """Two Claude Code transcripts, a JSON Lines payload file (one payload naming
    `other_user`) and an indented JSON array file; and the turns the import's user should hold."""
    folder = tmp_path / "to-import"
    project = "/home/dev/projects/shop"
    first = exchange(Transcript(cwd=project), "which database did we pick?", "PostgreSQL 16.")
    exchange(first, "and the queue?", "RabbitMQ, behind the orders service.")
    second = Transcript(cwd=project).queue("run the tests").prompt("run the tests")
    second.tool("Bash", {"command": "pytest -q"}, "3 passed").text("All 3 tests pass.")
    second.last_prompt()
    slug = folder / "claude" / "-home-dev-projects-shop"
    payloads = folder / "reflexio" / "payloads.jsonl"
    payloads.parent.mkdir(parents=True)
    payloads.write_text(
        json.dumps({
            "user_id": "", "session_id": "cli-support-1", "source": "support-bot",
            "agent_version": "bot-2", "interactions": [
                {"role": "user", "content": "my invoice is wrong"},
                {"role": "assistant", "content": "I reissued invoice 1042."},
            ],
        }) + "\n\n"
        + json.dumps({
            "user_id": other_user, "session_id": "cli-other", "source": "support-bot",
            "agent_version": "bot-2",
            "interactions": [{"role": "user", "content": "the other user's question"}],
        }) + "\n"
    )  # fmt: skip
    array = folder / "reflexio" / "batch.json"
    array.write_text(
        json.dumps(
            [
                {"session_id": "cli-batch-a", "interactions": [
                    {"role": "user", "content": "ship on Fridays?"},
                    {"role": "assistant", "content": "Never on Fridays."},
                ]},
                {"session_id": "cli-batch-b", "source": "cli", "interactions": [
                    {"role": "user", "content": "a single turn"},
                ]},
            ],
            indent=2,
        )
    )  # fmt: skip
    aged(first.write(slug), second.write(slug), payloads, array)
    expected = [
        (session_of(first), "user", "which database did we pick?"),
        (session_of(first), "assistant", "PostgreSQL 16."),
        (session_of(first), "user", "and the queue?"),
        (session_of(first), "assistant", "RabbitMQ, behind the orders service."),
        (session_of(second), "user", "run the tests"),
        (session_of(second), "assistant", "All 3 tests pass."),
        ("cli-support-1", "user", "my invoice is wrong"),
        ("cli-support-1", "assistant", "I reissued invoice 1042."),
        ("cli-batch-a", "user", "ship on Fridays?"),
        ("cli-batch-a", "assistant", "Never on Fridays."),
        ("cli-batch-b", "user", "a single turn"),
    ]
    return folder, expected


def test_import_stores_every_turn_once_under_its_session_and_a_second_run_nothing(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    other = f"{user_id}-other"
    folder, expected = import_folder(tmp_path, other)
    data = tmp_path / "data"

    first = reflexio_mcp("import", str(folder), data=data, url=reflexio.url, user=user_id)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "imported 4 file(s), 6 session(s): 12 turn(s) stored, 0 already stored, 0 skipped"
    ]
    held = stored_turns(reflexio.url, user_id)
    assert Counter(said(held)) == Counter(expected)  # every turn, each once
    assert len(held) == len(expected)
    assert {t.user_id for t in held} == {user_id}
    assert said(stored_turns(reflexio.url, other)) == [
        ("cli-other", "user", "the other user's question")
    ]

    again = reflexio_mcp("import", str(folder), data=data, url=reflexio.url, user=user_id)
    assert again.returncode == 0, again.stderr
    assert "0 turn(s) stored, 12 already stored, 0 skipped" in again.stdout
    # A data folder that never saw these files (another machine, a wiped cache) still stores
    # nothing twice: the request ids come from the files' content.
    elsewhere = reflexio_mcp(
        "import", str(folder), data=tmp_path / "fresh-data", url=reflexio.url, user=user_id
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "0 turn(s) stored, 12 already stored, 0 skipped" in elsewhere.stdout
    assert Counter(said(stored_turns(reflexio.url, user_id))) == Counter(expected)
    assert len(stored_turns(reflexio.url, other)) == 1


# -- b. the capture hook --------------------------------------------------------------------


def test_the_stop_hook_publishes_each_answer_once_and_prints_nothing(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    data = tmp_path / "data"
    transcript = exchange(
        Transcript(cwd=str(tmp_path / "shop")), "which port does it use?", "8080, set in .env."
    )
    path = transcript.write(tmp_path / "projects")

    ran = hook(stop(transcript, path), data=data, url=reflexio.url, user=user_id)
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    assert ran.seconds < QUICK_SECONDS
    session = session_of(transcript)
    assert said(stored_turns(reflexio.url, user_id)) == [
        (session, "user", "which port does it use?"),
        (session, "assistant", "8080, set in .env."),
    ]
    assert any("Stop: 2 turn(s) stored, 0 already stored" in line for line in log_lines(data))

    appended(transcript, path, "and in production?", "443 behind the load balancer.")
    ran = hook(stop(transcript, path), data=data, url=reflexio.url, user=user_id)
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    ended = hook(session_end(transcript, path), data=data, url=reflexio.url, user=user_id)
    assert (ended.returncode, ended.stdout) == (0, ""), ended.stderr
    assert said(stored_turns(reflexio.url, user_id)) == [
        (session, "user", "which port does it use?"),
        (session, "assistant", "8080, set in .env."),
        (session, "user", "and in production?"),
        (session, "assistant", "443 behind the load balancer."),
    ]
    assert "SessionEnd: 0 turn(s) stored, 4 already stored" in log_lines(data)[-1]


def test_the_first_hook_run_in_a_new_data_folder_logs_nothing_false(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """The outbox is created by the first run: that is not "replaced by another process"."""
    data = tmp_path / "data"
    transcript = exchange(Transcript(cwd=str(tmp_path / "shop")), "hello?", "Hello.")
    ran = hook(stop(transcript, transcript.write(tmp_path / "projects")), data=data,
               url=reflexio.url, user=user_id)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    assert len(stored_turns(reflexio.url, user_id)) == 2
    assert not [line for line in log_lines(data) if "replaced by another process" in line]


async def test_with_reflexio_down_the_hook_ends_at_once_and_its_turns_are_delivered_once_later(
    crashable_reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    server = crashable_reflexio
    data = tmp_path / "data"
    transcript = exchange(Transcript(cwd=str(tmp_path / "shop")), "is CI green?", "Yes, all green.")
    exchange(transcript, "and the nightly?", "The nightly failed on the migration test.")
    path = transcript.write(tmp_path / "projects")
    kill9(server)  # its port is free now: nothing listens there

    down = hook(stop(transcript, path), data=data, url=server.url, user=user_id)
    assert (down.returncode, down.stdout) == (0, ""), down.stderr
    assert down.seconds < QUICK_SECONDS, f"took {down.seconds:.1f} s with Reflexio down"
    assert await waiting_in_outbox(data, server.url) == 2  # one publish per exchange
    assert any("Stop:" in line for line in log_lines(data))
    still_down = hook(session_end(transcript, path), data=data, url=server.url, user=user_id)
    assert (still_down.returncode, still_down.stdout) == (0, ""), still_down.stderr
    assert still_down.seconds < QUICK_SECONDS
    assert await waiting_in_outbox(data, server.url) == 2  # nothing queued twice

    restart(server)
    assert stored_turns(server.url, user_id) == []
    later = hook(session_end(transcript, path), data=data, url=server.url, user=user_id)
    assert (later.returncode, later.stdout) == (0, ""), later.stderr
    midway = said(stored_turns(server.url, user_id))  # the later run may deliver some
    assert len(set(midway)) == len(midway)
    aged(path)
    imported = reflexio_mcp("import", str(path), data=data, url=server.url, user=user_id)
    assert imported.returncode == 0, imported.stderr
    assert "0 turn(s) stored, 4 already stored" in imported.stdout
    assert "still wait in the outbox" not in imported.stdout
    assert await waiting_in_outbox(data, server.url) == 0
    session = session_of(transcript)
    assert said(stored_turns(server.url, user_id)) == [
        (session, "user", "is CI green?"),
        (session, "assistant", "Yes, all green."),
        (session, "user", "and the nightly?"),
        (session, "assistant", "The nightly failed on the migration test."),
    ]


# -- c. what a session starts knowing -------------------------------------------------------


def word(stem: str) -> str:
    """A word no other test's turns or learnings hold."""
    return f"{stem}{uuid.uuid4().hex[:10]}"


def test_session_start_recalls_a_learned_profile_and_an_earlier_session_never_another_users(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    cwd = str(tmp_path / "shop")
    garden = word("quince")
    learned = publish_directly(
        reflexio.url, user_id, "learned-elsewhere",
        [("user", "Remember this about me"), ("assistant", f"I grow {garden} in my garden")],
        learn=True,
    )  # fmt: skip
    assert learned["profiles_added"] == 1, learned
    earlier = exchange(
        Transcript(cwd=cwd), f"deploy to staging with key {AWS_ID}", "Deployed to staging."
    )
    data = tmp_path / "data"
    published = hook(
        stop(earlier, earlier.write(tmp_path / "projects")), data=data, url=reflexio.url,
        user=user_id,
    )  # fmt: skip
    assert (published.returncode, published.stdout) == (0, ""), published.stderr
    held = stored_turns(reflexio.url, user_id)
    assert AWS_ID not in json.dumps(said(held))  # redacted before it was published
    assert "deploy to staging with key [REDACTED:aws-access-key]" in [t.content for t in held]

    other_user = f"{user_id}-other"
    secret_plan = word("theirplan")
    theirs = exchange(Transcript(cwd=cwd), f"our plan is {secret_plan}", f"Noted: {secret_plan}.")
    published = hook(
        stop(theirs, theirs.write(tmp_path / "their-projects")), data=tmp_path / "their-data",
        url=reflexio.url, user=other_user,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert len(stored_turns(reflexio.url, other_user)) == 2

    ran = hook(session_start(cwd), data=data, url=reflexio.url, user=user_id)
    assert ran.seconds < QUICK_SECONDS
    context = context_of(ran)
    assert f"profile: User mentioned: I grow {garden} in my garden" in context
    assert "assistant: Deployed to staging." in context
    assert "user: deploy to staging with key [REDACTED:aws-access-key]" in context
    assert secret_plan not in context
    assert AWS_ID not in context
    assert len(context) <= BUDGET_CHARS
    assert any("SessionStart: recalled" in line for line in log_lines(data))

    prompted = hook(
        {**session_start(cwd), "hook_event_name": "UserPromptSubmit",
         "prompt": f"what about {secret_plan} and the staging deploy?"},
        data=data, url=reflexio.url, user=user_id,
    )  # fmt: skip
    context = context_of(prompted, "UserPromptSubmit")
    assert secret_plan not in context
    assert len(context) <= BUDGET_CHARS


def test_recall_redacts_secrets_that_reached_reflexio_another_way(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """A turn another client published unredacted, and a profile learned from one, are shown
    redacted: the whole recalled text goes through the scanner."""
    cwd = str(tmp_path / "shop")
    session = f"claude-code:{project_key(cwd)}:{uuid.uuid4()}"
    publish_directly(
        reflexio.url, user_id, session,
        [("user", f"the deploy key is {AWS_ID}"), ("assistant", "Stored it in the vault.")],
    )  # fmt: skip
    learned = publish_directly(
        reflexio.url, user_id, "learned-elsewhere",
        [("user", "Remember this"), ("assistant", f"key {AWS_ID}")], learn=True,
    )  # fmt: skip
    assert learned["profiles_added"] == 1, learned

    ran = hook(session_start(cwd), data=tmp_path / "data", url=reflexio.url, user=user_id)
    context = context_of(ran)
    assert "user: the deploy key is [REDACTED:aws-access-key]" in context
    assert "profile: User mentioned: key [REDACTED:aws-access-key]" in context
    assert AWS_ID not in context


def test_recall_shows_no_part_of_a_token_a_learning_quotes_cut_short(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """What Reflexio learns quotes the turn it learned from, and may cut it (the mock LLM keeps
    its first 50 characters; a real one paraphrases): a GitHub token cut to 34 of its 36
    characters after `ghp_` is no longer recognised as one, and recall printed it."""
    learned = publish_directly(
        reflexio.url, user_id, "learned-elsewhere",
        [("user", "Remember this"), ("assistant", f"my token is {GITHUB}")], learn=True,
    )  # fmt: skip
    assert learned["profiles_added"] == 1, learned

    ran = hook(
        session_start(str(tmp_path / "shop")), data=tmp_path / "data", url=reflexio.url,
        user=user_id,
    )  # fmt: skip
    context = context_of(ran)
    assert "profile: User mentioned: my token is " in context
    assert GITHUB[:20] not in context, f"recall shows most of a GitHub token:\n{context}"


def test_recall_fits_its_budget_however_long_the_earlier_turns(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    cwd = str(tmp_path / "shop")
    for n in range(4):
        publish_directly(
            reflexio.url, user_id, f"claude-code:{project_key(cwd)}:{uuid.uuid4()}",
            [(role, f"{role} {n}:{k} " + "words " * 80) for k in range(2)
             for role in ("user", "assistant")],
        )  # fmt: skip

    ran = hook(session_start(cwd), data=tmp_path / "data", url=reflexio.url, user=user_id)
    context = context_of(ran)
    lines = context.splitlines()
    assert len(context) <= BUDGET_CHARS
    assert len(context) > BUDGET_CHARS - 240  # full: the budget, not a lack of turns, cut it
    assert all(len(line) <= 240 for line in lines)
    turns = [line for line in lines if re.match(r"- \d{4}-\d\d-\d\d (user|assistant): ", line)]
    assert len(turns) >= 4, context
    assert all(line.endswith("…") for line in turns), context


def test_recall_shows_no_part_of_a_secret_its_line_cut_cuts(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """A recalled line is cut at 240 characters, and the scanner runs on the cut text: a
    secret (here published unredacted by another client) that straddles the cut is no longer
    recognised, and its first half was shown."""
    cwd = str(tmp_path / "shop")
    # "- 2026-12-02 user: " is 19 characters and a line keeps 239 before its "…": the token's
    # first 20 characters (of 40) are inside the cut line.
    straddling = "x" * (239 - 19 - 20 - 1) + " " + GITHUB + " and more words after it"
    publish_directly(
        reflexio.url, user_id, f"claude-code:{project_key(cwd)}:{uuid.uuid4()}",
        [("user", straddling)],
    )  # fmt: skip

    ran = hook(session_start(cwd), data=tmp_path / "data", url=reflexio.url, user=user_id)
    context = context_of(ran)
    assert "xxxxxxxx" in context, "the straddling turn was not recalled: the test proves nothing"
    assert GITHUB[:12] not in context, f"recall shows half a GitHub token:\n{context}"


# -- hostile hook input ---------------------------------------------------------------------

METACHARACTERS = "shop $(touch PWNED) `touch PWNED2`; rm -rf ~ && echo 'x' | cat > PWNED3 \\ \"q\""
"""A cwd a shell would run commands from, were it ever interpolated into one."""


def planted(tmp_path: Path) -> list[Path]:
    """Files METACHARACTERS would have made, had a shell run them (in the hook's folder, the
    tests' own, or the test's)."""
    return [*Path.cwd().glob("PWNED*"), *tmp_path.rglob("PWNED*")]


def _event(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _huge(folder: Path) -> bytes:
    return _event(hook_event_name="Stop", session_id="s", cwd=str(folder),
                  transcript_path=str(folder / "s.jsonl"), pad="x" * (3 * 2**20))  # fmt: skip


def _passwd(folder: Path) -> bytes:
    return _event(hook_event_name="Stop", session_id="s", cwd=str(folder),
                  transcript_path="/etc/passwd", last_assistant_message="x")  # fmt: skip


def _passwd_link(folder: Path) -> bytes:
    link = folder / "passwd.jsonl"
    link.symlink_to("/etc/passwd")
    return _event(hook_event_name="SessionEnd", session_id="s", cwd=str(folder),
                  transcript_path=str(link), reason="other")  # fmt: skip


def _folder(folder: Path) -> bytes:
    (folder / "a-folder.jsonl").mkdir()
    path = str(folder / "a-folder.jsonl")
    return _event(hook_event_name="Stop", session_id="s", cwd=str(folder),
                  transcript_path=path, last_assistant_message="x")  # fmt: skip


def _fifo(folder: Path) -> bytes:
    os.mkfifo(folder / "pipe.jsonl")  # opening it to read would block until a writer came
    return _event(hook_event_name="SessionEnd", session_id="s", cwd=str(folder),
                  transcript_path=str(folder / "pipe.jsonl"), reason="other")  # fmt: skip


def _metacharacter_cwd(folder: Path) -> bytes:
    return _event(hook_event_name="SessionStart", session_id="s", source="startup",
                  cwd=str(folder / METACHARACTERS),
                  transcript_path=str(folder / METACHARACTERS / "s.jsonl"))  # fmt: skip


HOSTILE: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "larger than 1 MiB": (_huge, "hook failed: ValueError: the hook input is larger than"),
    "not JSON": (
        lambda _: b"Stop {session_id: s, oops",
        "failed: ValueError: the hook input is not JSON",
    ),
    "binary": (lambda _: bytes(range(256)) * 64, "unknown hook failed: "),
    "a JSON array": (lambda _: b'[{"hook_event_name": "Stop"}]', "not a JSON object"),
    "nested 200,000 deep": (lambda _: b"[" * 200_000, "hook failed: RecursionError"),
    "a JSON string": (lambda _: b'"Stop"', "not a JSON object"),
    "transcript_path /etc/passwd": (
        _passwd,
        "Stop hook failed: ValueError: transcript_path: missing, or not a .jsonl file",
    ),
    "transcript_path a number": (
        lambda _: _event(hook_event_name="SessionEnd", transcript_path=12),
        "transcript_path: missing, or not a .jsonl file",
    ),
    "transcript_path a folder": (_folder, "Stop: no transcript at"),
    "transcript_path a FIFO": (_fifo, "SessionEnd: no transcript at"),
    "transcript_path a link to /etc/passwd": (_passwd_link, "line(s) skipped"),
    "cwd with shell metacharacters": (_metacharacter_cwd, "SessionStart: nothing known to recall"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_hook_input_exits_0_prints_nothing_and_is_logged(
    case: str, reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    build, logged = HOSTILE[case]
    folder = tmp_path / "work"
    folder.mkdir()
    data = tmp_path / "data"

    ran = hook(build(folder), data=data, url=reflexio.url, user=user_id)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert ran.seconds < QUICK_SECONDS, f"took {ran.seconds:.1f} s"
    lines = [line for line in log_lines(data) if " reflexio_mcp.hook: " in line]
    assert len(lines) == 1, log_lines(data)
    assert logged in lines[0]
    assert "Traceback" not in ran.stderr
    assert stored_turns(reflexio.url, user_id) == []
    assert not planted(tmp_path)


def test_a_transcript_whose_cwd_has_shell_metacharacters_is_stored_under_a_plain_session_id(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    folder = tmp_path / "work"
    cwd = str(folder / METACHARACTERS)
    transcript = exchange(Transcript(cwd=cwd), "where am I?", "In a folder with an odd name.")
    data = tmp_path / "data"

    ran = hook(stop(transcript, transcript.write(folder / "projects")), data=data,
               url=reflexio.url, user=user_id)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    [session] = {t.session_id for t in stored_turns(reflexio.url, user_id)}
    assert re.fullmatch(r"claude-code:[A-Za-z0-9._-]+:[0-9a-f-]{36}", session), session
    context = context_of(hook(session_start(cwd), data=data, url=reflexio.url, user=user_id))
    assert "assistant: In a folder with an odd name." in context
    assert not planted(tmp_path)


def test_a_hook_event_name_cannot_forge_lines_in_hook_log(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """hook.log is what a user (and `doctor`) reads to see what the hooks did: a newline in a
    value from stdin must not start a line of its own there."""
    data = tmp_path / "data"
    forged = "2026-12-01 09:00:00,000 INFO reflexio_mcp.hook: Stop: 9 turn(s) stored"
    ran = hook(
        _event(hook_event_name=f"Bogus\n{forged}", session_id="s"),
        data=data, url=reflexio.url, user=user_id,
    )  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    assert len(log_lines(data)) == 1, log_lines(data)
    assert forged not in log_lines(data)


def test_a_transcript_path_no_file_system_could_hold_is_still_logged(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    """JSON may carry a lone surrogate (\\ud800), which no UTF-8 file name holds: the run is
    still one line in hook.log, and no logging traceback reaches stderr."""
    data = tmp_path / "data"
    stdin = b'{"hook_event_name": "SessionEnd", "transcript_path": "/tmp/\\ud800.jsonl"}'
    ran = hook(stdin, data=data, url=reflexio.url, user=user_id)
    assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    assert "Logging error" not in ran.stderr
    lines = log_lines(data)
    assert any("reflexio_mcp.hook: SessionEnd" in line for line in lines), lines
