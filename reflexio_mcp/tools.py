"""The MCP tools: validate, make one backend call, shape the result. No HTTP, no SQL here."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from contextlib import contextmanager
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from reflexio_mcp.backend import Backend
from reflexio_mcp.errors import InvalidInput, ReflexioError
from reflexio_mcp.models import (
    MAX_CONTENT_CHARS,
    MAX_INTERACTIONS_PER_PUBLISH,
    SOURCE_RULE,
    GetRequest,
    Interaction,
    InteractionData,
    PublishRequest,
    SearchMode,
    SearchRequest,
    Timestamp,
    problems_from,
)

MAX_RESULTS = 1000
"""Upper bound on interactions one tool call returns: enough for any model context."""


class PublishResult(BaseModel):
    """What publish_interaction stored."""

    stored: int = Field(description="How many interactions (turns) were stored.")
    user_id: str
    session_id: str
    request_id: str = Field(description="Idempotency key of this publish; find its turns by it.")
    message: str = Field(description="The backend's own words.")
    learning: str | None = Field(default=None, description="Whether profile/playbook learning ran.")
    warnings: list[str] = Field(default_factory=list[str])


class InteractionList(BaseModel):
    """Interactions, in the order the backend ranked them."""

    count: int
    interactions: list[Interaction]


class DeleteResult(BaseModel):
    """The interaction that delete_interaction removed."""

    deleted: Interaction
    message: str


UserId = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=256,
        description="Whose interactions; omit for the server's default user.",
    ),
]
StartTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or after this ISO 8601 time (no offset = UTC)."),
]
EndTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or before this ISO 8601 time (no offset = UTC)."),
]


@contextmanager
def reported_to_model() -> Generator[None]:
    """Turn anticipated failures into ToolError, whose text the model sees and can act on."""
    try:
        yield
    except ValidationError as err:
        raise ToolError(f"invalid input: {problems_from(err)}") from err
    except InvalidInput as err:
        raise ToolError(f"invalid input: {err}") from err
    except ReflexioError as err:
        raise ToolError(str(err)) from err


def register_tools(
    server: MCPServer,
    backend: Backend,
    *,
    default_user_id: str,
    allow_admin: bool,
    open_world: bool,
) -> None:
    """Add the interaction tools to `server`; get_all_interactions only when `allow_admin`.

    `open_world` says whether the backend is outside this machine's process (Reflexio).
    """

    def hints(*, read_only: bool, destructive: bool = False, idempotent: bool) -> ToolAnnotations:
        return ToolAnnotations(
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=idempotent,
            open_world_hint=open_world,
        )

    # Reflexio requires a session_id: callers that give none share this process's own.
    process_session_id = f"reflexio-mcp-{uuid.uuid4().hex}"

    @server.tool(
        title="Publish interaction",
        annotations=hints(read_only=False, idempotent=False),
    )
    async def publish_interaction(
        interactions: Annotated[
            list[InteractionData] | None,
            Field(
                min_length=1,
                max_length=MAX_INTERACTIONS_PER_PUBLISH,
                description="The turns to store, oldest first (1-1000). Or use user_message "
                "and agent_response for a single exchange.",
            ),
        ] = None,
        user_message: Annotated[
            str | None,
            Field(
                max_length=MAX_CONTENT_CHARS,
                description="Shortcut for one exchange: what the user said (with agent_response).",
            ),
        ] = None,
        agent_response: Annotated[
            str | None,
            Field(
                max_length=MAX_CONTENT_CHARS,
                description="Shortcut for one exchange: the agent's answer (with user_message).",
            ),
        ] = None,
        user_id: UserId = None,
        source: Annotated[
            str,
            Field(max_length=128, description=f"Where the conversation came from: {SOURCE_RULE}."),
        ] = "mcp",
        agent_version: Annotated[
            str, Field(max_length=1000, description="Version of the agent that answered.")
        ] = "",
        session_id: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=1000,
                description="Groups publishes of one conversation; omit to use this server "
                "process's own session.",
            ),
        ] = None,
        wait_for_response: Annotated[
            bool,
            Field(description="Wait until Reflexio has learned from it (can take minutes)."),
        ] = False,
        skip_aggregation: Annotated[
            bool, Field(description="Learn user profiles/playbooks but skip agent playbooks.")
        ] = False,
        force_extraction: Annotated[
            bool, Field(description="Run learning now, bypassing Reflexio's batching gates.")
        ] = False,
    ) -> PublishResult:
        """Store a conversation (or one exchange) in Reflexio so it is remembered.

        Use it after an exchange worth remembering: Reflexio keeps the turns, makes them
        searchable, and learns user profiles and playbooks from them. Give either
        `interactions` (any number of turns, with roles, expert corrections, tools used) or
        `user_message` + `agent_response`. Returns how many turns were stored and the
        request_id of the publish.
        """
        with reported_to_model():
            turns = _turns(interactions, user_message, agent_response)
            request = PublishRequest(
                request_id=str(uuid.uuid4()),
                user_id=user_id or default_user_id,
                interaction_data_list=turns,
                source=source,
                agent_version=agent_version,
                session_id=session_id or process_session_id,
                skip_aggregation=skip_aggregation,
                force_extraction=force_extraction,
            )
            answer = await backend.publish(request, wait_for_response=wait_for_response)
        learning = " / ".join(s for s in (answer.learning_status, answer.learning_reason) if s)
        return PublishResult(
            stored=len(turns),
            user_id=request.user_id,
            session_id=request.session_id,
            request_id=request.request_id,
            message=answer.message,
            learning=learning or None,
            warnings=answer.warnings,
        )

    @server.tool(
        title="Search interactions",
        annotations=hints(read_only=True, idempotent=True),
    )
    async def search_interactions(
        query: Annotated[
            str | None,
            Field(max_length=10_000, description="Words to look for in what was said."),
        ] = None,
        user_id: UserId = None,
        top_k: Annotated[
            int | None,
            Field(ge=1, le=MAX_RESULTS, description="At most this many results (1-1000)."),
        ] = None,
        most_recent_k: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_RESULTS,
                description="Keep only the newest k matches (1-1000); without a query, "
                "returns the newest k interactions.",
            ),
        ] = None,
        start_time: StartTime = None,
        end_time: EndTime = None,
        search_mode: Annotated[
            SearchMode,
            Field(description="'fts' full-text, 'vector' semantic, 'hybrid' both (default)."),
        ] = "hybrid",
        threshold: Annotated[
            float | None,
            Field(ge=0, le=1, description="Minimum similarity for vector matches (0-1)."),
        ] = None,
        request_id: Annotated[
            str | None,
            Field(max_length=1000, description="Only turns stored by this publish."),
        ] = None,
    ) -> InteractionList:
        """Find past interactions of a user by what was said in them.

        Use it to recall earlier conversations ("what did we decide about X?"). Returns the
        matching turns, best match first, with their ids, roles, content and times. With no
        query, give most_recent_k to list the newest turns.
        """
        with reported_to_model():
            request = SearchRequest(
                user_id=user_id or default_user_id,
                query=query,
                top_k=top_k,
                most_recent_k=most_recent_k,
                start_time=start_time,
                end_time=end_time,
                search_mode=search_mode,
                threshold=threshold,
                request_id=request_id,
            )
            found = await backend.search_interactions(request)
        return InteractionList(count=len(found), interactions=found)

    @server.tool(
        title="Get interactions",
        annotations=hints(read_only=True, idempotent=True),
    )
    async def get_interactions(
        user_id: UserId = None,
        top_k: Annotated[
            int, Field(ge=1, le=MAX_RESULTS, description="How many of the newest (1-1000).")
        ] = 30,
        start_time: StartTime = None,
        end_time: EndTime = None,
    ) -> InteractionList:
        """List a user's most recent interactions, newest first.

        Use it to see what was said lately, or to find the interaction_id to delete. Returns
        the turns with their ids, roles, content and times.
        """
        with reported_to_model():
            request = GetRequest(
                user_id=user_id or default_user_id,
                top_k=top_k,
                start_time=start_time,
                end_time=end_time,
            )
            found = await backend.get_interactions(request)
        return InteractionList(count=len(found), interactions=found)

    if allow_admin:

        @server.tool(
            title="Get all interactions (admin)",
            annotations=hints(read_only=True, idempotent=True),
        )
        async def get_all_interactions(
            limit: Annotated[
                int, Field(ge=1, le=MAX_RESULTS, description="How many of the newest (1-1000).")
            ] = 100,
        ) -> InteractionList:
            """List the most recent interactions of EVERY user, newest first (admin only).

            Use it to audit what the store holds across users. Returns the turns with their
            user ids, interaction ids, roles, content and times.
            """
            with reported_to_model():
                found = await backend.get_all_interactions(limit)
            return InteractionList(count=len(found), interactions=found)

    @server.tool(
        title="Delete interaction",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
    )
    async def delete_interaction(
        interaction_id: Annotated[
            int, Field(ge=1, description="Id of the interaction, from get/search_interactions.")
        ],
        user_id: UserId = None,
    ) -> DeleteResult:
        """Delete one stored interaction (one turn) of a user, permanently.

        Use it when the user asks to forget something. It checks that the interaction exists
        and belongs to the user first; an unknown id is an error and deletes nothing. Returns
        the interaction that was deleted.
        """
        with reported_to_model():
            deleted = await backend.delete_interaction(user_id or default_user_id, interaction_id)
        return DeleteResult(
            deleted=deleted,
            message=f"deleted interaction {interaction_id} of user {deleted.user_id!r}",
        )


def _turns(
    interactions: list[InteractionData] | None,
    user_message: str | None,
    agent_response: str | None,
) -> list[InteractionData]:
    shortcut = user_message is not None or agent_response is not None
    if interactions and shortcut:
        raise InvalidInput(
            ["interactions: give either interactions or user_message + agent_response, not both"]
        )
    if interactions:
        return interactions
    if user_message is None or agent_response is None:
        missing = "agent_response" if user_message is not None else "user_message"
        if not shortcut:
            missing = "interactions"
        raise InvalidInput(
            [
                f"{missing}: required; give interactions (a list of turns) or "
                "user_message and agent_response together"
            ]
        )
    return [
        InteractionData(role="user", content=user_message),
        InteractionData(role="assistant", content=agent_response),
    ]
