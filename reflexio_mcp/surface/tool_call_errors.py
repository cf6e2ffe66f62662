"""Every failed tools/call answers in the project's own words, never the SDK's raw ones.

A middleware around tools/call that:
- refuses arguments no tool declares (the SDK's argument models would silently drop a
  misspelt `limit`), naming the nearest known one;
- answers a call to a tool that is not registered with how to enable it;
- rewords the SDK's schema-validation failures ("1 validation error for ...Arguments ...
  https://errors.pydantic.dev/...") as the project's `field: reason` lines, by re-checking
  the arguments against the tool's own argument model, only once a call has failed;
- drops the SDK's "Error executing tool X: " prefix, and replaces its bare crash text with
  one that says what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from reflexio_mcp.core.invalid_input import MAX_NAMED, invalid_input_text
from reflexio_mcp.core.shown import shown, shown_name

SYNONYMS = {
    "limit": "top_k", "k": "top_k", "n": "top_k", "count": "top_k", "max_results": "top_k",
    "num_results": "top_k", "user": "user_id", "userid": "user_id", "uid": "user_id",
    "q": "query", "text": "query", "search": "query", "keywords": "query",
    "id": "interaction_id", "messages": "interactions", "turns": "interactions",
    "conversation": "interactions", "session": "session_id", "since": "start_time",
    "after": "start_time", "from": "start_time", "until": "end_time", "before": "end_time",
    "to": "end_time",
}  # fmt: skip
"""Names models reach for that mean one of ours."""


def tool_call_errors(
    tools: Sequence[Tool], *, not_enabled: Mapping[str, str]
) -> ServerMiddleware[Any]:
    """The middleware; `not_enabled` maps a tool left unregistered to how to enable it."""
    by_name = {tool.name: tool for tool in tools}
    accepted = {tool.name: list(tool.parameters.get("properties", {})) for tool in tools}

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not ctx.params:
            return await call_next(ctx)
        name: Any = ctx.params.get("name")
        raw: Any = ctx.params.get("arguments")
        raw = {} if raw is None else raw
        if not isinstance(name, str):
            return _error(invalid_input_text(f"name: must be a tool name (got {shown(name)})"))
        if not isinstance(raw, dict):
            return _error(
                invalid_input_text(
                    f"arguments: must be an object of named arguments (got {shown(raw)})"
                )
            )
        arguments = cast(dict[str, Any], raw)
        if name not in by_name:
            return _error(_unknown_tool(name, list(by_name), not_enabled))
        unknown = [argument for argument in arguments if argument not in accepted[name]]
        if unknown:
            return _error(_unknown_arguments(name, unknown, accepted[name]))
        try:
            result = await call_next(ctx)
        except MCPError as err:  # a client's failure to answer a question the tool asked it
            return _error(_unanswered(name, err.error.message))
        # The rest of the chain answers in wire form: {"content": [...], "isError": true}.
        if not isinstance(result, dict) or result.get("isError") is not True:
            return result
        return _reworded(by_name[name], arguments, _text(result))

    return middleware


def _text(result: dict[str, Any]) -> str:
    try:
        return " ".join(
            block.text
            for block in CallToolResult.model_validate(result).content
            if isinstance(block, TextContent)
        )
    except ValidationError:
        return ""


def _reworded(tool: Tool, arguments: dict[str, Any], text: str) -> CallToolResult:
    try:
        tool.fn_metadata.validate_arguments(arguments)
    except ValidationError as err:
        return _error(invalid_input_text(err))
    prefix = f"Error executing tool {tool.name}"
    plain = text.removeprefix(f"{prefix}: ")
    if plain.startswith("Resolver "):  # the SDK on an answer that does not fit the question
        why = plain.split("eceived ", 1)[-1]  # "... received an accepted ..." / ": Received ..."
        return _error(_unanswered(tool.name, why))
    if text == prefix:
        # The SDK withheld a crash's text (logged with its traceback): still say what to do.
        return _error(
            f"{tool.name} failed unexpectedly inside reflexio-mcp (a bug; the server's log has "
            "the details). Try again; if it keeps failing, report it with that log."
        )
    return _error(plain)


def _unanswered(tool: str, why: str) -> str:
    done = "not deleted" if tool == "delete_interaction" else "nothing was changed"
    return (
        f"{done}: the client's answer to {tool}'s question did not come back usable "
        f"({why[:200]}). Call {tool} again to be asked again"
    )


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _unknown_tool(name: str, registered: list[str], not_enabled: Mapping[str, str]) -> str:
    if name in not_enabled:
        return f"{name} is not enabled on this server: {not_enabled[name]}"
    close = difflib.get_close_matches(name, registered, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    named = shown_name(name[:100])
    return f"unknown tool {named!r}{hint}; this server's tools: {', '.join(registered)}"


def _unknown_arguments(tool: str, unknown: list[str], accepted: list[str]) -> str:
    problems: list[str] = []
    if len(unknown) > MAX_NAMED:
        unknown = [*unknown[:MAX_NAMED], f"(and {len(unknown) - MAX_NAMED} more)"]
    for argument in unknown:
        synonym = SYNONYMS.get(argument.lower())
        close = (
            [synonym] if synonym in accepted else difflib.get_close_matches(argument, accepted, 1)
        )
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{shown_name(argument[:100])}: not an argument of {tool}{hint}")
    return f"{invalid_input_text('; '.join(problems))}. {tool} takes: {', '.join(accepted)}"
