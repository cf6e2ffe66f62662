"""A scripted Reflexio behind httpx2.MockTransport, and the durable backend in front of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx2

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
from reflexio_mcp.backends.reflexio.outbox import Outbox

URL = "http://127.0.0.1:8061"


Handler = Callable[[httpx2.Request], httpx2.Response]


class Backend:
    """A scripted Reflexio: `answer` decides each publish's fate; stored request_ids are
    answered "already exists", as Reflexio does."""

    def __init__(self) -> None:
        self.answer: Callable[[httpx2.Request], httpx2.Response | None] = lambda _: None
        self.stored: list[str] = []
        self.calls: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.append(request.url.path)
        if request.url.path == "/health":
            return httpx2.Response(200, json={"status": "healthy"})
        if request.url.path == "/api/search_interactions":
            return httpx2.Response(200, json={"success": True, "interactions": []})
        if request.url.path == "/api/learning_status":
            return httpx2.Response(200, json={"status": "done", "reason": "covered"})
        if request.url.path != "/api/publish_interaction":
            return httpx2.Response(200, json={"success": True, "interactions": []})
        scripted = self.answer(request)
        if scripted is not None:
            return scripted
        request_id = str(json.loads(request.content)["request_id"])
        if request_id in self.stored:
            return httpx2.Response(
                200, json={"success": False, "message": f"request_id {request_id!r} already exists"}
            )
        self.stored.append(request_id)
        return httpx2.Response(200, json={"success": True, "message": "ok"})


def durable(
    backend: Handler,
    data_dir: Path,
    *,
    rate: float = 0,
    max_rows: int = 100,
    timeout: float = 2,
    connect_timeout: float = 5,
) -> ReflexioBackend:
    client = ReflexioApi(
        URL,
        max_retries=0,
        retry_delay=0,
        connect_timeout=connect_timeout,
        transport=httpx2.MockTransport(backend),
    )
    return ReflexioBackend(
        client, Outbox(data_dir, client.url, max_rows=max_rows), publish_rate=rate, timeout=timeout
    )
