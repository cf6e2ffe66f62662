"""Reflexio's own rate limiter (on by default: 60 publishes a minute per client), via the tools,
with reflexio-mcp's pacing off so the limiter is met: the 61st publish is kept, not refused."""

from __future__ import annotations

from pathlib import Path

from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings
from tests.support.reflexio_server import required_reflexio_server

RATE_LIMITED = "Reflexio's rate limit refused the call (Rate limit exceeded: 60 per 1 minute)"


async def test_the_61st_publish_in_a_minute_is_queued_naming_the_rate_limit(
    tmp_path: Path,
) -> None:
    with required_reflexio_server(tmp_path, extra_env={"RATELIMIT_ENABLED": "true"}) as reflexio:
        settings = Settings(url=reflexio.url, max_retries=0, data_dir=tmp_path, publish_rate=0)
        async with Client(build_server(settings)) as client:
            arguments = {"user_id": "busy", "user_message": "hi", "agent_response": "ho"}
            for n in range(60):
                result = await client.call_tool("publish_interaction", arguments)
                assert result.structured_content is not None
                assert result.structured_content["status"] == "stored", n
            result = await client.call_tool("publish_interaction", arguments)
            assert not result.is_error
            published = result.structured_content
            assert published is not None
            status = await client.call_tool(
                "get_publish_status", {"user_id": "busy", "request_id": published["request_id"]}
            )
    assert published["status"] == "queued"
    assert RATE_LIMITED in published["message"]
    assert status.structured_content is not None
    assert status.structured_content["status"] == "queued"
    assert RATE_LIMITED in status.structured_content["last_error"]
