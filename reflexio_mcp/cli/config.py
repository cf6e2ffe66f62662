"""`reflexio-mcp config <client>`: the JSON a client needs to start (stdio) or reach (HTTP)
this server, ready to paste: the configuration file's document, or for Claude Code the server
entry its `claude mcp add-json` takes, with that command ready to run.

The stdio form names uvx by its absolute path: a desktop app does not start with the login
shell's PATH, and "spawn uvx ENOENT" is what users of uvx servers meet most. No secret is
printed: an API key, access token or URL password is referenced (an environment variable or
an input the client asks for), or left as a placeholder to fill.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from reflexio_mcp.settings import ENVIRONMENT, Settings

Client = Literal["claude-desktop", "claude-code", "cursor", "vscode", "windsurf"]
CLIENTS: tuple[Client, ...] = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf")
SERVER_NAME = "reflexio"
TOKEN = ENVIRONMENT["access_token"]
API_KEY_PLACEHOLDER = "<your Reflexio API key>"
PASSWORD_PLACEHOLDER = "<password>"
WHERE = {
    "claude-desktop": "Claude Desktop: Settings > Developer > Edit Config "
    "(claude_desktop_config.json); restart Claude Desktop after saving",
    "claude-code": "Claude Code: run the command below (or put the entry under "
    f'"mcpServers" > "{SERVER_NAME}" in your project\'s .mcp.json)',
    "cursor": "Cursor: ~/.cursor/mcp.json (every project) or .cursor/mcp.json (this one)",
    "vscode": "VS Code: .vscode/mcp.json in your workspace (or MCP: Open User Configuration)",
    "windsurf": "Windsurf: ~/.codeium/windsurf/mcp_config.json",
}
PASSED_ON = ("url", "user_id", "data_dir", "backend", "read_only", "pin_user", "allow_admin")
"""Settings of the running command that the printed stdio config passes on (when set)."""


def client_config(client: Client, settings: Settings, *, http: bool) -> dict[str, Any]:
    """The client's configuration document, holding one server entry."""
    entry = server_entry(client, settings, http=http)
    if client == "vscode":
        document: dict[str, Any] = {"servers": {SERVER_NAME: entry}}
        if http:
            document = {
                "inputs": [
                    {
                        "type": "promptString",
                        "id": "reflexio-token",
                        "description": f"reflexio-mcp access token ({TOKEN})",
                        "password": True,
                    }
                ],
                **document,
            }
        return document
    return {"mcpServers": {SERVER_NAME: entry}}


def server_entry(client: Client, settings: Settings, *, http: bool) -> dict[str, Any]:
    """The entry of this server in the client's configuration."""
    return _http_entry(client, settings) if http else _stdio_entry(client, settings)


def print_config(client: Client, settings: Settings, *, http: bool) -> None:
    """What the client takes on stdout (the document; for Claude Code, the entry); where it
    goes, the command to run, and any warning on stderr."""
    if http and settings.transport == "stdio":
        settings = settings.model_copy(update={"transport": "streamable-http"})
        print(
            "# for a server started with `reflexio-mcp --transport streamable-http` "
            "(give --transport sse for an SSE one)",
            file=sys.stderr,
        )
    if client == "claude-code":
        entry = server_entry(client, settings, http=http)
        print(json.dumps(entry, indent=2))
        print(f"# {WHERE[client]}:", file=sys.stderr)
        print(
            f"claude mcp add-json {SERVER_NAME} {shlex.quote(json.dumps(entry))}", file=sys.stderr
        )
        if http and settings.authenticates:
            print(
                f"# Claude Code reads the token from {TOKEN}: set it where you start `claude`",
                file=sys.stderr,
            )
    else:
        document = client_config(client, settings, http=http)
        print(json.dumps(document, indent=2))
        print(f"# {WHERE[client]}", file=sys.stderr)
        if client == "vscode" and "inputs" not in document:  # --add-mcp takes no inputs
            named = {"name": SERVER_NAME, **server_entry(client, settings, http=http)}
            print("# or run:", file=sys.stderr)
            print(f"code --add-mcp {shlex.quote(json.dumps(named))}", file=sys.stderr)
    if not http and uvx_path() is None:
        print(
            "# uvx is not on PATH: install uv (https://docs.astral.sh/uv/), then run this "
            "again to get its absolute path",
            file=sys.stderr,
        )
    if not http and settings.api_key is not None:
        print(f"# replace {API_KEY_PLACEHOLDER!r} with the key", file=sys.stderr)
    if (
        not http
        and settings.url is not None
        and PASSWORD_PLACEHOLDER in _without_password(settings.url)
    ):
        print(f"# replace {PASSWORD_PLACEHOLDER!r} in the URL with the password", file=sys.stderr)


def uvx_path() -> str | None:
    return shutil.which("uvx")


def launch_args() -> list[str]:
    """uvx's arguments: this very install's source when it came from a file (a checkout or a
    wheel), else the package from PyPI."""
    source = _installed_from()
    return ["--from", source, "reflexio-mcp"] if source else ["reflexio-mcp"]


def _installed_from() -> str | None:
    # Imported here: every start of the server imports this module (for CLIENTS), and
    # urllib.request alone costs it tens of milliseconds.
    from importlib import metadata
    from urllib.request import url2pathname

    try:
        text = metadata.distribution("reflexio-mcp").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    url = str(json.loads(text).get("url", ""))
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return url2pathname(unquote(parts.path))


HOOK_TIMEOUTS = {"SessionStart": 30, "Stop": 30, "PreCompact": 30, "SessionEnd": 30}
"""Seconds Claude Code gives each hook (the hook itself stops its work after 10). Without one
it cancels a SessionEnd hook after about 2 s; Stop runs after every answer, so a session
whose SessionEnd never runs (killed, -p) is captured all the same."""


def hooks_block(settings: Settings) -> dict[str, Any]:
    """The `hooks` of Claude Code's settings.json that capture every session and recall at
    its start, the command named by absolute path, the settings passed on before it."""
    env = " ".join(f"{name}={shlex.quote(value)}" for name, value in _stdio_env(settings).items())
    command = shlex.join([*hook_launcher(), "hook", "claude-code"])
    line = f"{env} {command}" if env else command
    return {
        "hooks": {
            event: [{"hooks": [{"type": "command", "command": line, "timeout": seconds}]}]
            for event, seconds in HOOK_TIMEOUTS.items()
        }
    }


def hook_launcher() -> list[str]:
    """This install's own `reflexio-mcp` by absolute path when it is one that stays (a venv, `uv
    tool install`, pipx): a hook runs after every answer, and uvx would resolve the package
    again each time (0.5-2 s, and the network). Run from uvx's throwaway cache, uvx itself."""
    script = Path(sys.executable).parent / "reflexio-mcp"
    throwaway = any(part.startswith("archive-v") for part in Path(sys.prefix).parts)
    if script.is_file() and not throwaway:
        return [str(script)]
    return [uvx_path() or "uvx", *launch_args()]


def print_hooks(settings: Settings) -> None:
    print(json.dumps(hooks_block(settings), indent=2))
    print(
        "# Claude Code: merge this into ~/.claude/settings.json (every project) or "
        ".claude/settings.json (this one); add the server with `reflexio-mcp config "
        "claude-code`",
        file=sys.stderr,
    )
    if settings.api_key is not None:
        print(
            f"# set {ENVIRONMENT['api_key']} where you start `claude`: the hooks read it from "
            "there (it is not written into settings.json)",
            file=sys.stderr,
        )


def _stdio_env(settings: Settings) -> dict[str, str]:
    env = {
        ENVIRONMENT[name]: _env_value(
            settings.data_folder if name == "data_dir" else getattr(settings, name)
        )
        for name in PASSED_ON
        if name in settings.model_fields_set
    }
    if ENVIRONMENT["url"] in env:
        env[ENVIRONMENT["url"]] = _without_password(env[ENVIRONMENT["url"]])
    return env


def _stdio_entry(client: Client, settings: Settings) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": uvx_path() or "uvx", "args": launch_args()}
    if client in ("claude-code", "vscode"):
        entry = {"type": "stdio", **entry}
    env = _stdio_env(settings)
    if settings.api_key is not None:
        env[ENVIRONMENT["api_key"]] = API_KEY_PLACEHOLDER
    if env:
        entry["env"] = env
    return entry


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _without_password(url: str) -> str:
    """The URL with its password (Basic auth for a proxy) replaced by a placeholder."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD_PLACEHOLDER}@{host}"))


def _http_entry(client: Client, settings: Settings) -> dict[str, Any]:
    url = f"{settings.base_url}{settings.endpoint_path}"
    bearer = {
        "claude-desktop": f"Bearer ${{{TOKEN}}}",
        "claude-code": f"Bearer ${{{TOKEN}}}",
        "cursor": f"Bearer ${{env:{TOKEN}}}",
        "vscode": "Bearer ${input:reflexio-token}",
        "windsurf": f"Bearer ${{env:{TOKEN}}}",
    }[client]
    headers = {"Authorization": bearer} if settings.authenticates else {}
    if client == "claude-desktop":
        # Its config file starts local commands only: mcp-remote carries stdio to HTTP. The
        # header goes without a space (some clients split arguments at spaces).
        args = ["-y", "mcp-remote", url]
        if headers:
            args += ["--header", "Authorization:${AUTH_HEADER}"]
        entry: dict[str, Any] = {"command": shutil.which("npx") or "npx", "args": args}
        if headers:
            entry["env"] = {"AUTH_HEADER": "Bearer <the access token>"}
        return entry
    key = "serverUrl" if client == "windsurf" else "url"
    entry = {key: url}
    if client in ("claude-code", "vscode"):
        entry = {"type": "sse" if settings.transport == "sse" else "http", **entry}
    if headers:
        entry["headers"] = headers
    return entry
