"""What the tools take and the backends store and return, with every bound declared once.

The shapes follow Reflexio 0.2.32's API contract (its /openapi.json); the bounds are the
narrower of what Reflexio and the embedded store can store *and read back*, so nothing
accepted here can later make a user's history unreadable. A turn also meets the rules
Reflexio's server applies beyond its schema (InteractionData): both backends take exactly
what Reflexio keeps whole, so nothing acknowledged is later dropped, refused or cut. Tool
signatures reuse these annotated types, so the schema a client sees and the check a request
meets are one thing.
"""

from __future__ import annotations

import functools
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.fields import (
    Identifier,
    ResultCount,
    SearchMode,
    Source,
    Timestamp,
    UnixSeconds,
    UserAction,
    UserId,
    check_image_url,
    check_tool_data,
    lowercase,
)
from reflexio_mcp.core.limits import (
    MAX_BODY_BYTES,
    MAX_CONTENT_CHARS,
    MAX_INTERACTIONS_PER_PUBLISH,
    MAX_QUERY_CHARS,
    MAX_TIMESTAMP,
    MAX_TOOL_STATUS_CHARS,
)


class Strict(BaseModel):
    """Unknown fields are an error: a typo must never vanish silently."""

    model_config = ConfigDict(extra="forbid")


class ToolUsed(Strict):
    """A tool the agent called while producing a turn."""

    tool_name: str = Field(min_length=1, max_length=1000)
    tool_data: Annotated[dict[str, Any], AfterValidator(check_tool_data)] = Field(
        default_factory=dict[str, Any],
    )
    status: str = Field(
        default="",
        max_length=MAX_TOOL_STATUS_CHARS,
    )


class InteractionData(Strict):
    """One turn of a conversation, as Reflexio's publish endpoint takes it."""

    role: str = Field(
        default="User",
        min_length=1,
        max_length=1000,
    )
    content: str = Field(default="", max_length=MAX_CONTENT_CHARS)
    expert_content: str = Field(
        default="",
        max_length=MAX_CONTENT_CHARS,
        description="A better answer, to learn from.",
    )
    user_action: Annotated[UserAction, BeforeValidator(lowercase)] = Field(default="none")
    user_action_description: str = Field(
        default="",
        max_length=10_000,
        validate_default=True,
        description="Required with a user_action, e.g. 'clicked Buy'.",
    )
    interacted_image_url: Annotated[str, AfterValidator(check_image_url)] = Field(
        default="",
        max_length=2048,
        description="http(s) or data: URL.",
    )
    image_encoding: str = Field(
        default="",
        max_length=15_000_000,
        description="Base64 image, not with interacted_image_url; a publish is <= 10 MiB.",
    )
    tools_used: list[ToolUsed] = Field(default_factory=list[ToolUsed], max_length=1000)
    created_at: UnixSeconds | None = Field(
        default=None,
        description="Unix seconds; omit for now.",
    )

    @field_validator("created_at", mode="before")
    @classmethod
    def _not_milliseconds(cls, value: Any) -> Any:
        if isinstance(value, int) and 10**12 <= value <= MAX_TIMESTAMP * 1000:
            raise ValueError(
                f"must be Unix seconds between 0 and {MAX_TIMESTAMP}; {value} looks like "
                f"milliseconds: send {value // 1000}"
            )
        return value

    # Reflexio 0.2.32's own rules for a turn (InteractionData.shape_error and carries_content):
    # it refuses the publish (422) over the first two, and silently skips a turn that breaks
    # the third when the publish has others. Here each is refused up front, on both backends.

    @field_validator("user_action_description")
    @classmethod
    def _describes_its_action(cls, value: str, info: ValidationInfo) -> str:
        action = info.data.get("user_action", "none")
        if action != "none" and not value:
            raise ValueError(
                f"required with user_action {action!r}: say what the user did, e.g. "
                "'clicked Buy' (Reflexio refuses a user_action without one), or leave "
                "user_action out"
            )
        return value

    @field_validator("image_encoding")
    @classmethod
    def _one_image(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("interacted_image_url"):
            raise ValueError(
                "give interacted_image_url or image_encoding, not both (Reflexio refuses a "
                "turn with both): put the other image in a turn of its own"
            )
        return value

    def carries_content(self) -> bool:
        """Whether Reflexio keeps this turn: it skips one without any of these."""
        texts = (self.content, self.expert_content, self.interacted_image_url, self.image_encoding)
        return self.user_action != "none" or bool(self.tools_used) or any(t.strip() for t in texts)

    @model_validator(mode="after")
    def _kept_by_reflexio(self) -> InteractionData:
        if self.carries_content():
            return self
        if self.user_action_description.strip():
            raise ValueError(
                "a user_action_description alone is not kept by Reflexio (it skips the turn): "
                "set the user_action it describes (click, scroll or type), or put the text in "
                "content"
            )
        raise ValueError(
            "empty turn: give content (or expert_content, tools_used, a user_action or an "
            "image); leave out turns with nothing in them"
        )


class PublishRequest(Strict):
    """One publish: the turns of a conversation, stored under one request_id."""

    request_id: Identifier
    user_id: UserId
    interaction_data_list: list[InteractionData] = Field(
        min_length=1, max_length=MAX_INTERACTIONS_PER_PUBLISH
    )
    source: Source = ""
    agent_version: str = Field(default="", max_length=1000)
    session_id: Identifier
    skip_aggregation: bool = False
    force_extraction: bool = False

    def checked_body(self, now: int | None = None) -> bytes:
        """The JSON body, refused here if Reflexio's 10 MiB limit would refuse it.

        A turn without created_at gets `now` (default: this second) in the body: the time it
        was published, which Reflexio keeps, not the time a queued publish is delivered.
        Both backends hold to the limit, so a publish that works on one works on the other.

        Raises:
            InvalidInput: the body is larger than 10 MiB.
        """
        stamp = int(time.time()) if now is None else now
        turns = [
            turn if turn.created_at is not None else turn.model_copy(update={"created_at": stamp})
            for turn in self.interaction_data_list
        ]
        stamped = self.model_copy(update={"interaction_data_list": turns})
        body = stamped.model_dump_json(exclude_none=True).encode()
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInput(
                [
                    f"interactions: the publish is {len(body) / 2**20:.1f} MiB and Reflexio takes "
                    "at most 10 MiB per publish; split it into several publish_interaction calls "
                    "or leave out large image_encoding values"
                ]
            )
        return body


class Published(BaseModel):
    """What a backend says about a publish it took."""

    message: str
    already_stored: bool = Field(
        default=False,
        description="The request_id had been stored by an earlier publish: nothing stored twice.",
    )
    warnings: list[str] = Field(default_factory=list[str])
    learning_status: str | None = None
    learning_reason: str | None = None
    profiles_learned: int = 0
    """Profiles added or updated by learning from it, once that is known."""
    playbooks_learned: int = 0
    queued: bool = Field(
        default=False,
        description="Kept in the outbox, to be delivered in the background: not stored yet.",
    )


class PublishStatus(BaseModel):
    """Where one publish stands: waiting in the outbox, delivered, or refused."""

    request_id: str
    user_id: str
    status: Literal["queued", "delivered", "failed", "unknown"] = Field(
        description="queued: in the outbox, not yet taken by Reflexio; delivered: stored by the "
        "backend; failed: refused for good (see reason), kept in the outbox; unknown: no "
        "publish with this request_id for this user here."
    )
    detail: str = Field(description="What the status means for this publish, and what to do.")
    turns: int | None = Field(default=None, description="Turns in the publish.")
    attempts: int = Field(default=0, description="Times it was sent to Reflexio.")
    ahead: int | None = Field(
        default=None, description="Queued publishes before this one (queued only)."
    )
    queued_at: str | None = None
    delivered_at: str | None = None
    failed_at: str | None = None
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    last_error: str | None = Field(default=None, description="Why the last attempt failed.")
    learning: str | None = Field(
        default=None, description="Delivered: how Reflexio's learning from it stands."
    )


class TimeWindow(Strict):
    user_id: UserId
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None

    @model_validator(mode="after")
    def _window_is_ordered(self) -> TimeWindow:
        if self.start_time and self.end_time and self.start_time > self.end_time:
            raise ValueError("start_time is after end_time; swap them or widen the window")
        # Times are stored in whole seconds: a turn at 12:00:01 is not "at or after" 12:00:01.5.
        if self.start_time and self.start_time.microsecond:
            self.start_time = self.start_time.replace(microsecond=0) + timedelta(seconds=1)
        if self.end_time:
            self.end_time = self.end_time.replace(microsecond=0)
        return self


class GetRequest(TimeWindow):
    """The newest interactions of one user."""

    top_k: ResultCount = 30


class SearchRequest(TimeWindow):
    """Interactions of one user matching a query (or, without one, the newest)."""

    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    request_id: Identifier | None = None
    top_k: ResultCount | None = None
    most_recent_k: ResultCount | None = None
    threshold: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    search_mode: SearchMode = "hybrid"


@functools.lru_cache(maxsize=4096)
def iso_time(seconds: int) -> str:
    """Unix seconds as ISO 8601 UTC; any integer reads back, clamped to years 1970-9999."""
    clamped = min(max(seconds, 0), MAX_TIMESTAMP)
    return datetime.fromtimestamp(clamped, UTC).isoformat().replace("+00:00", "Z")


def _whole_seconds(value: Any) -> Any:
    # Rows written by other clients may hold floats or nothing; reading must not fail on them.
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0 if value is None else value


class StoredToolUse(BaseModel):
    """A tool use as stored: read leniently, since other clients and newer versions write too."""

    model_config = ConfigDict(extra="ignore")

    tool_name: str = ""
    tool_data: dict[str, Any] = Field(default_factory=dict[str, Any])
    status: str = ""


class Interaction(BaseModel):
    """One stored turn, as the tools and resources show it."""

    model_config = ConfigDict(extra="ignore")

    interaction_id: int = Field(description="Stable id; pass it to delete_interaction.")
    user_id: str
    request_id: str = Field(description="Id of the publish that stored this turn.")
    session_id: str = Field(default="", description="Session of the publish; '' if not known.")
    created_at: Annotated[int, BeforeValidator(_whole_seconds)] = Field(description="Unix seconds.")
    role: str = "User"
    content: str = ""
    expert_content: str = ""
    user_action: str = "none"
    user_action_description: str = ""
    interacted_image_url: str = ""
    tools_used: list[StoredToolUse] = Field(default_factory=list[StoredToolUse])
    score: float | None = Field(
        default=None, description="How well it matched a search (0-1, higher is better)."
    )

    @computed_field(description="created_at as ISO 8601, UTC.")
    @property
    def time(self) -> str:
        return iso_time(self.created_at)


def newest_first(interactions: list[Interaction]) -> list[Interaction]:
    """Newest first; among equal times (stored in whole seconds), the later id first."""
    return sorted(interactions, key=lambda i: (i.created_at, i.interaction_id), reverse=True)


class Matches(BaseModel):
    """What a search found, best first, and how it searched."""

    interactions: list[Interaction]
    search_mode: SearchMode | None = None
    """The mode that ran (a store may run another than asked); None: the store did not say."""
    notes: list[str] = Field(default_factory=list[str])
    """What the caller should know about how it searched (a fallback, an index still filling)."""


class Keyset(BaseModel):
    """Where the next page of a newest-first listing starts: its turns older than the last one
    shown, by (created_at, interaction_id), down to the oldest it held at its first page, and
    none stored since then (ids only grow, so those have a higher id than any it held)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_created: int
    last_id: int
    floor_created: int
    floor_id: int
    max_id: int

    @classmethod
    def of(cls, listing: list[Interaction], shown: Interaction) -> Keyset:
        """The keyset after `shown`, in `listing` as its first page found it (newest first)."""
        return cls(
            last_created=shown.created_at,
            last_id=shown.interaction_id,
            floor_created=listing[-1].created_at,
            floor_id=listing[-1].interaction_id,
            max_id=max(i.interaction_id for i in listing),
        )

    def past(self, shown: Interaction) -> Keyset:
        """This keyset once `shown` (one of its turns) has been shown too."""
        return self.model_copy(
            update={"last_created": shown.created_at, "last_id": shown.interaction_id}
        )

    def holds(self, interaction: Interaction) -> bool:
        key = (interaction.created_at, interaction.interaction_id)
        return (self.floor_created, self.floor_id) <= key < (
            self.last_created,
            self.last_id,
        ) and interaction.interaction_id <= self.max_id
