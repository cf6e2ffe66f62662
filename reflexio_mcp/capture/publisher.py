"""Exchanges published as one user, their secrets redacted, as any publish: the one way in for
`import` and the capture hook."""

from __future__ import annotations

import hashlib

import anyio
from pydantic import ValidationError

from reflexio_mcp.capture.conversation import Exchange, Skipped, Tally
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.errors import InvalidInput, OutboxFull
from reflexio_mcp.core.invalid_input import invalid_input
from reflexio_mcp.core.models import Published, PublishRequest
from reflexio_mcp.core.redacted_publish import redacted

OUTBOX_WAIT_SECONDS = 120.0
"""How long an import waits for a full outbox to make room (delivery goes on meanwhile)."""


def for_user(request_id: str, user_id: str) -> str:
    """A derived request id made the user's own: two users importing the same file never
    share one (Reflexio refuses a request_id another user's publish holds)."""
    return f"{request_id}-{hashlib.sha256(user_id.encode()).hexdigest()[:8]}"


class Publisher:
    def __init__(self, backend: Backend, user_id: str, *, redact: bool, tally: Tally) -> None:
        self._backend = backend
        self.user_id = user_id
        self._redact = redact
        self.tally = tally

    async def publish(self, exchange: Exchange, where: str) -> bool:
        """Store (or queue) one exchange; False, counted as skipped, if it cannot be.

        Raises:
            ReflexioMcpError: the store failed (not the exchange): stop, and run again later.
        """
        user = exchange.user_id or self.user_id
        try:
            request = PublishRequest(
                request_id=for_user(exchange.request_id, user),
                user_id=user,
                interaction_data_list=exchange.turns,
                source=exchange.source,
                agent_version=exchange.agent_version,
                session_id=exchange.session_id,
            )
            counts: dict[str, int] = {}
            if self._redact:
                request, counts = await anyio.to_thread.run_sync(redacted, request)
            published = await self._sent(request)
        except ValidationError as err:
            self.tally.skip(Skipped(where, str(invalid_input(err))))
            return False
        except InvalidInput as err:
            self.tally.skip(Skipped(where, str(err)))
            return False
        turns = len(request.interaction_data_list)
        self.tally.sessions.add(f"{user}\x1f{request.session_id}")
        self.tally.redacted += sum(counts.values())
        if published.already_stored:
            self.tally.already_stored += turns
        else:
            self.tally.stored += turns
            self.tally.queued += turns if published.queued else 0
        return True

    async def _sent(self, request: PublishRequest) -> Published:
        waited = 0.0
        while True:
            try:
                return await self._backend.publish(request, wait_for_response=False)
            except OutboxFull:
                if waited >= OUTBOX_WAIT_SECONDS:
                    raise
                await anyio.sleep(1.0)
                waited += 1.0
