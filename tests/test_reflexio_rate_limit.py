"""Reflexio's own rate limiter (on by default: 60 publishes a minute per client), via the tools."""

from __future__ import annotations

from pathlib import Path

from mcp import Client
from mcp_types import TextContent

from reflexio_mcp.server import build_server
from reflexio_mcp.settings import Settings
from tests.reflexio_server import required_reflexio_server


async def test_the_61st_publish_in_a_minute_is_a_clear_rate_limit_error(tmp_path: Path) -> None:
    with required_reflexio_server(tmp_path, extra_env={"RATELIMIT_ENABLED": "true"}) as reflexio:
        settings = Settings(url=reflexio.url, max_retries=0, data_dir=tmp_path)
        async with Client(build_server(settings)) as client:
            arguments = {"user_id": "busy", "user_message": "hi", "agent_response": "ho"}
            for n in range(60):
                result = await client.call_tool("publish_interaction", arguments)
                assert not result.is_error, n
            result = await client.call_tool("publish_interaction", arguments)
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, TextContent)
    expected = "Reflexio's rate limit refused the call (Rate limit exceeded: 60 per 1 minute)"
    assert expected in block.text
    assert "wait a minute" in block.text
