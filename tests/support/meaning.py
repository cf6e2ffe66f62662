"""Waiting for the embedded store's meaning index, which fills in the background."""

from __future__ import annotations

import anyio

from reflexio_mcp.backends.embedded.store import EmbeddedStore


async def indexed(store: EmbeddedStore, user_id: str = "u", *, seconds: float = 300) -> None:
    """Wait until every turn of the user has its vector."""
    with anyio.fail_after(seconds):
        while True:
            meaning = (await store.status(user_id, store_wide=False)).meaning_index
            if meaning is None or not meaning.pending:
                return
            await anyio.sleep(0.05)
