"""`reflexio-mcp demo`: the main job end to end, visibly.

Spawns `reflexio-mcp` over stdio on a throwaway embedded store, drives it with the MCP SDK's
Client as Claude Desktop would, and prints each step. Its output goes to stdout: the demo is
the client here, not the server, so stdout is not a protocol channel.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any, cast

import anyio
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolResult,
    ElicitRequestParams,
    ElicitResult,
    TextContent,
    TextResourceContents,
)

from reflexio_mcp.core.errors import DemoFailed

CONVERSATION = [
    {
        "role": "User",
        "content": "My order #4471 arrived with a cracked screen. Can I get a refund?",
    },
    {
        "role": "Agent",
        "content": "Sorry about that! I have started a refund for order #4471.",
        "expert_content": "Offer a replacement first; refund only if the customer declines.",
        "tools_used": [
            {"tool_name": "orders.refund", "tool_data": {"order": 4471}, "status": "ok"}
        ],
    },
    {"role": "User", "content": "Thanks, a replacement would be even better."},
]
CALL_SECONDS = 30


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo() -> int:
    """Run the demo; 0 when every step did what it should."""
    try:
        anyio.run(_demo)
    except (DemoFailed, MCPError, OSError, TimeoutError, ExceptionGroup) as err:
        say(f"\nDEMO FAILED: {_first_leaf(err)}")
        return 1
    say("\nAll steps passed.")
    return 0


def _first_leaf(err: BaseException) -> str:
    while isinstance(err, BaseExceptionGroup):
        err = cast(BaseExceptionGroup[BaseException], err).exceptions[0]
    if isinstance(err, MCPError):
        return f"the server stopped answering ({err}); its own error is printed above"
    return str(err) or type(err).__name__


async def _demo() -> None:
    with tempfile.TemporaryDirectory(prefix="reflexio-mcp-demo-") as data_dir:
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "reflexio_mcp", "--backend", "embedded", "--data-dir", data_dir],
            env={"REFLEXIO_MCP_LOG_LEVEL": "WARNING"},
        )
        say(f"$ reflexio-mcp --backend embedded --data-dir {data_dir}   (over stdio)")
        with anyio.fail_after(CALL_SECONDS):
            async with Client(server, elicitation_callback=_user_agrees) as client:
                await _steps(client)


async def _steps(client: Client) -> None:
    tools = [tool.name for tool in (await client.list_tools()).tools]
    say(f"\n1. Connected. Tools: {', '.join(tools)}")

    published = await _call(
        client, "publish_interaction", {"interactions": CONVERSATION, "source": "demo"}
    )
    say(
        f"\n2. publish_interaction: stored {published['stored']} turns, "
        f"request_id {published['request_id']}"
    )
    say(f"   {published['message']}")

    found = await _call(client, "search_interactions", {"query": "refund"})
    say(f"\n3. search_interactions 'refund': {found['count']} match(es)")
    for interaction in found["interactions"]:
        say(f"   #{interaction['interaction_id']} {interaction['role']}: {interaction['content']}")
    if not found["count"]:
        raise DemoFailed("search found nothing for 'refund'")

    listed = await _call(client, "get_interactions", {"top_k": 10})
    say(f"\n4. get_interactions: {listed['count']} turns, newest first")
    for interaction in listed["interactions"]:
        say(
            f"   #{interaction['interaction_id']} {interaction['time']} "
            f"{interaction['role']}: {interaction['content'][:60]}"
        )

    target = found["interactions"][0]["interaction_id"]
    say(f"\n5. delete_interaction #{target}")
    deleted = await _call(client, "delete_interaction", {"interaction_id": target})
    say(f"   {deleted['message']}")

    after = await _call(client, "get_interactions", {})
    say(f"   get_interactions now returns {after['count']} turns")
    if after["count"] != listed["count"] - 1:
        raise DemoFailed("the deleted interaction is still listed")

    again = await client.call_tool("delete_interaction", {"interaction_id": target})
    say(f"   deleting #{target} again: {_text(again)}")
    if not again.is_error:
        raise DemoFailed("deleting a deleted interaction did not report not-found")

    status = await client.read_resource("reflexio://status")
    content = status.contents[0]
    if isinstance(content, TextResourceContents):
        document = json.loads(content.text)
        say(f"\n6. reflexio://status: {document['backend']} store, {document['interactions']} "
            f"interaction(s), learning: {document['learning']}")  # fmt: skip


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise DemoFailed(f"{tool} failed: {_text(result)}")
    return result.structured_content


def _text(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def _user_agrees(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    """The demo's stand-in for a user asked to confirm a delete: shows the question, says yes."""
    question = params.message.replace("\n\n", " ")
    say(f"   the server asks the user: {question}\n   the user answers: yes")
    return ElicitResult(action="accept", content={"delete": True})
