"""`reflexio-mcp outbox`: what the outbox holds, and what to do with publishes Reflexio refused.

Refused publishes (400/401/403/422 in the background, 5xx too many times, or left unanswered
while Reflexio took others) are kept as `failed`; after fixing the cause (an API key, say),
queue them again; or drop them.

Its report goes to stdout: this command is run by a person, not by an MCP client, so stdout
is not a protocol channel here (the server, `serve`, never reaches this module).
"""

from __future__ import annotations

import sys
import time
from typing import Literal

from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core.errors import StoreError
from reflexio_mcp.core.models import iso_time
from reflexio_mcp.core.urls import display_url
from reflexio_mcp.settings import Settings

Action = Literal["show", "retry-failed", "drop-failed"]


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


async def outbox_command(settings: Settings, action: Action) -> int:
    """Print the outbox's state (and act on its failed publishes); the exit status."""
    if not settings.uses_reflexio:
        _say("no outbox: the embedded store keeps each publish itself (set REFLEXIO_URL)")
        return 0
    outbox = Outbox(settings.data_folder, display_url(settings.reflexio_url))
    try:
        async with outbox:
            if outbox.salvage is not None:
                _say(outbox.salvage.detail)
            stats = await outbox.stats()
            failed = await outbox.failed_rows()
            line = f"{outbox.path}, for Reflexio at {outbox.target}: {stats.waiting} waiting"
            if stats.oldest_queued_at is not None:
                line += f" (oldest queued {time.time() - stats.oldest_queued_at:.0f} s ago)"
            _say(f"{line}, {len(failed)} failed")
            for url, count in stats.other_targets.items():
                _say(f"{count} waiting for another Reflexio, {url}: start reflexio-mcp with it")
            if damaged := outbox.moved_aside():
                _say(f"{len(damaged)} damaged outbox file(s) kept beside it, newest {damaged[-1]}")
            for entry in failed:
                when = iso_time(int(entry.done_at or entry.queued_at))
                _say(
                    f"  failed {entry.request_id} of user {entry.user_id!r}, {entry.turns} "
                    f"turn(s), {when}, after {entry.attempts} attempt(s): {entry.last_error}"
                )
            if action == "retry-failed":
                _say(f"queued again: {await outbox.retry_failed()} (a running reflexio-mcp, or "
                      "the next one started, delivers them)")  # fmt: skip
            elif action == "drop-failed":
                _say(f"dropped: {await outbox.drop_failed()}")
            elif failed:
                _say(
                    "fix the cause, then `reflexio-mcp outbox --retry-failed`; or drop them "
                    "with `reflexio-mcp outbox --drop-failed`"
                )
    except StoreError as err:
        sys.stderr.write(f"reflexio-mcp: {err}\n")
        return 1
    return 0
