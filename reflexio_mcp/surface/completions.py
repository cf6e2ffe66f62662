"""Completions: the values a client's picker offers for the user and session arguments of
the resource templates and prompts, from the backend.

    reflexio://users/{user_id}/interactions      user_id
    reflexio://users/{user_id}/sessions/{...}    user_id; session_id (of the user_id in the
                                                 context arguments, else the caller's own)
    prompt recall                                user_id
    prompt remember_this_conversation            session_id (of the caller's own user)

Values begin with what was typed (case-sensitive), most recently active first, at most
MAX_VALUES of them, with `total` (when the store can tell) and `has_more`. A pinned caller (a
token's user, or --pin-user) is offered its own user id only, and only its own sessions. A
backend that fails offers nothing (completion is a convenience; the read itself says why).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from mcp.server import MCPServer
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import TypeAdapter, ValidationError

from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.fields import UserId
from reflexio_mcp.core.limits import MAX_ID_CHARS
from reflexio_mcp.core.status import KnownIds
from reflexio_mcp.surface.access_scope import acting_user_id, names_another_user, pinned_user
from reflexio_mcp.surface.learnings_context import PLAYBOOKS_TEMPLATE, PROFILE_TEMPLATE
from reflexio_mcp.surface.resources import SESSION_TEMPLATE, USER_TEMPLATE

logger = logging.getLogger(__name__)

MAX_VALUES = 100
"""The most values one completion offers (the protocol's own cap)."""
USER_ID = TypeAdapter[str](UserId)

USER_IDS = {
    ("ref/resource", USER_TEMPLATE, "user_id"),
    ("ref/resource", SESSION_TEMPLATE, "user_id"),
    ("ref/prompt", "recall", "user_id"),
    ("ref/resource", PROFILE_TEMPLATE, "user_id"),
    ("ref/resource", PLAYBOOKS_TEMPLATE, "user_id"),
    ("ref/prompt", "what_you_know_about_me", "user_id"),
}
SESSION_IDS = {
    ("ref/resource", SESSION_TEMPLATE, "session_id"),
    ("ref/prompt", "remember_this_conversation", "session_id"),
}


def register_completions(server: MCPServer[Any], backend: Backend, *, default_user_id: str) -> None:
    """Answer completion/complete for the user and session arguments (see the module)."""

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        named = ref.uri if isinstance(ref, ResourceTemplateReference) else ref.name
        key = (ref.type, named, argument.name)
        prefix = argument.value
        if len(prefix) > MAX_ID_CHARS or (key not in USER_IDS and key not in SESSION_IDS):
            return None
        pinned = pinned_user()
        if key in USER_IDS:
            if pinned is not None:
                return _offered([pinned] if pinned.startswith(prefix) else [])
            return await _known(backend.user_ids(prefix, MAX_VALUES))
        given = (context.arguments or {}).get("user_id", "") if context is not None else ""
        if given and key[1] == "remember_this_conversation":
            given = ""  # the prompt takes no user: its sessions are the caller's own
        if names_another_user(given, pinned):
            return _offered([])  # another user's sessions are not the caller's to see
        user_id = acting_user_id(default_user_id, given)
        try:
            USER_ID.validate_python(user_id)
        except ValidationError:
            return _offered([])
        return await _known(backend.session_ids(user_id, prefix, MAX_VALUES))


async def _known(lookup: Awaitable[KnownIds]) -> Completion:
    try:
        found = await lookup
    except ReflexioMcpError as err:
        logger.warning("no completions: %s", err)
        return _offered([])
    return Completion(values=found.values, total=found.total, has_more=found.has_more)


def _offered(values: list[str]) -> Completion:
    return Completion(values=values, total=len(values), has_more=False)
