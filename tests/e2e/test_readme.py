"""The documentation stays true: every tool, resource, template and prompt the server
registers is in the reference (README.md's tables, docs/), each tool with an example call in
docs/tools.md, every setting in the README's table, and the commands it gives work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import ENVIRONMENT, Settings
from tests.support.claude_code import app_environment
from tests.support.reflexio_server import LIGHT_DEPENDENCIES, REFLEXIO_VERSION, cache_dir

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
TOOLS = (ROOT / "docs" / "tools.md").read_text()
RESOURCES_PROMPTS = (ROOT / "docs" / "resources-prompts-completions.md").read_text()
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()


def section(title: str, document: str = README) -> str:
    start = document.index(f"\n## {title}\n")
    end = document.find("\n## ", start + 1)
    return document[start : end if end != -1 else None]


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
    for tool in tools:
        assert f"| `{tool}` |" in section("Tools"), f"{tool} not in the README's table"
        assert f"| `{tool}` |" in TOOLS, tool
        assert re.search(rf"^`{tool} \{{", TOOLS, re.MULTILINE), f"no example call of {tool}"
    resources_section = section("Resources", RESOURCES_PROMPTS)
    for uri in [*resources, *templates]:
        assert f"| `{uri}`" in resources_section, uri
        assert (
            f"Reading `{uri.replace('{user_id}', 'me').replace('{session_id}', 'trip-42')}`"
            in resources_section
            or uri == "reflexio://interactions/recent"
        ), f"no example read of {uri}"
    for prompt in prompts:
        assert f"| `{prompt}` |" in section("Prompts", RESOURCES_PROMPTS), prompt


def test_every_setting_is_in_the_configuration_table() -> None:
    table = section("Configuration")
    for variable in ENVIRONMENT.values():
        assert f"`{variable}`" in table, variable


def test_the_quick_start_leads_with_a_command_that_works_from_a_clone(tmp_path: Path) -> None:
    install = section("Install")
    first_command = next(
        line.strip() for line in install.splitlines() if line.startswith("    uvx ")
    )
    assert first_command.startswith("uvx --from . reflexio-mcp ")
    [first_row] = [line for line in install.splitlines() if line.startswith("| a clone")]
    assert "today" in first_row
    for row in (line for line in install.splitlines() if line.startswith("| PyPI")):
        assert "after the first release only" in row, row
    assert "not on PyPI yet" in install
    # The quick start's own command, as a user runs it in the clone:
    done = subprocess.run(
        ["uvx", "--from", ".", "reflexio-mcp", "--version"],
        cwd=ROOT,
        env=app_environment(UV_PYTHON=sys.executable, REFLEXIO_MCP_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reflexio-mcp ")


def test_the_reflexio_install_is_the_light_one_the_tests_run() -> None:
    reflexio = section("Install")[section("Install").index("### The Reflexio server") :]
    assert "Python 3.12 or\nnewer" in reflexio
    assert "0.2.8" in reflexio  # what pip picks on 3.11
    assert f"--no-deps reflexio-ai=={REFLEXIO_VERSION}" in reflexio
    listed = " ".join(reflexio.replace("\\\n", " ").split())
    for package in LIGHT_DEPENDENCIES:
        spelled = f"'{package}'" if any(c in package for c in "<>=[") else package
        assert f" {spelled} " in listed + " ", package
    assert "OPENAI_API_KEY" in reflexio  # running it needs an LLM key


def test_the_test_cache_is_named_with_how_to_clear_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "reflexio-mcp"
    tests = section("Test it", CONTRIBUTING)
    assert "`~/.cache/reflexio-mcp/`" in tests
    assert "`rm -rf ~/.cache/reflexio-mcp`" in tests
    assert "Claude Code CLI" in tests


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_and_module_path_in_the_docs_resolves() -> None:
    documents = [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    assert len(README.splitlines()) <= 300, "the README is the front door: move detail to docs/"
    for document in documents:
        text = document.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            assert linked.is_file(), f"{document.name}: {target}"
            if fragment:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
                assert fragment in {anchor(h) for h in headings}, f"{document.name}: {target}"
        layers = r"core|secrets|backends|surface|transports|cli"
        for module in re.findall(rf"`(?:reflexio_mcp/)?((?:{layers})/[\w/.]*)`", text):
            assert (ROOT / "reflexio_mcp" / module).exists(), f"{document.name}: {module}"
        for script in re.findall(r"\bbench/\w+\.py\b", text):
            assert (ROOT / script).is_file(), f"{document.name}: {script}"
