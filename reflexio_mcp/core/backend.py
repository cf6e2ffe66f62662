"""The one interface every tool and resource talks to, whichever store answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.models import (
    GetRequest,
    Interaction,
    Keyset,
    Matches,
    Published,
    PublishRequest,
    PublishStatus,
    SearchRequest,
)
from reflexio_mcp.core.status import BackendStatus, KnownIds, SessionPage

StoredListener = Callable[[str, str], Awaitable[None]]
"""Told `(user_id, session_id)` when turns published earlier are stored later."""


class Backend(Protocol):
    """Stores and finds interactions. Opened once per server, in its lifespan.

    Every method raises only `reflexio_mcp.core.errors.ReflexioMcpError` subclasses on failure.
    """

    description: str
    """One line naming the store, for logs and status: "Reflexio at http://..."."""
    learns: bool
    """Whether profiles and playbooks are learned from what is published."""
    remote: bool
    """Whether calls leave this process for another service."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> Published:
        """Store the turns of one publish.

        A request_id already stored for the same user stores nothing and answers
        `already_stored=True` (see `already_stored`). A backend with an outbox may answer
        `queued=True`: journaled, to be delivered in the background.

        Raises:
            InvalidInput: the request_id was used by another user's publish.
        """
        ...

    async def get_interactions(
        self, request: GetRequest, after: Keyset | None = None
    ) -> list[Interaction]:
        """The newest interactions of one user, newest first. With `after` (a later page of
        the listing): every turn the keyset holds, whatever was published since."""
        ...

    async def search_interactions(
        self, request: SearchRequest, among: Sequence[int] | None = None
    ) -> Matches:
        """Interactions of one user that match a query, best match first, and the mode that
        ran. With `among` (the ids this search found before, for a later page): those of them
        still stored, in any order, however they rank now."""
        ...

    async def get_all_interactions(
        self, limit: int, after: Keyset | None = None
    ) -> list[Interaction]:
        """The newest interactions of every user, newest first. With `after`: every turn the
        keyset holds, whatever was published since."""
        ...

    async def status(self, user_id: str, *, store_wide: bool = True) -> BackendStatus:
        """Which store this is, whether it answers, and how much it holds (for `user_id` where
        that is cheap to tell). Never raises: an unreachable backend is a status.

        With `store_wide` False, every count (interactions, publishes waiting or failed in an
        outbox, their errors) is of `user_id`'s alone: a caller who may not see other users'
        data learns nothing of them, only facts about the backend itself."""
        ...

    async def publish_status(self, user_id: str, request_id: str) -> PublishStatus:
        """Whether a publish of `user_id` is queued, delivered, failed, or unknown here."""
        ...

    async def find_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        """One interaction of one user, by id (to show what a delete would remove).

        Raises:
            NotFound: no interaction with that id belongs to that user.
        """
        ...

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        """Delete one interaction of one user and return what was deleted.

        Raises:
            NotFound: no interaction with that id belongs to that user.
        """
        ...

    async def session_interactions(
        self, user_id: str, session_id: str, top_k: int
    ) -> list[Interaction]:
        """The newest `top_k` interactions of one session of one user, newest first."""
        ...

    async def session_neighbours(
        self, user_id: str, interactions: Sequence[Interaction], turns: int
    ) -> dict[int, list[Interaction]]:
        """For each of `interactions` (one user's, by interaction_id): the `turns` turns just
        before it and the `turns` just after it in its session, by (created_at,
        interaction_id), oldest first, itself left out. One whose session is not known
        (session_id "") has none."""
        ...

    async def sessions(self, user_id: str, *, offset: int, limit: int) -> SessionPage:
        """A user's sessions that keep turns, latest publish first: at most `limit` of them,
        after the first `offset`."""
        ...

    async def session_ids(self, user_id: str, prefix: str, limit: int) -> KnownIds:
        """Ids of a user's sessions that begin with `prefix` (case-sensitive), latest publish
        first, at most `limit` of them (for completion; a store may look only so far)."""
        ...

    async def user_ids(self, prefix: str, limit: int) -> KnownIds:
        """Ids of users with turns that begin with `prefix` (case-sensitive), most recently
        active first, at most `limit` of them (for completion; a store may look only so
        far)."""
        ...

    def watch_stored(self, listener: StoredListener) -> Callable[[], None]:
        """Have `listener` told `(user_id, session_id)` whenever the turns of a publish that
        was answered `queued` are stored (delivered from an outbox). A store that stores every
        publish at once never tells. Returns the function that stops it."""
        ...


def already_stored(request_id: str, *, same_user: bool) -> Published:
    """The answer to a request_id seen before: nothing stored twice, or a clash to fix.

    Raises:
        InvalidInput: the request_id belongs to a publish this user cannot see.
    """
    if not same_user:
        raise InvalidInput(
            [
                f"request_id: {request_id!r} was already used by another publish "
                "(another user's, or one whose turns were all deleted); give a new request_id, "
                "or omit it for a fresh one"
            ]
        )
    return Published(
        message=f"request_id {request_id!r} was already stored by an earlier publish: "
        "nothing was stored twice",
        already_stored=True,
    )
