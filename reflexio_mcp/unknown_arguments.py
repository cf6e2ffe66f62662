"""Refuse tool arguments no tool declares: a misspelt `limit` must not silently become top_k=30.

The SDK's argument models ignore names they do not know; this middleware answers such a call
with an is_error result naming the argument, the nearest known one and the full list.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp_types import CallToolResult, TextContent, Tool


def reject_unknown_arguments(
    list_tools: Callable[[], Awaitable[list[Tool]]],
) -> ServerMiddleware[Any]:
    """Middleware checking tools/call arguments against each tool's input schema."""
    known: dict[str, list[str]] = {}

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not ctx.params:
            return await call_next(ctx)
        if not known:
            for tool in await list_tools():
                known[tool.name] = list(tool.input_schema.get("properties", {}))
        name = ctx.params.get("name")
        arguments = ctx.params.get("arguments")
        if not isinstance(name, str) or name not in known or not isinstance(arguments, dict):
            return await call_next(ctx)
        unknown = [arg for arg in arguments if arg not in known[name]]  # pyright: ignore[reportUnknownVariableType]
        if not unknown:
            return await call_next(ctx)
        return CallToolResult(
            content=[TextContent(type="text", text=_message(name, unknown, known[name]))],  # pyright: ignore[reportUnknownArgumentType]
            is_error=True,
        )

    return middleware


def _message(tool: str, unknown: list[str], accepted: list[str]) -> str:
    problems: list[str] = []
    for argument in unknown:
        close = difflib.get_close_matches(argument, accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{argument}: not an argument of {tool}{hint}")
    return (
        f"Error executing tool {tool}: invalid input: {'; '.join(problems)}. "
        f"{tool} takes: {', '.join(accepted)}"
    )
