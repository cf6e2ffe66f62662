"""The contract's core cases over every network transport: the real `reflexio-mcp` process,
the real Reflexio behind it, the SDK Client in front (Streamable HTTP with sessions, without
them, and SSE)."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx2
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import INVALID_PARAMS, TextResourceContents

from tests.support.mcp_http import (
    INITIALIZE,
    MCP_HEADERS,
    HttpBridge,
    HttpTransport,
    call,
    http_bridge,
    http_client,
)
from tests.support.reflexio_server import RunningServer

API_KEY = "rk-http-7d2e91c4aa"
ACCESS_TOKEN = "mcp-token-" + "5f0c2b9e8d7a6e41"
TRANSPORTS: dict[str, tuple[HttpTransport, list[str]]] = {
    "streamable-http": ("streamable-http", []),
    "stateless": ("streamable-http", ["--stateless"]),
    "sse": ("sse", []),
}


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def bridge(
    request: pytest.FixtureRequest,
    reflexio: RunningServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HttpBridge]:
    transport, args = TRANSPORTS[request.param]
    with http_bridge(
        tmp_path_factory.mktemp(request.param),
        *args,
        "--log-level",
        "DEBUG",
        transport=transport,
        env={
            "REFLEXIO_URL": reflexio.url,
            "REFLEXIO_API_KEY": API_KEY,
            "REFLEXIO_MCP_ACCESS_TOKEN": ACCESS_TOKEN,
            "REFLEXIO_MCP_PUBLISH_RATE": "0",
        },
    ) as running:
        yield running


async def test_publish_search_get_delete_round_trip(bridge: HttpBridge, user_id: str) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    publish = {
        "user_id": user_id,
        "request_id": request_id,
        "interactions": [
            {"role": "user", "content": "Which glue holds a zeppelin model together?"},
            {"role": "assistant", "content": "Cyanoacrylate for the frame, PVA for the skin."},
        ],
    }
    async with http_client(bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN) as mcp:
        failed, published, text = await call(mcp, "publish_interaction", publish)
        assert not failed, text
        assert published["status"] == "stored"
        assert published["stored"] == 2

        failed, found, text = await call(
            mcp, "search_interactions", {"user_id": user_id, "query": "zeppelin glue"}
        )
        assert not failed, text
        assert found["user_id"] == user_id
        assert any("zeppelin" in turn["content"] for turn in found["interactions"])

        failed, listed, text = await call(mcp, "get_interactions", {"user_id": user_id})
        assert not failed, text
        assert [turn["request_id"] for turn in listed["interactions"]] == [request_id] * 2
        victim = listed["interactions"][0]["interaction_id"]

        failed, deleted, text = await call(
            mcp,
            "delete_interaction",
            {"user_id": user_id, "interaction_id": victim, "confirm": True},
        )
        assert not failed, text
        assert deleted["deleted"]["interaction_id"] == victim

        failed, again, text = await call(mcp, "publish_interaction", publish)
        assert not failed, text
        assert again["status"] == "already_stored"

        failed, left, text = await call(mcp, "get_interactions", {"user_id": user_id})
        assert not failed, text
        assert [turn["interaction_id"] for turn in left["interactions"]] != []
        assert victim not in [turn["interaction_id"] for turn in left["interactions"]]


async def test_tools_and_resources_are_listed_and_read(bridge: HttpBridge, user_id: str) -> None:
    async with http_client(bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN) as mcp:
        tools = {tool.name for tool in (await mcp.list_tools()).tools}
        assert tools == {
            "publish_interaction",
            "publish_batch",
            "get_publish_status",
            "search_interactions",
            "get_interactions",
            "delete_interaction",
            "search_learnings",  # the bridge forwards to Reflexio, which learns
            "delete_learning",
        }
        failed, _, text = await call(
            mcp,
            "publish_interaction",
            {"user_id": user_id, "user_message": "hi", "agent_response": "ho"},
        )
        assert not failed, text
        read = await mcp.read_resource(f"reflexio://users/{user_id}/interactions")
        block = read.contents[0]
        assert isinstance(block, TextResourceContents)
        document = json.loads(block.text)
        assert document["user_id"] == user_id
        assert document["count"] == 2
        status = await mcp.read_resource("reflexio://status")
        block = status.contents[0]
        assert isinstance(block, TextResourceContents)
        assert json.loads(block.text)["reachable"] is True


async def test_bad_input_is_a_clear_tool_error(bridge: HttpBridge, user_id: str) -> None:
    async with http_client(bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN) as mcp:
        failed, _, text = await call(mcp, "get_interactions", {"user_id": user_id, "top_k": 0})
        assert failed
        assert text.startswith("invalid input: top_k:"), text
        failed, _, text = await call(mcp, "search_interactions", {"user_id": user_id, "limit": 3})
        assert failed
        assert "did you mean 'top_k'" in text
        with pytest.raises(MCPError, match="invalid input: user_id"):
            await mcp.read_resource("reflexio://users/..%2F/interactions")


async def test_no_secret_in_any_log_line_or_answer(bridge: HttpBridge, user_id: str) -> None:
    """A DEBUG run that publishes, reads, fails and is refused: neither the API key nor the
    access token appears in the log, a result, or an HTTP answer."""
    seen: list[str] = []
    async with http_client(bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN) as mcp:
        for tool, arguments in [
            (
                "publish_interaction",
                {"user_id": user_id, "user_message": "a", "agent_response": "b"},
            ),
            ("search_interactions", {"user_id": user_id, "query": "a"}),
            ("get_interactions", {"user_id": user_id, "top_k": -1}),
            ("delete_interaction", {"user_id": user_id, "interaction_id": 987654321}),
            ("get_all_interactions", {}),
        ]:
            seen.append(repr(await call(mcp, tool, arguments)))
        for uri in ["reflexio://status", f"reflexio://users/{user_id}/interactions"]:
            seen.append(repr(await mcp.read_resource(uri)))
        seen.append(repr(await mcp.list_tools()))
    async with httpx2.AsyncClient() as raw:
        for token in ["wrong-token-0123456789", ACCESS_TOKEN[:-1]]:
            # SSE opens its stream with GET; Streamable HTTP takes messages by POST.
            method = "GET" if bridge.transport == "sse" else "POST"
            answer = await raw.request(
                method,
                bridge.endpoint,
                headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"},
                json=INITIALIZE,
            )
            assert answer.status_code == 401
            seen.append(f"{answer.headers} {answer.text}")
        seen.append((await raw.get(f"{bridge.base_url}/healthz")).text)
    everything = "\n".join([*seen, bridge.log_text()])
    assert "DEBUG" in bridge.log_text()
    for secret in (API_KEY, ACCESS_TOKEN):
        assert secret not in everything
    assert "Traceback" not in bridge.log_text()


def test_bridge_log_names_the_transport(bridge: HttpBridge, tmp_path: Path) -> None:
    first = bridge.log_text().splitlines()[0]
    assert f"over {bridge.transport} at {bridge.endpoint}" in first
    assert "(pid " in first


async def test_a_legacy_subscription_is_refused_where_it_could_never_fire(
    bridge: HttpBridge, user_id: str
) -> None:
    """Without sessions there is no stream to tell a 2025-era client on: say so, not silence."""
    uri = f"reflexio://users/{user_id}/interactions"
    async with http_client(
        bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN, mode="legacy"
    ) as mcp:
        with warnings.catch_warnings():  # the 2025 verb, deprecated by the 2026 protocol
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            if "--stateless" not in cast(list[str], bridge.process.args):
                await mcp.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                return
            with pytest.raises(MCPError) as refused:
                await mcp.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
    assert refused.value.error.message.startswith("this server runs with --stateless")


async def test_an_unknown_prompt_is_invalid_params_on_the_wire(bridge: HttpBridge) -> None:
    async with http_client(bridge.endpoint, transport=bridge.transport, token=ACCESS_TOKEN) as mcp:
        with pytest.raises(MCPError) as refused:
            await mcp.get_prompt("no_such_prompt", {})
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message.startswith("unknown prompt 'no_such_prompt': ")
