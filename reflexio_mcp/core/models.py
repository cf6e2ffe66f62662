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
import ipaddress
import math
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.secrets import find_secrets

MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest Unix second both backends store and read back as a date."""
MAX_INTEGER = 2**63 - 1
"""SQLite's largest INTEGER."""
MAX_RESULTS = 1000
"""At most this many interactions in one answer: enough for any model context."""
MAX_INTERACTIONS_PER_PUBLISH = 1000
MAX_CONTENT_CHARS = 1_000_000
MAX_ID_CHARS = 256
MAX_QUERY_CHARS = 10_000
MAX_TOOL_DATA_DEPTH = 32
MAX_BODY_BYTES = 10 * 1024 * 1024
"""Reflexio refuses request bodies above 10 MiB, whatever its schema admits."""
MAX_TOOL_STATUS_CHARS = 100
"""Reflexio cuts a longer tools_used[].status to 100 characters, silently (ToolUsed)."""
IMAGE_URL_SCHEMES = ("http", "https", "data")
METADATA_HOSTS = frozenset({"metadata.google.internal"})
METADATA_IPS = frozenset({"169.254.169.254", "fd00:ec2::254"})
"""Cloud metadata endpoints: Reflexio refuses an image URL pointing at one, in any form."""
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")
SOURCE_RULE = (
    "lowercase letters, digits and . _ : - only, starting with a letter or digit, "
    "at most 128 characters (or empty)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

UserAction = Literal["click", "scroll", "type", "none"]
SearchMode = Literal["vector", "fts", "hybrid"]


@dataclass(frozen=True)
class Between:
    """An integer bound with one message for both ends; the schema shows both as well."""

    low: int
    high: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "minimum": self.low, "maximum": self.high}

    def _check(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high} (got {shown(value)})")
        return value


def secret_kind(text: str) -> str | None:
    """The kind of secret `text` holds, if any: an error message must not echo one back."""
    found = find_secrets(text[:10_000])
    return found[0].kind if found else None


def shown_name(name: str) -> str:
    """A caller's field or argument name, for an error message (a pasted token is not named)."""
    return f"(a name that looks like a {kind}, not shown)" if (kind := secret_kind(name)) else name


def shown(value: Any) -> str:
    """A short rendering of a caller's value for an error message: never the whole of it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        digits = len(str(abs(value))) if abs(value) < 10**50 else None
        return str(value) if digits is not None else "a number of more than 50 digits"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"nan": "NaN"}.get(repr(value), repr(value))
    if isinstance(value, str):
        if kind := secret_kind(value):
            return f"a value of {len(value):,} characters that looks like a {kind}, not shown"
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}… ({len(value):,} characters)"
    if isinstance(value, list):
        return f"a list of {len(cast(list[Any], value))} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _identifier(kind: str, *, slashes: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError(f"{kind} must not contain control characters (newlines, tabs, NUL)")
        if value != value.strip():
            raise ValueError(f"{kind} must not start or end with spaces (got {shown(value)})")
        if not slashes and ("/" in value or "\\" in value or value in (".", "..")):
            raise ValueError(f"{kind} must not contain / or \\ or be . or .. (got {shown(value)})")
        return value

    return check


UserId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_identifier("a user id", slashes=False)),
]
"""Any printable name up to 256 characters but / and \\: it also appears in resource URIs."""
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_identifier("an id", slashes=True)),
]
"""A session or request id: any printable text up to 256 characters."""


def _unless_blank(check: Callable[[str], str]) -> Callable[[str], str]:
    return lambda value: value if value == "" else check(value)


# Optional text arguments of tools are plain `str` with "" for "not given": the SDK pre-parses
# any other string argument as JSON, so a user named "null" would silently become None.
UserIdOrDefault = Annotated[
    str,
    Field(max_length=MAX_ID_CHARS),
    AfterValidator(_unless_blank(_identifier("a user id", slashes=False))),
]
IdentifierOrNew = Annotated[
    str,
    Field(max_length=MAX_ID_CHARS),
    AfterValidator(_unless_blank(_identifier("an id", slashes=True))),
]
InteractionId = Annotated[int, Between(1, MAX_INTEGER)]
UnixSeconds = Annotated[int, Between(0, MAX_TIMESTAMP)]
ResultCount = Annotated[int, Between(1, MAX_RESULTS)]


def _lowercase(value: Any) -> Any:
    # Reflexio's own SDK docs send "CLICK"/"SCROLL", which its server rejects.
    return value.lower() if isinstance(value, str) else value


def _parse_time(value: Any) -> Any:
    """ISO 8601 text or Unix seconds; without an offset, a time means UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"must be an ISO 8601 time (got {shown(value)})")
        seconds = min(max(value, 0), MAX_TIMESTAMP)
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"must be an ISO 8601 time such as '2026-11-23T14:00:00Z' or '2026-11-23' "
                f"(got {shown(value)})"
            ) from None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_EARLIEST = datetime.fromtimestamp(0, UTC)
_LATEST = datetime.fromtimestamp(MAX_TIMESTAMP, UTC)


def _storable(value: datetime) -> datetime:
    """In UTC, clamped to what can be stored: nothing lies outside, so the window means the same."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        return _EARLIEST if value.year == 1 else _LATEST
    return min(max(utc, _EARLIEST), _LATEST)


Timestamp = Annotated[AwareDatetime, BeforeValidator(_parse_time), AfterValidator(_storable)]
"""An ISO 8601 time (or Unix seconds); without an offset it means UTC."""


def _check_tool_data(value: dict[str, Any]) -> dict[str, Any]:
    """JSON can hold neither NaN nor Infinity, and very deep nesting cannot be read back."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_TOOL_DATA_DEPTH:
            raise ValueError(f"nested more than {MAX_TOOL_DATA_DEPTH} levels deep; flatten it")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{shown(item)} is not JSON: send null or a string such as 'NaN'")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in cast(dict[str, Any], item).values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in cast(list[Any], item)]
    return value


def _check_image_url(value: str) -> str:
    """Reflexio's own check (validators._validate_image_url), but for the DNS lookup it makes
    of a host name: what it refuses would be refused after the bridge had acknowledged it."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError as err:  # e.g. "http://[::1/a.png": Reflexio's urlparse fails alike
        raise ValueError(
            f"is not a URL ({err}; got {shown(value)}): send the image's http(s) or data: URL"
        ) from None
    if parts.scheme not in IMAGE_URL_SCHEMES:
        got = repr(parts.scheme) if parts.scheme else "none"
        raise ValueError(
            f"the scheme must be http, https or data (got {got}): send the image's full URL, "
            "a data: URL, or the image itself in image_encoding"
        )
    if parts.scheme != "data" and _is_metadata_endpoint(parts):
        raise ValueError(
            f"must not point at a cloud metadata endpoint (got {shown(value)}): Reflexio "
            "refuses it; send the image's own URL"
        )
    return value


def _is_metadata_endpoint(parts: SplitResult) -> bool:
    host = (parts.hostname or "").lower()
    if host in METADATA_HOSTS:
        return True
    try:
        return str(ipaddress.ip_address(host)) in METADATA_IPS
    except ValueError:
        pass
    try:
        port = parts.port  # Reflexio resolves (host, port); a bad port ends its check here
        # Numeric forms such as 2852039166 or 0xa9fea9fe resolve without DNS; Reflexio would
        # also resolve a real name, which the bridge does not do (no traffic beyond the URL).
        found = socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        return False
    return any(str(address[4][0]) in METADATA_IPS for address in found)


class Strict(BaseModel):
    """Unknown fields are an error: a typo must never vanish silently."""

    model_config = ConfigDict(extra="forbid")


class ToolUsed(Strict):
    """A tool the agent called while producing a turn."""

    tool_name: str = Field(min_length=1, max_length=1000, description="Name of the tool called.")
    tool_data: Annotated[dict[str, Any], AfterValidator(_check_tool_data)] = Field(
        default_factory=dict[str, Any],
        description="The tool's inputs and/or outputs as a JSON object.",
    )
    status: str = Field(
        default="",
        max_length=MAX_TOOL_STATUS_CHARS,
        description="Outcome, e.g. 'success' or 'error' (at most 100 characters).",
    )


class InteractionData(Strict):
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
        default="",
        max_length=10_000,
        validate_default=True,
        description="What the user_action did, e.g. 'clicked Buy'; required with a user_action.",
    )
    interacted_image_url: Annotated[str, AfterValidator(_check_image_url)] = Field(
        default="",
        max_length=2048,
        description="http(s) or data: URL of an image the user interacted with.",
    )
    image_encoding: str = Field(
        default="",
        max_length=15_000_000,
        description="Base64 image attached to the turn, instead of interacted_image_url; the "
        "whole publish must stay under 10 MiB.",
    )
    tools_used: list[ToolUsed] = Field(
        default_factory=list[ToolUsed], max_length=1000, description="Tools called for this turn."
    )
    created_at: UnixSeconds | None = Field(
        default=None,
        description=f"When the turn happened, Unix seconds (0 to {MAX_TIMESTAMP}, year 9999); "
        "omit for now.",
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


def _check_source(value: str) -> str:
    if value and not SOURCE_PATTERN.fullmatch(value):
        example = "my-agent" if secret_kind(value) else suggest_source(value)
        raise ValueError(f"must be {SOURCE_RULE}; e.g. {example!r}")
    return value


def suggest_source(value: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._:-]+", "-", value.lower()).strip("-._:")
    return cleaned[:128] or "my-agent"


Source = Annotated[str, Field(max_length=128), AfterValidator(_check_source)]


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
    created_at: Annotated[int, BeforeValidator(_whole_seconds)] = Field(description="Unix seconds.")
    role: str = "User"
    content: str = ""
    expert_content: str = ""
    user_action: str = "none"
    user_action_description: str = ""
    interacted_image_url: str = ""
    tools_used: list[StoredToolUse] = Field(default_factory=list[StoredToolUse])

    @computed_field(description="created_at as ISO 8601, UTC.")
    @property
    def time(self) -> str:
        return iso_time(self.created_at)


def newest_first(interactions: list[Interaction]) -> list[Interaction]:
    """Newest first; among equal times (stored in whole seconds), the later id first."""
    return sorted(interactions, key=lambda i: (i.created_at, i.interaction_id), reverse=True)


class OutboxSalvage(BaseModel):
    """What was read back from a damaged outbox file into the fresh one that replaced it."""

    damage: str = Field(description="What SQLite found wrong with the file.")
    moved_to: str = Field(description="Where the damaged file is kept (it is never deleted).")
    at: str = Field(description="When it was replaced, ISO 8601 UTC.")
    salvaged: int = Field(description="Rows read back whole and kept in the fresh outbox.")
    waiting: int = Field(description="Of them, publishes still to deliver (they are sent).")
    failed: int = Field(description="Of them, publishes Reflexio had refused, kept as failed.")
    unreadable: int = Field(description="Rows known to have been in the file but not readable.")
    unreadable_request_ids: list[str] = Field(
        default_factory=list[str], description="request_ids of those rows, where known (<= 20)."
    )
    unknown_seq_ranges: list[tuple[int, int]] = Field(
        default_factory=list[tuple[int, int]],
        description="Row numbers that could not be read at all: rows there, if any, are lost.",
    )
    detail: str = Field(description="All of it in one sentence, as the start-up log says it.")


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


class OutboxStatus(BaseModel):
    """The outbox in front of Reflexio."""

    path: str
    available: bool = Field(description="Whether the outbox file can be written now.")
    waiting: int = Field(description="Publishes not yet taken by Reflexio.")
    waiting_bytes: int
    oldest_age_seconds: float | None = Field(
        default=None, description="How long the oldest waiting publish has waited."
    )
    failed: int = Field(description="Publishes Reflexio refused for good, kept with the reason.")
    last_error: str | None = None
    circuit: Literal["closed", "open"] = Field(
        description="open: Reflexio failed repeatedly; reads fail fast and publishes are "
        "queued until a probe finds it back."
    )
    damaged_files_moved_aside: int = 0
    salvage: OutboxSalvage | None = Field(
        default=None,
        description="Set when this process found the outbox damaged: what was read back from "
        "it into a fresh one, and what could not be.",
    )
    waiting_for_other_urls: dict[str, int] = Field(default_factory=dict[str, int])


class BackendStatus(BaseModel):
    """Which store serves the calls, and whether it can be reached."""

    backend: Literal["embedded", "reflexio"]
    location: str = Field(description="The store's file, or the Reflexio server's URL.")
    reachable: bool
    learning: bool = Field(description="Whether profiles and playbooks are learned.")
    user_id: str | None = Field(
        default=None, description="The user this status was read for (the caller's)."
    )
    user_interactions: int | None = Field(
        default=None, description="Interactions stored for that user, when cheap to tell."
    )
    interactions: int | None = Field(
        default=None, description="Interactions stored for all users, when the store tells."
    )
    users: int | None = Field(default=None, description="Distinct users, when the store tells.")
    detail: str = ""
    outbox: OutboxStatus | None = Field(
        default=None, description="Publishes kept for Reflexio until it confirms them."
    )


class KnownIds(BaseModel):
    """Ids that begin with a prefix (user ids, session ids), most recently active first, for
    completing an argument."""

    values: list[str]
    total: int | None = Field(
        default=None, description="How many ids match, when the store can tell."
    )
    has_more: bool = Field(default=False, description="More ids match than `values` holds.")


class SessionSummary(BaseModel):
    """One session (conversation) of a user: its id, how many turns it keeps, and when it was
    last published to."""

    session_id: str
    turns: int
    published_at: int = Field(description="Unix seconds of the session's latest publish.")


class SessionPage(BaseModel):
    """A page of a user's sessions, latest publish first."""

    sessions: list[SessionSummary]
    has_more: bool = Field(description="Sessions after this page may exist.")
