"""No tool call or resource read outlives its deadline: a backend that accepts a connection
and never answers (or trickles its answer) cannot hang a client. Publishes with
wait_for_response=true wait for learning, so they get WAIT_FOR_RESPONSE_SECONDS more."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, CallToolResult, TextContent

from reflexio_mcp.core import defaults

RETRY = "Try again later (REFLEXIO_MCP_DEADLINE sets the deadline)"


def request_deadline(seconds: float) -> ServerMiddleware[Any]:
    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/call", "resources/read") or not ctx.params:
            return await call_next(ctx)
        if ctx.method == "resources/read":
            with anyio.move_on_after(seconds):
                return await call_next(ctx)
            raise MCPError(
                code=INTERNAL_ERROR,
                message=f"reading {str(ctx.params.get('uri'))[:200]} did not finish within its "
                f"{seconds:g} s deadline and was stopped: the backend is too slow or not "
                f"answering. {RETRY}",
            )
        name = str(ctx.params.get("name"))
        limit = seconds + _waiting_allowance(name, ctx.params)
        with anyio.move_on_after(limit):
            return await call_next(ctx)
        return CallToolResult(
            content=[TextContent(type="text", text=_overdue(name, limit))], is_error=True
        )

    return middleware


def _waiting_allowance(tool: str, params: Mapping[str, Any]) -> float:
    """Time a call may spend waiting on purpose: for learning, or for the user's consent."""
    if tool == "delete_interaction":
        return defaults.CONFIRM_SECONDS
    arguments = params.get("arguments")
    waits = isinstance(arguments, dict) and (
        cast(dict[str, Any], arguments).get("wait_for_response") is True
    )
    return defaults.WAIT_FOR_RESPONSE_SECONDS if waits else 0.0


def _overdue(tool: str, seconds: float) -> str:
    text = (
        f"{tool} did not finish within its {seconds:g} s deadline and was stopped: the backend "
        f"is too slow or not answering. {RETRY}"
    )
    if tool == "publish_interaction":
        text += "; a publish that reached the outbox is still delivered (get_publish_status)"
    return text
