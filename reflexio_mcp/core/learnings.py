"""What Reflexio learns from published turns: user profiles, user playbooks and the agent's
playbooks (aggregated across users), and the interface a backend that learns offers for them.

A backend that learns (Reflexio) has a `learnings` attribute satisfying `Learnings`; one that
does not (the embedded store) has none, and `learnings_of` answers None for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from reflexio_mcp.core.errors import InvalidInput, NotFound
from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.shown import shown

LearningKind = Literal["profile", "user_playbook", "agent_playbook"]
KINDS: tuple[LearningKind, ...] = ("profile", "user_playbook", "agent_playbook")
OWN_KINDS: tuple[LearningKind, ...] = ("profile", "user_playbook")
"""The kinds that belong to one user; agent playbooks are shared by every user."""

NEEDS_REFLEXIO = (
    "profiles and playbooks are learned only by a Reflexio backend, and this server stores "
    "interactions in its embedded file: start it with REFLEXIO_URL set to a Reflexio server"
)


class Learning(BaseModel):
    """One thing Reflexio learned, as a tool shows it."""

    kind: LearningKind
    id: str = Field(description="Its kind and Reflexio's id (profile:<id>), for delete_learning.")
    content: str
    learned_at: str = Field(description="When it was learned or last changed (ISO 8601 UTC).")
    user_id: str | None = Field(default=None, description="Whose it is; none for agent playbooks.")
    request_id: str | None = Field(default=None, description="The publish it was learned from.")
    interaction_ids: list[int] = Field(
        default_factory=list[int], description="The turns it was learned from."
    )
    trigger: str | None = Field(default=None, description="When a playbook applies.")


class Found(BaseModel):
    """Learnings a backend answered, and how it searched."""

    learnings: list[Learning]
    search_mode: str | None = None
    """The search mode that ran, when the backend says (Reflexio falls back to fts offline)."""
    notes: list[str] = Field(default_factory=list[str])


def learned_text(profiles: int, playbooks: int) -> str:
    """How a publish's learning result names what was learned: "" when nothing was."""
    if not profiles and not playbooks:
        return ""
    return f"learned {profiles} profile(s), {playbooks} playbook(s)"


@runtime_checkable
class Learnings(Protocol):
    """Reads and corrections of what a backend learned. Every method raises only
    `reflexio_mcp.core.errors.ReflexioMcpError` subclasses; `user_id` is always the caller's
    (agent playbooks are everyone's)."""

    async def search(
        self,
        user_id: str,
        query: str,
        kinds: Sequence[LearningKind],
        top_k: int,
        search_mode: SearchMode,
    ) -> Found:
        """The learnings of `kinds` that match `query`, best first, at most `top_k` a kind."""
        ...

    async def current(self, user_id: str, kinds: Sequence[LearningKind], top_k: int) -> Found:
        """The current learnings of `kinds`, newest first, at most `top_k` a kind."""
        ...

    async def find(self, user_id: str, learning_id: str) -> Learning:
        """One learning by its id (`learning_key`).

        Raises:
            InvalidInput: it is no learning id.
            NotFound: none with that id (of that user, for its own kinds).
        """
        ...

    async def delete(self, user_id: str, learning_id: str) -> Learning:
        """Delete one learning; answer what was deleted.

        Raises:
            NotFound: as `find`.
        """
        ...

    async def correct(self, user_id: str, learning_id: str, content: str) -> Learning:
        """Replace one learning's content; answer it as it now reads.

        Raises:
            NotFound: as `find`.
        """
        ...

    async def from_publish(self, user_id: str, request_id: str) -> list[Learning]:
        """The profiles and user playbooks of `user_id` learned from one publish."""
        ...

    async def status(self, request_id: str) -> tuple[str, str | None]:
        """Where learning from one stored publish stands (pending, processing, done, failed,
        not_tracked), and why."""
        ...


def learnings_of(backend: object) -> Learnings | None:
    """The backend's learnings, or None for a backend that learns nothing."""
    found: object = getattr(backend, "learnings", None)
    return found if isinstance(found, Learnings) else None


def learning_key(kind: LearningKind, raw_id: str | int) -> str:
    """A learning's id as the tools show it: its kind and Reflexio's own id, which alone does
    not tell a user playbook from an agent playbook."""
    return f"{kind}:{raw_id}"


def split_learning_id(learning_id: str) -> tuple[LearningKind, str]:
    """The kind and Reflexio's own id that a learning id (`learning_key`) holds.

    Raises:
        InvalidInput: it is not one.
    """
    kind, colon, raw = learning_id.partition(":")
    for known in KINDS:
        if colon and raw and kind == known:
            return known, raw
    raise InvalidInput(
        [
            f"learning_id: {shown(learning_id)} is not an id search_learnings gave; they read "
            "kind:id, e.g. profile:3f2a9c1e-... or user_playbook:12"
        ]
    )


def learning_not_found(user_id: str, learning_id: str) -> NotFound:
    kind, _ = split_learning_id(learning_id)
    whose = "" if kind == "agent_playbook" else f" of user {user_id!r}"
    return NotFound(
        f"no {kind} {learning_id!r}{whose}: nothing was changed; find ids with search_learnings"
    )
