"""`reflexio-mcp import PATH...`: transcripts and payload files published, exactly once.

Files are read one at a time and streamed, so memory stays bounded whatever the folder holds.
A Claude Code transcript resumes where the last import or hook left it (see progress.py);
every file's exchanges carry request ids derived from their lines, so an import killed
midway and run again, or files that overlap, store nothing twice. A transcript written to in
the last IDLE_SECONDS may belong to a session still running: its last exchange waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio

from reflexio_mcp.capture.claude_code import read_transcript
from reflexio_mcp.capture.conversation import Exchange, Skipped, Tally
from reflexio_mcp.capture.formats import Kind, files_under, kind_of
from reflexio_mcp.capture.meter import Meter
from reflexio_mcp.capture.progress import Progress, Resume
from reflexio_mcp.capture.publisher import Publisher
from reflexio_mcp.capture.reflexio_payload import read_payloads

IDLE_SECONDS = 600
RECORD_EVERY = 25
"""Exchanges published between two saves of a transcript's progress."""


async def import_paths(
    paths: list[Path], publisher: Publisher, progress: Progress, meter: Meter
) -> Tally:
    tally = publisher.tally
    files = list(files_under(paths))
    meter.start(len(files))
    for path in files:
        try:
            kind = kind_of(path)
            if kind is None:
                tally.skip(Skipped(str(path), "not a transcript or payload file"))
            else:
                tally.files += 1
                await _import_file(path, kind, publisher, progress)
        except OSError as err:
            tally.skip(Skipped(str(path), f"cannot be read ({err.strerror or err})"))
        meter.advance(tally)
    meter.finish(tally)
    return tally


async def import_transcript(
    path: Path, publisher: Publisher, progress: Progress, user_id: str, *, finished: bool
) -> None:
    """Publish a Claude Code transcript's exchanges not published before."""
    resume = await progress.resume(user_id, path)
    tally = publisher.tally
    tally.already_stored += resume.turns
    if resume.turns:
        tally.sessions.add(f"{user_id}\x1f{resume.session_id}")
    done, unsaved = resume, 0
    for item in read_transcript(path, start=resume.offset, finished=finished):
        if isinstance(item, Skipped):
            tally.skip(item)
            continue
        published = await publisher.publish(item, f"{path} (session {item.session_id})")
        turns = done.turns + (len(item.turns) if published else 0)
        done, unsaved = Resume(item.resume_at, turns, item.session_id), unsaved + 1
        if unsaved >= RECORD_EVERY:
            await progress.record(user_id, path, done)
            unsaved = 0
    if unsaved:
        await progress.record(user_id, path, done)


async def _import_file(path: Path, kind: Kind, publisher: Publisher, progress: Progress) -> None:
    if kind == "claude-code":
        idle = await _idle(path)
        await import_transcript(path, publisher, progress, publisher.user_id, finished=idle)
        return
    for item in _items(path, kind, finished=await _idle(path)):
        if isinstance(item, Skipped):
            publisher.tally.skip(item)
        else:
            await publisher.publish(item, f"{path} (session {item.session_id})")


async def _idle(path: Path) -> bool:
    """Not written to for IDLE_SECONDS: no session is still adding to it."""
    return time.time() - (await anyio.Path(path).stat()).st_mtime >= IDLE_SECONDS


def _items(path: Path, kind: Kind, *, finished: bool) -> Iterator[Exchange | Skipped]:
    if kind == "reflexio":
        return read_payloads(path)
    from reflexio_mcp.capture.codex import read_codex_session

    return read_codex_session(path, finished=finished)
