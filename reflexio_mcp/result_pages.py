"""Results that fit a model's context: a page of interactions within a size budget, and the
cursor that fetches the next page.

Sizes are measured on the text the model reads: the SDK writes a tool's result as JSON
indented by 2, each interaction two levels down. A cursor is the request that produced the
listing plus where the last page ended: the next page runs the request again and keeps what
comes after that point, by (time, id) for newest-first listings and by the last id shown for
ranked search, leaving out turns stored since the first page (a higher id) so that no turn is
shown twice or skipped when turns are published or deleted between pages. Cursors are opaque
to callers (compressed JSON in base64), and never trusted for more than a call's own arguments
would be: the request in one is validated like them, and the user it names is checked like a
`user_id` argument.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError

from reflexio_mcp.errors import InvalidInput
from reflexio_mcp.models import Interaction, StoredToolUse

COMPRESSED = "z"
"""Cursors are zlib-compressed JSON (a long query repeats itself), marked by this prefix."""
MAX_CURSOR_JSON = 200_000
"""No cursor this server makes inflates to more: a larger one is not ours."""
ENVELOPE_CHARS = 1_000
"""Kept free in the budget for the fields around the interactions (user, count, note)."""
ESCAPE_FACTOR = 6
"""JSON can take up to 6 characters for one (a control character as \\u0000)."""
PLAIN_TURN_CHARS = 600
"""An upper bound of what a turn without tools takes beside its text: keys, ids, indentation."""
NESTED_INDENT = 4
"""Spaces each line of an interaction gets inside the result ({"interactions": [ ... ]})."""
MIN_CUT_CHARS = 16
CONTENT_KEPT = 100
"""A cut turn keeps at least the start of what was said, unless even that cannot fit."""
TOO_LARGE = (
    "[cut: this turn is too large to show within the result size budget; "
    "raise REFLEXIO_MCP_MAX_RESULT_CHARS to read it]"
)
RECENT_IDS = 20
CUT_FIELDS = (
    "content",
    "expert_content",
    "user_action_description",
    "interacted_image_url",
    "role",
)


class Position(BaseModel):
    """Where a listing's last page ended."""

    shown: int = Field(ge=0, description="Interactions shown so far.")
    total: int = Field(ge=0, description="Interactions in the listing at its first page.")
    last_created: int
    last_id: int
    max_id: int = Field(description="The highest id at the first page: later turns are left out.")
    recent_ids: list[int] = Field(
        default_factory=list[int],
        max_length=RECENT_IDS,
        description="The last ids shown, newest last (ranked search resumes after the last one "
        "still there, so a shown turn deleted between pages moves nothing).",
    )

    def rest(self, found: list[Interaction], *, ranked: bool) -> list[Interaction]:
        """What comes after this position in the listing the request gives now."""
        known = [i for i in found if i.interaction_id <= self.max_id]
        if ranked:
            ids = [i.interaction_id for i in known]
            recent = self.recent_ids or [self.last_id]
            still = [i for i in recent if i in ids]
            # If every recent one is gone, the shown ones left are those before them.
            after = ids.index(still[-1]) + 1 if still else max(self.shown - len(recent), 0)
            rest = known[after:]
        else:
            last = (self.last_created, self.last_id)
            rest = [i for i in known if (i.created_at, i.interaction_id) < last]
        return rest[: max(self.total - self.shown, 0)]


@dataclass(frozen=True)
class Page:
    interactions: list[Interaction]
    more: int
    """Interactions of the listing left for later pages."""
    cut: list[int]
    """Ids of interactions whose long text was cut to fit the budget on its own."""

    def note(self) -> str | None:
        """What the caller should know about this page."""
        parts: list[str] = []
        if self.more:
            parts.append(
                f"truncated to fit the result size budget: {self.more} more result(s); call "
                "again with cursor set to next_cursor for them"
            )
        if self.cut:
            ids = ", ".join(str(i) for i in self.cut)
            parts.append(
                f"the long text of interaction(s) {ids} was cut to fit the result size budget "
                "(REFLEXIO_MCP_MAX_RESULT_CHARS)"
            )
        return "; ".join(parts) or None


def fit_page(candidates: list[Interaction], budget: int, *, reserved: int = 0) -> Page:
    """The first of `candidates` that fit in `budget` characters of result text, less
    `reserved` (the cursor's). At least one is shown: cut to fit if it is larger alone."""
    room = max(budget - ENVELOPE_CHARS - reserved, ENVELOPE_CHARS)
    if sum(_upper_bound(i) for i in candidates) <= room:  # the common case: nothing measured
        return Page(candidates, 0, [])
    kept: list[Interaction] = []
    cut: list[int] = []
    used = 0
    for interaction in candidates:
        size = measured(interaction)
        if used + size > room:
            if kept:
                break
            interaction = _cut_to(interaction, room)
            cut.append(interaction.interaction_id)
            size = room
        kept.append(interaction)
        used += size
    return Page(kept, len(candidates) - len(kept), cut)


def measured(interaction: Interaction) -> int:
    """Characters `interaction` takes in the result text, with its separator."""
    text = interaction.model_dump_json(indent=2)
    return len(text) + NESTED_INDENT * (text.count("\n") + 1) + 2


def _upper_bound(interaction: Interaction) -> int:
    if interaction.tools_used:  # nested tool data indents without bound: measure it
        return measured(interaction)
    text = sum(len(getattr(interaction, name)) for name in (*CUT_FIELDS, "user_action"))
    ids = len(interaction.user_id) + len(interaction.request_id)
    return ESCAPE_FACTOR * (text + ids) + PLAIN_TURN_CHARS


def _cut_to(interaction: Interaction, room: int) -> Interaction:
    """The interaction with its longest text shortened, in halves, until it fits `room`;
    if even short texts do not fit, its ids and a note only."""
    texts = {name: str(getattr(interaction, name)) for name in CUT_FIELDS}
    texts["tools_used"] = (
        json.dumps([t.model_dump() for t in interaction.tools_used])
        if interaction.tools_used
        else ""
    )
    kept = {name: len(text) for name, text in texts.items()}
    floor = {name: CONTENT_KEPT if name == "content" else MIN_CUT_CHARS for name in texts}
    candidate = interaction
    while measured(candidate) > room:
        longer = [name for name in kept if kept[name] > floor[name]]
        if not longer:
            return interaction.model_copy(
                update={**dict.fromkeys(CUT_FIELDS[1:], ""), "content": TOO_LARGE, "tools_used": []}
            )
        name = max(longer, key=lambda key: len(json.dumps(texts[key][: kept[key]])))
        kept[name] = max(kept[name] // 2, floor[name])
        shortened = {key: _shortened(texts[key], kept[key]) for key in texts}
        tools = shortened.pop("tools_used")
        changes: dict[str, Any] = dict(shortened)
        if tools != texts["tools_used"]:
            changes["tools_used"] = [
                StoredToolUse(tool_name="(cut to fit)", tool_data={"truncated": tools})
            ]
        candidate = interaction.model_copy(update=changes)
    return candidate


def _shortened(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    return f"{text[:keep]}… [cut: {len(text) - keep} more characters]"


def make_cursor(tool: str, request: BaseModel, position: Position) -> str:
    payload = {
        "tool": tool,
        "request": request.model_dump(mode="json"),
        "position": position.model_dump(),
    }
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return COMPRESSED + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def cursor_chars(tool: str, request: BaseModel, total: int) -> int:
    """How long a cursor of this listing can be (with room for its numbers to grow)."""
    widest = Position(shown=total, total=total, last_created=-(10**12), last_id=2**63, max_id=2**63)
    return len(make_cursor(tool, request, widest)) + len('"next_cursor": ""')


def first_position(found: list[Interaction]) -> Position:
    """The position before the first page of the listing `found`."""
    max_id = max((i.interaction_id for i in found), default=0)
    return Position(shown=0, total=len(found), last_created=0, last_id=0, max_id=max_id)


def after(page: Page, position: Position) -> Position:
    """The position once `page` has been shown from `position`."""
    last = page.interactions[-1]
    shown_ids = [*position.recent_ids, *(i.interaction_id for i in page.interactions)]
    return position.model_copy(
        update={
            "shown": position.shown + len(page.interactions),
            "last_created": last.created_at,
            "last_id": last.interaction_id,
            "recent_ids": shown_ids[-RECENT_IDS:],
        }
    )


def read_cursor(cursor: str, tool: str) -> tuple[dict[str, Any], Position]:
    """The request and position a cursor of `tool` carries.

    Raises:
        InvalidInput: the cursor is not one this server gave for `tool`.
    """
    problem = cursor_problem(tool)
    if not cursor.startswith(COMPRESSED):
        raise InvalidInput([problem])
    body = cursor.removeprefix(COMPRESSED)
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        inflating = zlib.decompressobj()
        raw = inflating.decompress(packed, MAX_CURSOR_JSON)
        if inflating.unconsumed_tail or not raw.startswith(b"{"):
            raise InvalidInput([problem])
        payload: Any = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError, zlib.error):
        raise InvalidInput([problem]) from None
    if not isinstance(payload, dict):
        raise InvalidInput([problem])
    fields = cast(dict[str, Any], payload)
    request = fields.get("request")
    if fields.get("tool") != tool or not isinstance(request, dict):
        raise InvalidInput([problem])
    try:
        position = Position.model_validate(fields.get("position"), strict=True)
    except ValidationError:
        raise InvalidInput([problem]) from None
    return cast(dict[str, Any], request), position


def cursor_problem(tool: str) -> str:
    return (
        f"cursor: not a next_cursor that {tool} gave; pass next_cursor exactly as it came, or "
        "call again without cursor"
    )
