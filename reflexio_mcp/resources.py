"""MCP resources: a user's most recent interactions as a bounded JSON document."""

from __future__ import annotations

import json
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import TypeAdapter, ValidationError

from reflexio_mcp.access_scope import acting_user, check_own_user
from reflexio_mcp.backend import Backend
from reflexio_mcp.errors import ReflexioError
from reflexio_mcp.invalid_input import invalid_input
from reflexio_mcp.models import GetRequest, Interaction, UserId

RECENT_COUNT = 20
MAX_FIELD_CHARS = 2000
"""Longer text is cut in resources (never in storage): a resource is read whole into context."""
USER_ID = TypeAdapter[str](UserId)
USER_ID_RULES = ResourceSecurity(exempt_params={"user_id"})
"""The SDK's path checks would refuse `a:b` as a Windows drive path; the user id rule (shared
with the tools, and refusing / and \\ and . and ..) applies instead."""


def register_resources(server: MCPServer, backend: Backend, *, default_user_id: str) -> None:
    """Add reflexio://status, reflexio://interactions/recent and
    reflexio://users/{user_id}/interactions."""

    @server.resource(
        "reflexio://status",
        name="status",
        title="Backend status",
        description="Which store serves the calls (embedded file or Reflexio URL), whether it "
        "answers, whether it learns, and how many interactions it holds.",
        mime_type="application/json",
    )
    async def status() -> str:
        user_id = acting_user.get() or default_user_id
        status = await backend.status(user_id)
        return status.model_copy(update={"user_id": user_id}).model_dump_json(indent=1)

    @server.resource(
        "reflexio://interactions/recent",
        name="recent_interactions",
        title="Recent interactions",
        description=f"The {RECENT_COUNT} most recent interactions of the default user "
        f"({default_user_id}; with an access token, the token's user), newest first, as JSON; "
        f"long text is cut to {MAX_FIELD_CHARS} characters.",
        mime_type="application/json",
    )
    async def recent_interactions() -> str:
        return await recent_json(backend, acting_user.get() or default_user_id)

    @server.resource(
        "reflexio://users/{user_id}/interactions",
        name="user_interactions",
        title="A user's recent interactions",
        description=f"The {RECENT_COUNT} most recent interactions of one user, newest first, "
        f"as JSON; long text is cut to {MAX_FIELD_CHARS} characters.",
        mime_type="application/json",
        security=USER_ID_RULES,
    )
    async def user_interactions(user_id: str) -> str:
        try:
            USER_ID.validate_python(user_id)
        except ValidationError as err:
            raise MCPError(
                code=INVALID_PARAMS, message=f"invalid input: {invalid_input(err, {'': 'user_id'})}"
            ) from None
        pinned = acting_user.get()
        if pinned is not None:
            check_own_user(user_id, pinned)  # on the decoded id: what the backend would get
        return await recent_json(backend, user_id)


async def recent_json(backend: Backend, user_id: str) -> str:
    """The newest interactions of a user, bounded in size, as JSON text.

    Raises:
        ResourceError: the backend failed; the message says how to fix it.
    """
    try:
        found = await backend.get_interactions(GetRequest(user_id=user_id, top_k=RECENT_COUNT))
    except ReflexioError as err:
        raise ResourceError(str(err)) from err
    document = {
        "user_id": user_id,
        "count": len(found),
        "interactions": [_bounded(interaction) for interaction in found],
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def _bounded(interaction: Interaction) -> dict[str, Any]:
    data = interaction.model_dump(mode="json")
    for key, value in data.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            data[key] = _cut(value)
    for tool in data["tools_used"]:
        text = json.dumps(tool["tool_data"], ensure_ascii=False)
        if len(text) > MAX_FIELD_CHARS:
            tool["tool_data"] = {"truncated": _cut(text)}
    return data


def _cut(text: str) -> str:
    return (
        f"{text[:MAX_FIELD_CHARS]}… [cut: {len(text) - MAX_FIELD_CHARS} more characters; "
        "get_interactions returns the full text]"
    )
