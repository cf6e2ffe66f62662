"""What a client sees of the tools: the whole tools/list, pinned, within its size budget, and
the manifest kept in step.

After an intended change to a tool's schema or description, refresh the snapshot with
`REFLEXIO_MCP_UPDATE_SNAPSHOT=1 uv run pytest tests/unit/surface/test_tools_list.py` and review
its diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.settings import Settings

ROOT = Path(__file__).parents[3]
SNAPSHOT = Path(__file__).parents[2] / "snapshots" / "tools_list.json"
MAX_LIST_CHARS = 10_000
"""Every session pays for the tool list in context: all of it, compact, with every tool."""


async def tools_list(settings: Settings, **backend: Any) -> list[dict[str, Any]]:
    async with Client(build_server(settings, **backend)) as client:
        tools = (await client.list_tools()).tools
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


async def test_tools_list_matches_the_snapshot(tmp_path: Path) -> None:
    listed = await tools_list(Settings(backend="embedded", data_dir=tmp_path, allow_admin=True))
    if os.environ.get("REFLEXIO_MCP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(listed, indent=1, ensure_ascii=False) + "\n")
    assert listed == json.loads(SNAPSHOT.read_text())


def compact_chars(listed: list[dict[str, Any]]) -> int:
    return len(json.dumps(listed, separators=(",", ":"), ensure_ascii=False))


@pytest.mark.parametrize("allow_admin", [False, True])
async def test_the_tool_list_fits_its_budget(tmp_path: Path, allow_admin: bool) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path, allow_admin=allow_admin)
    assert compact_chars(await tools_list(settings)) <= MAX_LIST_CHARS


async def test_on_reflexio_the_default_tools_with_the_learnings_tools_fit_the_budget() -> None:
    # Port 9 (discard) on loopback: nothing answers; listing tools needs no backend.
    listed = await tools_list(Settings(), backend=ReflexioApi("http://127.0.0.1:9", max_retries=0))
    assert {"search_learnings", "delete_learning"} <= {tool["name"] for tool in listed}
    assert compact_chars(listed) <= MAX_LIST_CHARS


async def test_on_reflexio_only_the_open_world_hint_and_the_learnings_tools_differ(
    tmp_path: Path,
) -> None:
    embedded = await tools_list(Settings(backend="embedded", data_dir=tmp_path, allow_admin=True))
    remote = await tools_list(
        Settings(allow_admin=True), backend=ReflexioApi("http://127.0.0.1:9", max_retries=0)
    )
    learnings = [tool for tool in remote if tool["name"] in ("search_learnings", "delete_learning")]
    assert [tool["name"] for tool in learnings] == ["search_learnings", "delete_learning"]
    remote = [tool for tool in remote if tool not in learnings]
    for tool in embedded:  # the spec's default for openWorldHint is true: left out on Reflexio
        assert tool["annotations"].pop("openWorldHint") is False
        if not tool["annotations"]:
            del tool["annotations"]
    for tool in remote:
        assert "openWorldHint" not in tool.get("annotations", {})
    assert remote == embedded


@pytest.mark.parametrize("allow_admin", [False, True])
async def test_manifest_lists_what_the_server_registers(tmp_path: Path, allow_admin: bool) -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text())
    settings = Settings(backend="embedded", data_dir=tmp_path, allow_admin=allow_admin)
    listed = await tools_list(settings)
    registered = {tool["name"]: tool["description"].split("\n")[0] for tool in listed}
    declared = {tool["name"]: tool["description"] for tool in manifest["tools"]}
    if allow_admin:
        assert set(registered) - set(declared) == {"get_all_interactions"}
        registered.pop("get_all_interactions")
    assert declared == registered
