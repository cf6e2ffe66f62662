"""The secret scanner's rules are built off the event loop, never by an error message.

Error messages check the caller's values for secrets before quoting them (`core.models.shown`),
and that check needs the scanner's rules: building them imports detect-secrets (~10 ms of CPU).
The server starts that build in a thread of its own (`start_building`, from the lifespan), which
begins once the first tools/list is answered and out (or START_AT_MOST seconds after start-up:
start_up.py): the build no longer competes with the handshake a client waits for at start. A
request that may quote a caller's value and arrives before the build ends waits for it in a
worker thread (`wait_for_secret_rules`), so the loop serves everything else meanwhile and the
check itself then finds the rules built.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from reflexio_mcp.secrets import prepare, prepare_in_background, prepared
from reflexio_mcp.surface.start_up import START_AT_MOST, listed, tools_listed

QUOTING_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get"})
"""The requests whose errors can quote a caller's value (initialize and the lists cannot)."""


def start_building() -> None:
    """Start building the rules in a thread, once the first tools/list is answered, unless
    they are built or being built."""
    prepare_in_background(after=tools_listed, at_most=START_AT_MOST)


async def wait_for_secret_rules(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: a request that may quote a caller's value waits, in a worker thread, until
    the rules are built (at once when they are, as after the first moments of a server)."""
    if ctx.method in QUOTING_METHODS and not prepared():
        await anyio.to_thread.run_sync(prepare, abandon_on_cancel=True)
    result = await call_next(ctx)
    if ctx.method == "tools/list":
        listed()
    return result
