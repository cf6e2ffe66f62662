"""Reflexio's own HTTP API, spoken directly (not through reflexio-mcp): what it holds, and
publishes that skip reflexio-mcp's redaction, as another client of the same server makes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx2

from reflexio_mcp.backends.reflexio.outbox import Outbox

HEADERS = {"User-Agent": "reflexio-mcp-tests"}
"""Reflexio refuses clients whose user agent it finds suspicious (curl's, httpx's)."""
PAGE = 50


@dataclass(frozen=True)
class StoredTurn:
    user_id: str
    session_id: str
    request_id: str
    role: str
    content: str


def stored_turns(url: str, user_id: str) -> list[StoredTurn]:
    """Every turn Reflexio holds for `user_id`, with its publish's session, oldest first."""
    turns: list[tuple[int, StoredTurn]] = []
    offset = 0
    while True:
        answer = _post(
            url, "/api/get_requests", {"user_id": user_id, "top_k": PAGE, "offset": offset}
        )
        sessions = cast(list[dict[str, Any]], answer["sessions"])
        for session in sessions:
            for request in cast(list[dict[str, Any]], session["requests"]):
                for turn in cast(list[dict[str, Any]], request["interactions"]):
                    stored = StoredTurn(
                        user_id=str(turn["user_id"]),
                        session_id=str(session["session_id"]),
                        request_id=str(turn["request_id"]),
                        role=str(turn["role"]),
                        content=str(turn["content"]),
                    )
                    turns.append((int(turn["interaction_id"]), stored))
        if not answer.get("has_more") or not sessions:
            break
        offset += PAGE
    return [turn for _, turn in sorted(turns, key=lambda pair: pair[0])]


def publish_directly(
    url: str,
    user_id: str,
    session_id: str,
    turns: list[tuple[str, str]],
    *,
    learn: bool = False,
) -> dict[str, Any]:
    """One publish of (role, content) turns, as Reflexio's own CLI or SDK would make it; with
    `learn`, Reflexio extracts at once and answers when done (MOCK_LLM_RESPONSE learns the
    profile "User mentioned: <the last turn>" and a playbook quoting it)."""
    body = {
        "request_id": f"direct-{uuid.uuid4().hex}",
        "user_id": user_id,
        "session_id": session_id,
        "interaction_data_list": [{"role": role, "content": content} for role, content in turns],
        "force_extraction": learn,
    }
    params = {"wait_for_response": "true"} if learn else None
    answer = _post(url, "/api/publish_interaction", body, params=params)
    assert answer["success"], answer
    return answer


def _post(
    url: str, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
) -> dict[str, Any]:
    response = httpx2.post(f"{url}{path}", json=body, params=params, headers=HEADERS, timeout=120)
    response.raise_for_status()
    return cast(dict[str, Any], response.json())


async def waiting_in_outbox(data: Path, url: str) -> int:
    """Publishes for `url` still queued in the outbox of the data folder `data`."""
    async with Outbox(data, url) as outbox:
        return (await outbox.stats()).waiting
