"""Results that fit a model's context: a page of interactions within a size budget, and the
cursor that fetches the next page.

A cursor is the request that produced the listing plus how many of its results were shown:
the next page runs the same request again and skips them. It is opaque to callers (base64 of
JSON), never trusted for more than a call's own arguments would be: it is validated like
them, and the user it names is checked like a `user_id` argument.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel

from reflexio_mcp.errors import InvalidInput
from reflexio_mcp.models import Interaction, StoredToolUse

ENVELOPE_CHARS = 1_000
"""Kept free in the budget for the fields around the interactions (count, note, cursor)."""
ESCAPE_FACTOR = 6
"""JSON can take up to 6 characters for one (a control character as \\u0000)."""
MIN_FIELD_CHARS = 200


@dataclass(frozen=True)
class Page:
    interactions: list[Interaction]
    shown_until: int
    """Index, in the whole listing, just past the last interaction shown."""
    cut: list[int]
    """Ids of interactions whose long text was cut to fit the budget on its own."""

    def note(self, total: int) -> str | None:
        """What the caller should know about this page of a listing of `total` results."""
        parts: list[str] = []
        if self.shown_until < total:
            parts.append(
                f"truncated to fit the result size budget: {total - self.shown_until} more "
                "result(s); call again with cursor set to next_cursor for them"
            )
        if self.cut:
            ids = ", ".join(str(i) for i in self.cut)
            parts.append(
                f"the long text of interaction(s) {ids} was cut to fit the result size budget "
                "(REFLEXIO_MCP_MAX_RESULT_CHARS)"
            )
        return "; ".join(parts) or None


def fit_page(found: list[Interaction], start: int, budget: int) -> Page:
    """The interactions of `found` from `start` on that fit in `budget` characters of JSON.
    At least one is shown (cut to fit, if it is larger than the budget alone)."""
    room = budget - ENVELOPE_CHARS
    rest = found[start:]
    if sum(_upper_bound(i) for i in rest) <= room:  # the common case: no JSON measured
        return Page(rest, len(found), [])
    kept: list[Interaction] = []
    cut: list[int] = []
    used = 0
    for interaction in rest:
        size = len(interaction.model_dump_json())
        if used + size > room:
            if kept:
                break
            interaction = _cut_to(interaction, room)
            cut.append(interaction.interaction_id)
            size = room
        kept.append(interaction)
        used += size
    return Page(kept, start + len(kept), cut)


def _upper_bound(interaction: Interaction) -> int:
    text = (
        len(interaction.content)
        + len(interaction.expert_content)
        + len(interaction.user_action_description)
        + len(interaction.interacted_image_url)
        + len(interaction.role)
        + len(interaction.request_id)
        + len(interaction.user_id)
        + len(interaction.user_action)
    )
    tools = (
        len(json.dumps([t.model_dump() for t in interaction.tools_used]))
        if interaction.tools_used
        else 0
    )
    return ESCAPE_FACTOR * (text + tools) + 300


def _cut_to(interaction: Interaction, room: int) -> Interaction:
    """The interaction with its longest text shortened, in halves, until its JSON fits."""
    texts = {
        "content": interaction.content,
        "expert_content": interaction.expert_content,
        "user_action_description": interaction.user_action_description,
        "tools_used": json.dumps([t.model_dump() for t in interaction.tools_used])
        if interaction.tools_used
        else "",
    }
    kept = {name: len(text) for name, text in texts.items()}
    candidate = interaction
    while len(candidate.model_dump_json()) > room:
        name = max(kept, key=lambda key: kept[key])
        if kept[name] <= MIN_FIELD_CHARS:
            break
        kept[name] //= 2
        shortened = {key: _shortened(texts[key], kept[key]) for key in texts}
        tools = shortened.pop("tools_used")
        if tools != texts["tools_used"]:
            cut = StoredToolUse(tool_name="(cut to fit)", tool_data={"truncated": tools})
            candidate = interaction.model_copy(update={**shortened, "tools_used": [cut]})
        else:
            candidate = interaction.model_copy(update=shortened)
    return candidate


def _shortened(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    return f"{text[:keep]}… [cut: {len(text) - keep} more characters]"


def make_cursor(tool: str, request: BaseModel, shown_until: int) -> str:
    payload = {"tool": tool, "request": request.model_dump(mode="json"), "skip": shown_until}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class Cursor:
    request: dict[str, Any]
    skip: int


def read_cursor(cursor: str, tool: str) -> Cursor:
    """The request and position a cursor of `tool` carries.

    Raises:
        InvalidInput: the cursor is not one this server gave for `tool`.
    """
    problem = (
        f"cursor: not a next_cursor that {tool} gave; pass next_cursor exactly as it came, or "
        "call again without cursor"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload: Any = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput([problem]) from None
    if not isinstance(payload, dict):
        raise InvalidInput([problem])
    fields = cast(dict[str, Any], payload)
    request, skip = fields.get("request"), fields.get("skip")
    if fields.get("tool") != tool or not isinstance(request, dict) or not isinstance(skip, int):
        raise InvalidInput([problem])
    if skip < 0 or isinstance(skip, bool):
        raise InvalidInput([problem])
    return Cursor(cast(dict[str, Any], request), skip)
