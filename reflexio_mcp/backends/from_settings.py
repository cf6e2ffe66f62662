"""The backend the settings choose, built without the MCP SDK (commands such as the capture hook
open it too, and must start fast)."""

from __future__ import annotations

from reflexio_mcp.backends.embedded.embedder import EmbeddingChoice
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.settings import Settings


def build_backend(settings: Settings, *, meaning: bool = True) -> Backend:
    """Reflexio (behind the outbox) when the settings name it (or a URL), else the embedded
    store. Without `meaning`, the embedded store neither loads its model nor indexes (a
    short-lived command: the server indexes what it publishes later)."""
    if not settings.uses_reflexio:
        embedding = EmbeddingChoice(
            enabled=meaning and not settings.words_only, model_file=settings.embedding_model
        )
        return EmbeddedStore(settings.data_folder, embedding=embedding)
    # Imported here: the embedded store's start-up need not load the Reflexio stack (~20 ms).
    from reflexio_mcp.backends.reflexio.api import ReflexioApi
    from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
    from reflexio_mcp.backends.reflexio.outbox import Outbox

    client = ReflexioApi(
        settings.reflexio_url,
        api_key=settings.api_key,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=settings.max_retries,
    )
    outbox = Outbox(
        settings.data_folder,
        client.url,
        max_rows=settings.outbox_max_rows,
        max_bytes=int(settings.outbox_max_mb * 2**20),
    )
    return ReflexioBackend(
        client,
        outbox,
        publish_rate=settings.publish_rate,
        timeout=settings.timeout,
        deadline=settings.deadline,
    )
