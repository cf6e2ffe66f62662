"""The README's reference stays true: every tool, resource, template and prompt the server
registers is in it, each tool with an example call, and every setting in its table."""

from __future__ import annotations

import re
from pathlib import Path

from mcp import Client

from reflexio_mcp.server import build_server
from reflexio_mcp.settings import ENVIRONMENT, Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


async def test_every_tool_resource_template_and_prompt_is_in_the_reference(
    tmp_path: Path,
) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path, allow_admin=True)
    async with Client(build_server(settings)) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        templates = [
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        ]
        prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
    reference = section("Tools")
    for tool in tools:
        assert f"| `{tool}` |" in reference, tool
        assert re.search(rf"^`{tool} \{{", reference, re.MULTILINE), f"no example call of {tool}"
    for uri in [*resources, *templates]:
        assert f"| `{uri}`" in section("Resources"), uri
        assert (
            f"Reading `{uri.replace('{user_id}', 'me').replace('{session_id}', 'trip-42')}`"
            in (section("Resources"))
            or uri == "reflexio://interactions/recent"
        ), f"no example read of {uri}"
    for prompt in prompts:
        assert f"| `{prompt}` |" in section("Prompts"), prompt


def test_every_setting_is_in_the_configuration_table() -> None:
    table = section("Configuration")
    for variable in ENVIRONMENT.values():
        assert f"`{variable}`" in table, variable
