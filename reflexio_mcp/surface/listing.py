"""What the listing tools answer (search_interactions, get_interactions,
get_all_interactions), as their structured result: the full declared schema, which the SDK
validates every answer against. The text a model reads of it is answer_text's."""

from __future__ import annotations

from pydantic import BaseModel, Field

from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.models import Interaction


class InteractionList(BaseModel):
    """Interactions, in the order the backend ranked them."""

    user_id: str | None = Field(
        description="The user whose interactions these are; null for every user "
        "(get_all_interactions)."
    )
    count: int = Field(description="Interactions in this answer.")
    interactions: list[Interaction]
    truncated: bool = Field(
        default=False,
        description="More results than fit in one answer: call again with next_cursor.",
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the rest of this listing."
    )
    note: str | None = Field(default=None, description="Anything the caller should know.")


class ContextTurn(Interaction):
    """A turn shown for its place next to a hit in the hit's session, not as a hit."""

    context_of: int = Field(description="interaction_id of the hit it is next to.")


class SearchAnswer(InteractionList):
    """A search's hits, best first, and how the store searched."""

    search_mode_effective: SearchMode | None = Field(
        default=None, description="The mode the store ran; null when it does not say."
    )
    context: list[ContextTurn] = Field(
        default_factory=list[ContextTurn],
        description="With `context`: the turns around each hit in its session that are not "
        "hits themselves, each shown once, in the hits' order.",
    )
