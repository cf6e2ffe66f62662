"""The result size budget: how many of a listing's turns fit, and how a turn too large on its
own is cut to fit.

One rule serves the tools' pages (paging, measured on the result text) and the resources'
documents (resources, measured on the whole document): show the longest run of turns from
the start that fits; if not even the first fits alone, show it cut. Cutting shortens only
CUT_FIELDS and tools_used (as its JSON): the longest of them is halved, again and again,
never below a floor, until the turn fits; if it still does not, the turn keeps its ids and
a note only. A shortened text keeps its start and says how many characters were cut (and,
with a `hint`, where to read it whole). A caller may also `bound` every turn first, each
text and each tool's data at a cap (resources: MAX_FIELD_CHARS).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reflexio_mcp.core.models import Interaction, StoredToolUse

CUT_FIELDS = (
    "content",
    "expert_content",
    "user_action_description",
    "interacted_image_url",
    "role",
)
"""The texts of a turn that may be shortened (besides tools_used); ids and times never are."""
TOOLS = "tools_used"
MIN_CUT_CHARS = 16
CONTENT_KEPT = 100
"""A cut turn keeps at least the start of what was said, unless even that cannot fit."""
TOO_LARGE = (
    "[cut: this turn is too large to show within the result size budget; "
    "raise REFLEXIO_MCP_MAX_RESULT_CHARS to read it]"
)

Fits = Callable[[Sequence[Interaction]], bool]
"""Whether these turns (a run from the start of a listing, or one cut turn) fit the budget."""


@dataclass(frozen=True)
class Fitted:
    turns: list[Interaction]
    """The first turns of the listing that fit, the first of them cut if it did not alone."""
    cut: list[int]
    """Ids of the turns that were cut to fit the budget on their own."""


def fit(
    turns: Sequence[Interaction], fits: Fits, *, cap: int | None = None, hint: str = ""
) -> Fitted:
    """The longest run of `turns` from the start that `fits`, each first `bound` at `cap`
    characters a text (if given); if not even the first fits alone, that one `cut_to_fit`."""
    bounded = [turn if cap is None else bound(turn, cap, hint=hint) for turn in turns]
    shown = _longest_fitting(bounded, fits)
    if shown or not turns:
        return Fitted(bounded[:shown], [])
    lone = cut_to_fit(turns[0], lambda turn: fits([turn]), cap=cap, hint=hint)
    return Fitted([lone], [turns[0].interaction_id])


def _longest_fitting(turns: list[Interaction], fits: Fits) -> int:
    """How many of `turns` fit, found by doubling then halving: measures about as many turns
    as fit, not every one."""
    fitting, failing = 0, 1
    while True:
        failing = min(failing, len(turns))
        if not fits(turns[:failing]):
            break
        if failing == len(turns):
            return failing
        fitting, failing = failing, failing * 2
    while failing - fitting > 1:
        middle = (fitting + failing) // 2
        if fits(turns[:middle]):
            fitting = middle
        else:
            failing = middle
    return fitting


def bound(interaction: Interaction, cap: int, *, hint: str = "") -> Interaction:
    """The turn with each text that may be shortened, and each tool's data (as JSON), cut at
    `cap` characters: every tool stays named."""
    changes: dict[str, Any] = {
        name: shortened_text(text, cap, hint=hint)
        for name in CUT_FIELDS
        if len(text := str(getattr(interaction, name))) > cap
    }
    tools = [_bounded_tool(tool, cap, hint) for tool in interaction.tools_used]
    if any(new is not old for new, old in zip(tools, interaction.tools_used, strict=True)):
        changes[TOOLS] = tools
    return interaction.model_copy(update=changes) if changes else interaction


def _bounded_tool(tool: StoredToolUse, cap: int, hint: str) -> StoredToolUse:
    text = json.dumps(tool.model_dump(mode="json")["tool_data"], ensure_ascii=False)
    if len(text) <= cap:
        return tool
    return tool.model_copy(
        update={"tool_data": {"truncated": shortened_text(text, cap, hint=hint)}}
    )


def cut_to_fit(
    interaction: Interaction,
    fits: Callable[[Interaction], bool],
    *,
    cap: int | None = None,
    hint: str = "",
) -> Interaction:
    """The turn (its texts at most `cap` characters) with its longest text shortened, in
    halves, until it `fits`; if even short texts do not fit, its ids and a note only."""
    texts = _texts(interaction)
    kept = {name: len(text) if cap is None else min(len(text), cap) for name, text in texts.items()}
    floor = {name: CONTENT_KEPT if name == "content" else MIN_CUT_CHARS for name in texts}
    candidate = interaction if cap is None else _shortened_turn(interaction, texts, kept, hint)
    while not fits(candidate):
        longer = [name for name in kept if kept[name] > floor[name]]
        if not longer:
            return interaction.model_copy(
                update={**dict.fromkeys(CUT_FIELDS[1:], ""), "content": TOO_LARGE, TOOLS: []}
            )
        name = max(longer, key=lambda key: len(json.dumps(texts[key][: kept[key]])))
        kept[name] = max(kept[name] // 2, floor[name])
        candidate = _shortened_turn(interaction, texts, kept, hint)
    return candidate


def _texts(interaction: Interaction) -> dict[str, str]:
    texts = {name: str(getattr(interaction, name)) for name in CUT_FIELDS}
    texts[TOOLS] = (
        json.dumps([t.model_dump() for t in interaction.tools_used])
        if interaction.tools_used
        else ""
    )
    return texts


def _shortened_turn(
    interaction: Interaction, texts: dict[str, str], kept: dict[str, int], hint: str
) -> Interaction:
    shortened = {key: shortened_text(texts[key], kept[key], hint=hint) for key in texts}
    tools = shortened.pop(TOOLS)
    changes: dict[str, Any] = {key: text for key, text in shortened.items() if text != texts[key]}
    if tools != texts[TOOLS]:
        changes[TOOLS] = [StoredToolUse(tool_name="(cut to fit)", tool_data={"truncated": tools})]
    return interaction.model_copy(update=changes) if changes else interaction


def shortened_text(text: str, keep: int, *, hint: str = "") -> str:
    """`text` if at most `keep` characters, else its start and how much was cut (`hint`
    says where to read it whole)."""
    if len(text) <= keep:
        return text
    return f"{text[:keep]}… [cut: {len(text) - keep} more characters{hint}]"
