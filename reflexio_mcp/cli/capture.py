"""`reflexio-mcp import PATH...` and `reflexio-mcp hook claude-code`: their output and exit codes.

import prints its progress on stderr and a summary on stdout; exits 1 if the store failed
midway or it was interrupted (what was published stays published: run it again to go on), 2
on bad arguments.
hook prints only the context Claude Code injects, and always exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from reflexio_mcp.backends.from_settings import build_backend
from reflexio_mcp.capture.conversation import Tally
from reflexio_mcp.capture.hook import MAX_INPUT_BYTES, run_hook, store_key
from reflexio_mcp.capture.importer import import_paths
from reflexio_mcp.capture.meter import Meter
from reflexio_mcp.capture.progress import Progress
from reflexio_mcp.capture.publisher import Publisher
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.settings import Settings

DRAIN_SECONDS = 60.0
"""How long an import on Reflexio waits, at the end, for its outbox to be delivered."""
SKIPPED_SHOWN = 10


def hook_command(settings: Settings) -> None:
    output = run_hook(settings, sys.stdin.buffer.read(MAX_INPUT_BYTES + 1))
    if output:
        sys.stdout.write(output + "\n")


def import_command(settings: Settings, paths: list[Path]) -> int:
    if settings.read_only:
        print("reflexio-mcp: import writes, and the server runs with --read-only", file=sys.stderr)
        return 2
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(
            f"reflexio-mcp: import: no such file or folder: {', '.join(missing)}", file=sys.stderr
        )
        return 2
    tally = Tally()
    failure: str | None = None
    try:
        waiting = anyio.run(_import, settings, paths, tally)
    except* ReflexioMcpError as failures:
        failure = str(failures.exceptions[0])
        waiting = 0
    except* KeyboardInterrupt:
        failure, waiting = "interrupted (Ctrl-C)", 0
    print(summary(tally, waiting))
    if failure is not None:
        print(f"reflexio-mcp: import stopped: {failure}; run it again to go on", file=sys.stderr)
        return 1
    return 0


async def _import(settings: Settings, paths: list[Path], tally: Tally) -> int:
    """Publishes still waiting in the outbox at the end (Reflexio only)."""
    async with (
        build_backend(settings, meaning=False) as backend,
        Progress(settings.data_folder, store_key(settings)) as progress,
    ):
        publisher = Publisher(
            backend, settings.user_id, redact=not settings.keep_secrets, tally=tally
        )
        await import_paths(paths, publisher, progress, Meter())
        return await _drained(backend, settings.user_id)


async def _drained(backend: Backend, user_id: str) -> int:
    waited = 0.0
    while True:
        outbox = (await backend.status(user_id, store_wide=False)).outbox
        if outbox is None or outbox.waiting == 0 or waited >= DRAIN_SECONDS:
            return 0 if outbox is None else outbox.waiting
        await anyio.sleep(0.5)
        waited += 0.5


def summary(tally: Tally, waiting: int) -> str:
    lines = [
        f"imported {tally.files:,} file(s), {len(tally.sessions):,} session(s): "
        f"{tally.stored:,} turn(s) stored, {tally.already_stored:,} already stored, "
        f"{tally.skipped_total:,} skipped"
    ]
    if tally.redacted:
        lines.append(f"{tally.redacted:,} secret(s) replaced by [REDACTED:...] markers")
    if waiting:
        lines.append(
            f"{waiting:,} publish(es) still wait in the outbox: the server delivers them when it "
            "runs (or run import again)"
        )
    if tally.skipped:
        lines.append("skipped, by reason:")
        lines += [
            f"  {count:,} x {reason}"
            for reason, count in tally.skip_reasons.most_common(SKIPPED_SHOWN)
        ]
        lines.append("first skipped:")
        lines += [f"  {item.where}: {item.reason}" for item in tally.skipped[:SKIPPED_SHOWN]]
    return "\n".join(lines)
