"""No tools/call outlives its deadline: a backend that accepts a connection and never answers
cannot hang a tool. Publishes with wait_for_response=true wait for learning, so they get
WAIT_FOR_RESPONSE_SECONDS more."""

from __future__ import annotations

from typing import Any, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp_types import CallToolResult, TextContent

from reflexio_mcp import defaults


def tool_deadline(seconds: float) -> ServerMiddleware[Any]:
    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not ctx.params:
            return await call_next(ctx)
        name = str(ctx.params.get("name"))
        arguments = ctx.params.get("arguments")
        waits = (
            isinstance(arguments, dict)
            and cast(dict[str, Any], arguments).get("wait_for_response") is True
        )
        limit = seconds + (defaults.WAIT_FOR_RESPONSE_SECONDS if waits else 0)
        with anyio.move_on_after(limit):
            return await call_next(ctx)
        return CallToolResult(
            content=[TextContent(type="text", text=_overdue(name, limit))], is_error=True
        )

    return middleware


def _overdue(tool: str, seconds: float) -> str:
    text = (
        f"{tool} did not finish within its {seconds:g} s deadline and was stopped: the backend "
        "is too slow or not answering. Try again later (REFLEXIO_MCP_DEADLINE sets the deadline)"
    )
    if tool == "publish_interaction":
        text += (
            "; a publish that reached the outbox is still delivered: check with get_publish_status"
        )
    return text
