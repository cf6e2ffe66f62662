"""Hearing of resource updates: a listen stream, a 2025-era subscription, and its message
handler."""

from __future__ import annotations

import warnings
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import Client, MCPDeprecationWarning
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import Subscription
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

QUIET_SECONDS = 0.3


async def heard(sub: Subscription) -> set[str]:
    """The URIs a listen stream was told of until it stayed quiet for a moment."""
    uris: set[str] = set()
    while True:
        with anyio.move_on_after(QUIET_SECONDS) as quiet:
            event = await sub.__anext__()
            if isinstance(event, ResourceUpdated):
                uris.add(event.uri)
        if quiet.cancelled_caught:
            return uris


async def subscribe(client: Client, uri: str) -> None:
    """resources/subscribe: the 2025 wire's, which the SDK's client marks deprecated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]


class Updates:
    """What a 2025-era client was told, through its message handler."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)

    async def settled(self) -> set[str]:
        """The URIs told so far, once nothing more came for a moment."""
        seen = -1
        while seen != len(self.uris):
            seen = len(self.uris)
            await anyio.sleep(QUIET_SECONDS)
        told = set(self.uris)
        self.uris.clear()
        return told


@asynccontextmanager
async def legacy_http_client(endpoint: str, token: str, told: Updates) -> AsyncGenerator[Client]:
    """A 2025-era client over Streamable HTTP (a session, with its standalone stream)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        connection = streamable_http_client(endpoint, http_client=http)
        async with Client(connection, mode="legacy", message_handler=told) as client:
            yield client
