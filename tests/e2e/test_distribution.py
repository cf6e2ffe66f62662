"""What a user installs: the wheel and sdist `uv build` makes, run with uvx as the printed
client config says, and the MCPB bundle `mcpb pack` makes, unpacked and launched as Claude
Desktop launches it. Each is driven by the SDK's client over stdio."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support.claude_code import app_environment as environment
from tests.support.mcp_http import call

ROOT = Path(__file__).resolve().parents[2]
MCPB = "@anthropic-ai/mcpb@2.1.2"
LAUNCH_SECONDS = 180  # the first launch installs the runtime dependencies (from uv's cache)
NOT_SHIPPED = (".venv/", ".git/", ".ci/", "tests/", "bench/", "dist/", "__pycache__/")


def tool(name: str) -> str:
    """An executable the test needs, found on PATH (or beside this Python)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is needed and not on PATH")
    return found


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [tool("uv"), "build", "--out-dir", str(out), str(ROOT)],
        env=environment(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_wheel_and_sdist_carry_the_license_and_no_tests(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert "reflexio_mcp/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]
    with tarfile.open(sdist) as archive:
        members = [member.name.split("/", 1)[1] for member in archive.getmembers()]
    assert "LICENSE" in members
    assert "pyproject.toml" in members


@pytest.fixture
def wheel(dist: Path) -> Path:
    [built] = dist.glob("*.whl")
    return built


async def test_uvx_runs_the_wheel_as_the_printed_config_says(wheel: Path, tmp_path: Path) -> None:
    uvx = [tool("uvx"), "--isolated", "--from", str(wheel), "reflexio-mcp"]
    with anyio.fail_after(LAUNCH_SECONDS):
        printed = await anyio.run_process(
            [*uvx, "config", "claude-desktop"],
            env=environment(UV_PYTHON=sys.executable),
            cwd=tmp_path,
        )
    server = json.loads(printed.stdout)["mcpServers"]["reflexio"]
    assert Path(server["command"]).is_absolute()
    assert server["args"] == ["--from", str(wheel), "reflexio-mcp"]
    env = environment(UV_PYTHON=sys.executable, REFLEXIO_MCP_DATA_DIR=str(tmp_path / "data"))
    parameters = StdioServerParameters(command=server["command"], args=server["args"], env=env)
    with anyio.fail_after(LAUNCH_SECONDS):
        async with Client(parameters) as client:
            failed, published, text = await call(
                client,
                "publish_interaction",
                {"user_message": "Which gate does the Porto train leave from?", "agent_response":
                 "Platform 4."},
            )  # fmt: skip
            assert not failed, text
            assert published["stored"] == 2
            failed, found, text = await call(
                client, "search_interactions", {"query": "Porto train"}
            )
    assert not failed, text
    assert found["interactions"][0]["content"].startswith("Which gate")


def placeholders(text: str, values: dict[str, str]) -> str:
    """Claude Desktop's substitution of ${__dirname} and ${user_config.*}."""
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), ""), text)


async def test_the_bundle_packs_small_and_runs_as_claude_desktop_runs_it(tmp_path: Path) -> None:
    bundle = tmp_path / "reflexio-mcp.mcpb"
    with anyio.fail_after(LAUNCH_SECONDS):
        await anyio.run_process(
            [tool("npx"), "--yes", MCPB, "pack", str(ROOT), str(bundle)], env=environment()
        )
    assert bundle.stat().st_size < 1_000_000
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    shipped = [name for name in names if name.startswith(NOT_SHIPPED) or "/__pycache__/" in name]
    assert not shipped, shipped
    for needed in ("manifest.json", "LICENSE", "icon.png", "pyproject.toml", "uv.lock"):
        assert needed in names

    manifest: dict[str, Any] = json.loads((unpacked / "manifest.json").read_text())
    values = {"__dirname": str(unpacked)}
    for key, option in manifest["user_config"].items():
        if "default" in option:
            default = option["default"]
            values[f"user_config.{key}"] = (
                str(default).lower() if isinstance(default, bool) else str(default)
            )
    values["user_config.data_dir"] = str(tmp_path / "data")
    values["user_config.user_id"] = "desktop-user"
    launch = manifest["server"]["mcp_config"]
    assert launch["command"] == "uv"
    parameters = StdioServerParameters(
        command=tool("uv"),
        args=[placeholders(arg, values) for arg in launch["args"]],
        env=environment(
            **{name: placeholders(value, values) for name, value in launch["env"].items()}
        ),
    )
    with anyio.fail_after(LAUNCH_SECONDS):
        async with Client(parameters) as client:
            listed = await client.list_tools()
            failed, published, text = await call(
                client,
                "publish_interaction",
                {"user_message": "hello from the bundle", "agent_response": "hello"},
            )
    assert {t.name for t in listed.tools} == {t["name"] for t in manifest["tools"]}
    assert not failed, text
    assert published["user_id"] == "desktop-user"
    installed = {path.name.lower() for path in unpacked.glob(".venv/lib/python3*/site-packages/*")}
    assert not {"pytest", "ruff", "pyright", "hypothesis"} & installed  # runtime only
    assert "mcp" in installed


async def test_an_installed_wheel_searches_by_meaning_with_no_network(
    wheel: Path, tmp_path: Path
) -> None:
    """Installed once from the registry, then run where no network exists at all (a network
    namespace of its own, `unshare -rn`): the embedding model is in the wheels, so a paraphrase
    that shares no word with what was stored finds it."""
    uvx = [tool("uvx"), "--isolated", "--from", str(wheel), "reflexio-mcp"]
    env = environment(UV_PYTHON=sys.executable, REFLEXIO_MCP_DATA_DIR=str(tmp_path / "data"))
    with anyio.fail_after(LAUNCH_SECONDS):  # the install: dependencies into uv's cache
        await anyio.run_process([*uvx, "--version"], env=env)
    offline = StdioServerParameters(
        command=tool("unshare"),
        args=["--user", "--map-root-user", "--net", uvx[0], "--offline", *uvx[1:]],
        env=env,
    )
    with anyio.fail_after(LAUNCH_SECONDS):
        async with Client(offline) as client:
            stored = ["We chose PostgreSQL over MongoDB for the new service.", "Lunch at noon?"]
            failed, _, text = await call(
                client,
                "publish_interaction",
                {"interactions": [{"content": content} for content in stored]},
            )
            assert not failed, text
            while True:  # the vectors are made in the background
                status = await client.read_resource("reflexio://status")
                [block] = status.contents
                meaning = json.loads(getattr(block, "text", "{}"))["meaning_index"]
                assert meaning["unavailable"] is None, meaning
                if not meaning["pending"]:
                    break
                await anyio.sleep(0.1)
            failed, found, text = await call(client, "search_interactions", {"query": "datastore"})
    assert not failed, text
    assert found["search_mode_effective"] == "hybrid"
    assert [hit["content"] for hit in found["interactions"]][:1] == [stored[0]]
