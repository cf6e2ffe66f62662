"""`reflexio-mcp hook claude-code`: one run of a Claude Code hook.

Claude Code passes the hook's event as JSON on stdin (session_id, transcript_path, cwd,
hook_event_name, and for UserPromptSubmit the prompt). Stop, PreCompact and SessionEnd
publish the transcript's exchanges not yet published (Stop and SessionEnd run when the session
is idle, so its last exchange is complete once written; PreCompact publishes only exchanges
known complete). SessionStart and UserPromptSubmit print what is known for Claude Code to
put before the model (its `additionalContext`).

A hook must never fail or hold up the session: the work has HOOK_SECONDS, every failure goes
to `hook.log` in the data folder and to the capture log `reflexio-mcp doctor` reads, and
nothing but the context reaches stdout. On Reflexio a publish that is not delivered in time
stays in the outbox, which the server (or the next hook run) delivers.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any, cast

import anyio

from reflexio_mcp.backends.from_settings import build_backend
from reflexio_mcp.capture.conversation import Tally
from reflexio_mcp.capture.importer import import_transcript
from reflexio_mcp.capture.progress import Progress
from reflexio_mcp.capture.publisher import Publisher
from reflexio_mcp.capture.recall import recall
from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.settings import Settings

logger = logging.getLogger("reflexio_mcp.hook")

HOOK_SECONDS = 10.0
"""The work's budget; the settings block `config claude-code --hooks` prints gives Claude Code
a longer timeout, so the hook ends itself first."""
MAX_INPUT_BYTES = 2**20
LOG_FILE = "hook.log"
LOG_BYTES = 2**20
CAPTURE = {"Stop": True, "SessionEnd": True, "PreCompact": False}
"""Events that publish, and whether the session is idle then (its last exchange complete)."""
STOP_WAIT_SECONDS = 3.0
"""Claude Code writes the transcript asynchronously: a Stop hook can run before the answer's
last line is in the file (seen in 5 of 10 runs). The hook waits this long for the answer its
input names (`last_assistant_message`) to be there."""
TAIL_BYTES = 256 * 1024
RECALL = ("SessionStart", "UserPromptSubmit")


def store_key(settings: Settings) -> str:
    """Which store a transcript's progress is of."""
    return settings.reflexio_url if settings.uses_reflexio else "embedded"


def run_hook(settings: Settings, stdin: bytes) -> str:
    """What to print on stdout ("" for capture events). Never raises: a failure is logged."""
    _log_to_file(settings.data_folder)
    started = time.monotonic()
    event = "unknown"
    try:
        payload = _payload(stdin)
        event = str(payload.get("hook_event_name") or "unknown")
        output, detail = anyio.run(_run, settings, payload, event)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            raise
        event, failure = _one_line(event), _one_line(_described(err))
        logger.error("%s hook failed: %s", event, failure)  # noqa: TRY400  no traceback in the log
        _record(settings, event, "failed", failure)
        return ""
    event, detail = _one_line(event), _one_line(f"{detail} in {time.monotonic() - started:.2f} s")
    logger.info("%s: %s", event, detail)
    _record(settings, event, "ok", detail)
    return output


def _payload(stdin: bytes) -> dict[str, Any]:
    if len(stdin) > MAX_INPUT_BYTES:
        raise ValueError(f"the hook input is larger than {MAX_INPUT_BYTES} bytes")
    try:
        value = json.loads(stdin or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"the hook input is not JSON ({err}): is this run as a hook?") from None
    if not isinstance(value, dict):
        raise TypeError("the hook input is not a JSON object")
    return cast(dict[str, Any], value)


async def _run(settings: Settings, payload: dict[str, Any], event: str) -> tuple[str, str]:
    with anyio.fail_after(HOOK_SECONDS):
        if event in CAPTURE:
            return "", await _capture(settings, payload, idle=CAPTURE[event])
        if event in RECALL:
            return await _recall(settings, payload, event)
    return "", "nothing to do for this event"


async def _capture(settings: Settings, payload: dict[str, Any], *, idle: bool) -> str:
    if settings.read_only:
        return "read-only: nothing published"
    path = payload.get("transcript_path")
    if not isinstance(path, str) or not path.endswith(".jsonl"):
        raise ValueError("transcript_path: missing, or not a .jsonl file")
    transcript = Path(path)
    if not await anyio.Path(transcript).is_file():
        return f"no transcript at {transcript} yet"
    if payload.get("hook_event_name") == "Stop":
        answer = payload.get("last_assistant_message")
        idle = await _answer_written(transcript, answer if isinstance(answer, str) else "")
    tally = Tally()
    async with (
        build_backend(settings, meaning=False) as backend,
        Progress(settings.data_folder, store_key(settings)) as progress,
    ):
        publisher = Publisher(
            backend, settings.user_id, redact=not settings.keep_secrets, tally=tally
        )
        await import_transcript(transcript, publisher, progress, settings.user_id, finished=idle)
    queued = f" ({tally.queued} of them queued in the outbox)" if tally.queued else ""
    skipped = f", {tally.skipped_total} line(s) skipped" if tally.skipped_total else ""
    return f"{tally.stored} turn(s) stored{queued}, {tally.already_stored} already stored{skipped}"


async def _recall(settings: Settings, payload: dict[str, Any], event: str) -> tuple[str, str]:
    cwd = payload.get("cwd")
    prompt = payload.get("prompt") if event == "UserPromptSubmit" else None
    session = payload.get("session_id")
    async with build_backend(settings, meaning=False) as backend:
        text = await recall(
            backend,
            settings.user_id,
            cwd=cwd if isinstance(cwd, str) else "",
            prompt=prompt if isinstance(prompt, str) and prompt.strip() else None,
            current_session=session if isinstance(session, str) else "",
        )
    if not text:
        return "", "nothing known to recall"
    output = {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}
    return json.dumps(output, ensure_ascii=False), f"recalled {len(text)} characters"


async def _answer_written(transcript: Path, answer: str) -> bool:
    """Whether the transcript's last answer line is (the end of) `answer`, once it is written;
    False if it is not within STOP_WAIT_SECONDS (then only exchanges known complete publish)."""
    waited = 0.0
    while True:
        if answer.strip() and await anyio.to_thread.run_sync(_ends_with, transcript, answer):
            return True
        if waited >= STOP_WAIT_SECONDS or not answer.strip():
            return False
        await anyio.sleep(0.05)
        waited += 0.05


def _ends_with(transcript: Path, answer: str) -> bool:
    with transcript.open("rb") as file:
        file.seek(max(0, file.seek(0, 2) - TAIL_BYTES))
        tail = file.read().splitlines()
    for raw in reversed(tail):
        try:
            line = _object(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        message = _object(line.get("message"))
        content = message.get("content")
        if line.get("type") != "assistant" or not isinstance(content, list):
            continue
        blocks = [_object(block) for block in cast(list[Any], content)]
        texts = [str(b.get("text", "")).strip() for b in blocks if b.get("type") == "text"]
        if texts:
            return bool(texts[-1]) and answer.strip().endswith(texts[-1])
    return False


def _object(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _one_line(text: str) -> str:
    """`text` (it may hold values from stdin) as one line any file takes: control characters
    and lone surrogates escaped as repr() writes them, so no input forges a line of the log."""
    if text.isprintable():
        try:
            text.encode()
        except UnicodeEncodeError:
            pass
        else:
            return text
    return repr(text)[1:-1]


def _described(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(
            _described(e) for e in cast(BaseExceptionGroup[BaseException], err).exceptions
        )
    if isinstance(err, TimeoutError):
        return f"stopped after {HOOK_SECONDS:g} s; what was not published is published next time"
    return f"{type(err).__name__}: {err}"


def _log_to_file(data_folder: Path) -> None:
    try:
        data_folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.handlers.RotatingFileHandler(
            data_folder / LOG_FILE, maxBytes=LOG_BYTES, backupCount=1, encoding="utf-8"
        )
    except OSError:
        return  # nowhere to log: the run is still recorded if the capture log opens
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("reflexio_mcp")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _record(settings: Settings, event: str, outcome: str, detail: str) -> None:
    async def record() -> None:
        async with Progress(settings.data_folder, store_key(settings)) as progress:
            await progress.hook_ran(event, outcome, detail)

    try:
        anyio.run(record)
    except (ReflexioMcpError, OSError) as err:  # the log file already says what happened
        logger.warning("could not record the hook run: %s", err)
