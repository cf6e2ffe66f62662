"""The text a model reads of a listing tool's answer: what it needs, once, in little context.

The structured result keeps the full schema (listing.py); the text the SDK would make of it
(the whole model as JSON indented by 2, every empty field and default included) costs about 4
characters a character of what was said. Here instead: one line of compact JSON for the
answer itself (its user and, when set, truncated, next_cursor and note, and the mode a search
ran when it is not the one asked for; not the count, which is the number of lines), then one
line of compact JSON a turn, in the answer's order, with

- interaction_id, session_id (when known; else request_id, the publish it came in), time
  (ISO 8601, UTC; not also created_at), role, score (when the store gave one, 2 decimals)
  and content (when not empty), then every other field that is not its default;
- user_id only where it is not the answer's (get_all_interactions: every turn);
- a search's context turns right after the hit they are next to, each marked
  `"context_of": <the hit's interaction_id>` and without the session_id it shares with it.

Every string is JSON-escaped, so content is shown whole and unaltered and a line never
breaks inside it: the text is JSON Lines.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from json.encoder import encode_basestring  # pyright: ignore[reportUnknownVariableType]
from typing import Any

from mcp_types import CallToolResult, TextContent

from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.models import Interaction
from reflexio_mcp.surface.listing import ContextTurn, InteractionList, SearchAnswer

_LEADING = ("interaction_id", "user_id", "session_id", "request_id", "time", "role", "score")
"""Shown first, in this order, by their own rules."""
_NOT_SHOWN = frozenset({*_LEADING, "created_at", "context_of"})
_NOT_IN_HEADER = frozenset({"interactions", "context", "count"})


def answered(answer: InteractionList, *, mode_asked: SearchMode | None = None) -> CallToolResult:
    """The tool result: the compact text, and the whole answer as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=answer_text(answer, mode_asked=mode_asked))],
        structured_content=answer.model_dump(mode="json"),
    )


def answer_text(answer: InteractionList, *, mode_asked: SearchMode | None = None) -> str:
    """The answer as JSON Lines: the answer's own fields, then its turns (see the module).
    `mode_asked`: the search_mode a search was asked for."""
    lines = [_header(answer, mode_asked)]
    context: dict[int, list[ContextTurn]] = {}
    if isinstance(answer, SearchAnswer):
        for turn in answer.context:
            context.setdefault(turn.context_of, []).append(turn)
    for hit in answer.interactions:
        lines.append(_line(hit, answer.user_id))
        lines += (
            _line(turn, answer.user_id, next_to=hit) for turn in context.get(hit.interaction_id, [])
        )
    return "\n".join(lines)


def _header(answer: InteractionList, mode_asked: SearchMode | None) -> str:
    fields = {
        name: value
        for name in type(answer).model_fields
        if name not in _NOT_IN_HEADER
        and not ((value := getattr(answer, name)) is None or value is False)
    }
    if "search_mode_effective" in fields and fields["search_mode_effective"] == mode_asked:
        del fields["search_mode_effective"]
    return _json(fields)


def _line(turn: Interaction, user_id: str | None, *, next_to: Interaction | None = None) -> str:
    return (
        "{" + ",".join(f'"{name}":{value}' for name, value in _fields(turn, user_id, next_to)) + "}"
    )


def _fields(
    turn: Interaction, user_id: str | None, next_to: Interaction | None
) -> Iterator[tuple[str, str]]:
    """(name, value as JSON) of what the turn's line shows, in order."""
    if next_to is not None:
        yield "context_of", str(next_to.interaction_id)
    yield "interaction_id", str(turn.interaction_id)
    if turn.user_id != user_id:
        yield "user_id", _string(turn.user_id)
    if turn.session_id:
        if next_to is None or turn.session_id != next_to.session_id:
            yield "session_id", _string(turn.session_id)
    else:
        yield "request_id", _string(turn.request_id)
    yield "time", _string(turn.time)
    yield "role", _string(turn.role)
    if turn.score is not None and math.isfinite(turn.score):
        yield "score", f"{turn.score:.2f}"
    for name, default in _shown_defaults(type(turn)):
        value = getattr(turn, name)
        if value == default:
            continue
        if isinstance(value, str):
            yield name, _string(value)
        else:  # nested models: their own defaults go too (a tool's empty status or data)
            yield (
                name,
                _json(turn.model_dump(mode="json", include={name}, exclude_defaults=True)[name]),
            )


@functools.cache
def _shown_defaults(model: type[Interaction]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of the fields a turn's line shows when not their default, once per
    model: pydantic's get_default inspects the default factory's signature at every call."""
    return tuple(
        (name, field.get_default(call_default_factory=True))
        for name, field in model.model_fields.items()
        if name not in _NOT_SHOWN
    )


_string = encode_basestring
"""A string as JSON (what json.dumps with ensure_ascii=False makes of it, without building an
encoder for each one). Field names are plain identifiers: written as they are."""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
