"""Typed requests and answers, shaped like Reflexio 0.2.32's API contract (its /openapi.json).

Every backend takes and returns these, so the rules Reflexio enforces (source pattern, sizes,
user actions) are checked here once, before anything is sent or stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from reflexio_mcp.errors import InvalidInput

SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")
SOURCE_RULE = (
    "lowercase letters, digits and . _ : - only, starting with a letter or digit, "
    "at most 128 characters (or empty)"
)
MAX_BODY_BYTES = 10 * 1024 * 1024
"""Reflexio refuses request bodies above 10 MiB, whatever its schema admits."""
MAX_INTERACTIONS_PER_PUBLISH = 1000
MAX_CONTENT_CHARS = 1_000_000

UserAction = Literal["click", "scroll", "type", "none"]
SearchMode = Literal["vector", "fts", "hybrid"]


def _lowercase(value: Any) -> Any:
    # Reflexio's own SDK docs send "CLICK"/"SCROLL", which its server rejects.
    return value.lower() if isinstance(value, str) else value


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _naive_as_utc(value: Any) -> Any:
    """A time without an offset is taken as UTC, never as the backend's local time."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if isinstance(value, str) and value and not _has_offset(value):
        return value + "Z" if "T" in value or " " in value else value + "T00:00:00Z"
    return value


def _has_offset(text: str) -> bool:
    return (
        text.endswith(("Z", "z")) or re.search(r"[+-]\d\d:?\d\d$", text.split("T")[-1]) is not None
    )


Timestamp = Annotated[AwareDatetime, BeforeValidator(_naive_as_utc), AfterValidator(_as_utc)]
"""An ISO 8601 time; without an offset it means UTC."""


class _Strict(BaseModel):
    """Unknown fields are an error: a typo must never vanish silently."""

    model_config = ConfigDict(extra="forbid")


class ToolUsed(_Strict):
    """A tool the agent called while producing a turn."""

    tool_name: str = Field(min_length=1, max_length=1000, description="Name of the tool called.")
    tool_data: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description="The tool's inputs and/or outputs as a JSON object.",
    )
    status: str = Field(
        default="", max_length=1000, description="Outcome, e.g. 'success' or 'error'."
    )


class InteractionData(_Strict):
    """One turn of a conversation, as Reflexio's publish endpoint takes it."""

    role: str = Field(
        default="User",
        min_length=1,
        max_length=1000,
        description="Who spoke: 'User'/'Agent' or 'user'/'assistant' (stored as given).",
    )
    content: str = Field(default="", max_length=MAX_CONTENT_CHARS, description="What was said.")
    expert_content: str = Field(
        default="",
        max_length=MAX_CONTENT_CHARS,
        description="What an expert would have answered instead; Reflexio learns from the gap.",
    )
    user_action: Annotated[UserAction, BeforeValidator(_lowercase)] = Field(
        default="none", description="A UI action the user took with this turn (case-insensitive)."
    )
    user_action_description: str = Field(
        default="", max_length=10_000, description="What the user_action did, e.g. 'clicked Buy'."
    )
    interacted_image_url: str = Field(
        default="", max_length=2048, description="URL of an image the user interacted with."
    )
    image_encoding: str = Field(
        default="",
        max_length=15_000_000,
        description="Base64 image attached to the turn; the whole publish must stay under 10 MiB.",
    )
    tools_used: list[ToolUsed] = Field(
        default_factory=list[ToolUsed], max_length=1000, description="Tools called for this turn."
    )
    created_at: int | None = Field(
        default=None,
        ge=0,
        description="When the turn happened, Unix seconds; omit for now.",
    )


def _check_source(value: str) -> str:
    if value and not SOURCE_PATTERN.fullmatch(value):
        raise ValueError(f"must be {SOURCE_RULE}; e.g. {suggest_source(value)!r}")
    return value


def suggest_source(value: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._:-]+", "-", value.lower()).strip("-._:")
    return cleaned[:128] or "my-agent"


class PublishRequest(_Strict):
    """Body of POST /api/publish_interaction."""

    request_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    interaction_data_list: list[InteractionData] = Field(
        min_length=1, max_length=MAX_INTERACTIONS_PER_PUBLISH
    )
    source: Annotated[str, AfterValidator(_check_source)] = ""
    agent_version: str = Field(default="", max_length=1000)
    session_id: str = Field(min_length=1)
    skip_aggregation: bool = False
    force_extraction: bool = False

    def to_body(self) -> bytes:
        """The JSON body, refused here if Reflexio's 10 MiB limit would refuse it.

        Raises:
            InvalidInput: the body is larger than 10 MiB.
        """
        body = self.model_dump_json(exclude_none=True).encode()
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInput(
                [
                    f"interactions: the publish is {len(body) / 2**20:.1f} MiB and Reflexio takes "
                    "at most 10 MiB per publish; split it into several publish_interaction calls "
                    "or leave out large image_encoding values"
                ]
            )
        return body


class PublishAnswer(BaseModel):
    """What Reflexio answers to a publish."""

    success: bool
    message: str = ""
    warnings: list[str] = Field(default_factory=list[str])
    request_id: str | None = None
    learning_status: str | None = None
    learning_reason: str | None = None


class _TimeWindow(_Strict):
    user_id: str = Field(min_length=1)
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None

    @model_validator(mode="after")
    def _window_is_ordered(self) -> _TimeWindow:
        if self.start_time and self.end_time and self.start_time > self.end_time:
            raise ValueError("start_time is after end_time; swap them or widen the window")
        return self


class GetRequest(_TimeWindow):
    """Body of POST /api/get_interactions: the newest interactions of one user."""

    top_k: int = Field(default=30, gt=0)


class SearchRequest(_TimeWindow):
    """Body of POST /api/search_interactions."""

    query: str | None = None
    request_id: str | None = None
    top_k: int | None = Field(default=None, gt=0)
    most_recent_k: int | None = Field(default=None, gt=0)
    threshold: float | None = Field(default=None, ge=0, le=1)
    search_mode: SearchMode = "hybrid"


class Interaction(BaseModel):
    """One stored turn, as the tools and resources show it."""

    model_config = ConfigDict(extra="ignore")

    interaction_id: int = Field(description="Stable id; pass it to delete_interaction.")
    user_id: str
    request_id: str = Field(description="Id of the publish that stored this turn.")
    created_at: int = Field(description="Unix seconds.")
    role: str = "User"
    content: str = ""
    expert_content: str = ""
    user_action: str = "none"
    user_action_description: str = ""
    interacted_image_url: str = ""
    tools_used: list[ToolUsed] = Field(default_factory=list[ToolUsed])

    @field_validator("tools_used", mode="before")
    @classmethod
    def _drop_unknown_tool_fields(cls, value: Any) -> Any:
        # A newer Reflexio may add fields to stored tool uses; reading must not break on them.
        if not isinstance(value, list):
            return value
        return [_known_tool_fields(item) for item in cast(list[Any], value)]

    @computed_field(description="created_at as ISO 8601, UTC.")
    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.created_at, UTC).isoformat().replace("+00:00", "Z")


def newest_first(interactions: list[Interaction]) -> list[Interaction]:
    """Newest first; among equal times (stored in whole seconds), the later id first."""
    return sorted(interactions, key=lambda i: (i.created_at, i.interaction_id), reverse=True)


def _known_tool_fields(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    known = ToolUsed.model_fields
    return {k: v for k, v in cast(dict[str, Any], item).items() if k in known}


class InteractionsAnswer(BaseModel):
    """What Reflexio answers to get_interactions, search_interactions and get_all_interactions."""

    success: bool
    interactions: list[Interaction]
    msg: str | None = None


class DeleteAnswer(BaseModel):
    success: bool
    message: str = ""


class BackendStatus(BaseModel):
    """Which store serves the calls, and whether it can be reached."""

    backend: Literal["embedded", "reflexio"]
    location: str = Field(description="The store's file, or the Reflexio server's URL.")
    reachable: bool
    learning: bool = Field(description="Whether profiles and playbooks are learned.")
    user_interactions: int | None = Field(
        default=None, description="Interactions stored for the default user."
    )
    interactions: int | None = Field(
        default=None, description="Interactions stored for all users, when the store tells."
    )
    users: int | None = Field(default=None, description="Distinct users, when the store tells.")
    detail: str = ""


def problems_from(error: ValidationError, rename: dict[str, str] | None = None) -> InvalidInput:
    """Turn pydantic's report into 'field: reason' lines a model can act on."""
    rename = rename or {}
    problems: list[str] = []
    for item in error.errors(include_url=False):
        parts = [str(part) for part in item["loc"]]
        if parts:
            parts[0] = rename.get(parts[0], parts[0])
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{'.'.join(parts) or 'request'}: {message}")
    return InvalidInput(problems)
