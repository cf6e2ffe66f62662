"""The annotated types that tool signatures and models share (ids, times, counts, sources),
with their checks: the schema a client sees and the check a request meets are one thing."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from reflexio_mcp.core.limits import (
    IMAGE_URL_SCHEMES,
    MAX_ID_CHARS,
    MAX_INTEGER,
    MAX_RESULTS,
    MAX_TIMESTAMP,
    MAX_TOOL_DATA_DEPTH,
    METADATA_HOSTS,
    METADATA_IPS,
    SOURCE_PATTERN,
    SOURCE_RULE,
)
from reflexio_mcp.core.shown import secret_kind, shown

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


def lowercase(value: Any) -> Any:
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


def check_tool_data(value: dict[str, Any]) -> dict[str, Any]:
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


def check_image_url(value: str) -> str:
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


def _check_source(value: str) -> str:
    if value and not SOURCE_PATTERN.fullmatch(value):
        example = "my-agent" if secret_kind(value) else suggest_source(value)
        raise ValueError(f"must be {SOURCE_RULE}; e.g. {example!r}")
    return value


def suggest_source(value: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._:-]+", "-", value.lower()).strip("-._:")
    return cleaned[:128] or "my-agent"


_SOURCE_OR_EMPTY = f"^({SOURCE_PATTERN.pattern.removeprefix('^').removesuffix('$')})?$"
"""SOURCE_PATTERN, or empty, for JSON Schema."""


# The pattern is for clients to read: the check itself suggests a valid source when it fails.
Source = Annotated[
    str,
    Field(max_length=128, json_schema_extra={"pattern": _SOURCE_OR_EMPTY}),
    AfterValidator(_check_source),
]
