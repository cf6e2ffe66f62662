"""Results that fit a model's context: a page of interactions within a size budget (the
budget's rule, measured here on a tool's result), and the cursor that fetches the next page.

Sizes are measured on the structured result as JSON indented by 2, each interaction two
levels down: the most any client shows of it (the text a model reads, answer_text's, is
shorter), so the page fits the budget both as text and as structured content. A search's
context turns (with_context) count as part of the hit they are next to.

A cursor is the request that produced the listing plus where its last page ended, so that the
next page continues exactly there: no turn shown twice, none skipped, whatever is published or
deleted between pages, and next_cursor null only once the listing (as it was at its first
page, less what was deleted) is all shown.

- Newest-first listings (get_interactions, get_all_interactions) keep a keyset (models.Keyset):
  the last turn shown by (created_at, id), the listing's oldest at its first page, and its
  highest id. The backend answers exactly the turns between the two that are not newer than
  that id, so turns stored since (even with past times, as an import has) take no slot.
- A search keeps the ids of the turns it has not shown yet, in the order its first page ranked
  them, and the backend looks those up again. A position in the ranking cannot work: the rank of
  a full-text match (bm25) depends on every stored turn, so publishing or deleting between
  pages reorders, and re-ranks in or out, turns that were never shown. The ids cost the cursor
  a few characters a turn (at most MAX_RESULTS of them); they are reserved from the budget.

Cursors are opaque to callers (the cursor module's compressed JSON), and never trusted for
more than a call's own arguments would be: the request in one is validated like them, the user
it names is checked like a `user_id` argument, and the turns it leads to are read as that
user's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.limits import MAX_RESULTS
from reflexio_mcp.core.models import Interaction, Keyset
from reflexio_mcp.surface.budget import CUT_FIELDS, fit
from reflexio_mcp.surface.cursor import NotOurCursor, decode, encode
from reflexio_mcp.surface.listing import ContextTurn

ENVELOPE_CHARS = 1_000
"""Kept free in the budget for the fields around the interactions (user, count, note)."""
ESCAPE_FACTOR = 6
"""JSON can take up to 6 characters for one (a control character as \\u0000)."""
PLAIN_TURN_CHARS = 600
"""An upper bound of what a turn without tools takes beside its text: keys, ids, indentation."""
NESTED_INDENT = 4
"""Spaces each line of an interaction gets inside the result ({"interactions": [ ... ]})."""


class Unshown(BaseModel):
    """Where a search's last page ended: the ids of the turns it has not shown, in rank order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[int] = Field(max_length=MAX_RESULTS)


Position = Keyset | Unshown


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


def fit_page(
    candidates: list[Interaction], budget: int, *, reserved: Callable[[], int] = lambda: 0
) -> Page:
    """The first of `candidates` that fit in `budget` characters of result text, less what
    `reserved` says the cursor to the rest needs. At least one is shown: cut to fit if it is
    larger alone."""
    if sum(_upper_bound(i) for i in candidates) <= _room(budget, 0):
        return Page(candidates, 0, [])  # the common case: all fit, no cursor, nothing measured
    room = _room(budget, reserved())
    listed = {id(i) for i in candidates}
    sizes: dict[int, int] = {}

    def size(interaction: Interaction) -> int:
        key = id(interaction)
        if key not in listed:  # a cut turn: measured once, by cut_to_fit
            return measured(interaction)
        if key not in sizes:
            sizes[key] = measured(interaction)
        return sizes[key]

    fitted = fit(candidates, lambda turns: sum(size(i) for i in turns) <= room)
    return Page(fitted.turns, len(candidates) - len(fitted.turns), fitted.cut)


def _room(budget: int, reserved: int) -> int:
    return max(budget - ENVELOPE_CHARS - reserved, ENVELOPE_CHARS)


def with_context(
    page: Page,
    candidates: Sequence[Interaction],
    around: Mapping[int, Sequence[Interaction]],
    budget: int,
    *,
    reserved: Callable[[], int] = lambda: 0,
) -> tuple[Page, list[ContextTurn], bool]:
    """The longest run of `page`'s hits (the first of `candidates`, fitted alone) that fits
    `budget` less `reserved()` (the cursor's) together with their context: for each hit, the
    turns `around` it that are no hit of the listing (`candidates`) and not already shown next
    to a better hit.
    If not even the first hit fits with its context, the page as it was and no context. The
    last value says whether context was left out to fit."""
    hits = {i.interaction_id for i in candidates}
    shown: set[int] = set()
    units: list[tuple[Interaction, list[ContextTurn]]] = []
    for hit in page.interactions:
        turns = [
            ContextTurn.model_validate({**dict(turn), "context_of": hit.interaction_id})
            for turn in around.get(hit.interaction_id, ())
            if turn.interaction_id not in hits and turn.interaction_id not in shown
        ]
        shown.update(turn.interaction_id for turn in turns)
        units.append((hit, turns))
    bounds = [_upper_bound(hit) + sum(_upper_bound(t) for t in turns) for hit, turns in units]
    room = _room(budget, 0 if not page.more else reserved())
    if sum(bounds) <= room:  # the common case: nothing measured
        return page, [turn for _, turns in units for turn in turns], False
    if not page.more:
        room = _room(budget, reserved())  # fewer hits shown: a cursor to the rest
    used = kept = 0
    for hit, turns in units:
        used += measured(hit) + sum(measured(turn) for turn in turns)
        if used > room:
            break
        kept += 1
    if not kept:
        return page, [], any(turns for _, turns in units)
    shown_hits = page.interactions[:kept]
    cut = [i.interaction_id for i in shown_hits if i.interaction_id in page.cut]
    fitted = Page(shown_hits, page.more + len(page.interactions) - kept, cut)
    return fitted, [turn for _, turns in units[:kept] for turn in turns], False


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


def make_cursor(tool: str, request: BaseModel, position: Position) -> str:
    return encode(
        {
            "tool": tool,
            "request": request.model_dump(mode="json"),
            "position": position.model_dump(),
        }
    )


CURSOR_SLACK = 32
"""Compressed, the ids of fewer turns can come out a little longer than those of more."""
WIDEST = Keyset(
    last_created=-(2**63), last_id=-(2**63), floor_created=-(2**63), floor_id=-(2**63),
    max_id=-(2**63),
)  # fmt: skip


def cursor_chars(tool: str, request: BaseModel, candidates: list[Interaction]) -> int:
    """How long the cursor to what is left of `candidates`, after a page of them, can be."""
    if ranked(tool):
        widest: Position = Unshown(ids=[i.interaction_id for i in candidates[1:]])
    else:
        widest = WIDEST
    return len(make_cursor(tool, request, widest)) + CURSOR_SLACK + len('"next_cursor": ""')


def ranked(tool: str) -> bool:
    """Whether the tool's listings are in rank order (else newest first)."""
    return tool == "search_interactions"


def in_order(found: list[Interaction], position: Unshown) -> list[Interaction]:
    """The turns of `found` that `position` has not shown, in its order."""
    by_id = {i.interaction_id: i for i in found}
    return [by_id[i] for i in position.ids if i in by_id]


def after(
    tool: str, page: Page, candidates: list[Interaction], position: Position | None
) -> Position:
    """The position once `page`, the first of `candidates`, has been shown from `position`
    (None at the listing's first page, whose candidates are the whole listing)."""
    if ranked(tool):
        return Unshown(ids=[i.interaction_id for i in candidates[len(page.interactions) :]])
    last = page.interactions[-1]
    if isinstance(position, Keyset):
        return position.past(last)
    return Keyset.of(candidates, last)


def read_cursor(cursor: str, tool: str) -> tuple[dict[str, Any], Position]:
    """The request and position a cursor of `tool` carries.

    Raises:
        InvalidInput: the cursor is not one this server gave for `tool`.
    """
    problem = cursor_problem(tool)
    try:
        fields = decode(cursor)
    except NotOurCursor:
        raise InvalidInput([problem]) from None
    request = fields.get("request")
    if fields.get("tool") != tool or not isinstance(request, dict):
        raise InvalidInput([problem])
    kind = Unshown if ranked(tool) else Keyset
    try:
        position = kind.model_validate(fields.get("position"), strict=True)
    except ValidationError:
        raise InvalidInput([problem]) from None
    return cast(dict[str, Any], request), position


def cursor_problem(tool: str) -> str:
    return (
        f"cursor: not a next_cursor that {tool} gave; pass next_cursor exactly as it came, or "
        "call again without cursor"
    )
