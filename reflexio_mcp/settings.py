"""Settings from command-line flags and environment variables; a flag wins over its variable."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined

from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import SettingsError
from reflexio_mcp.core.urls import display_url

DEFAULT_URL = "http://127.0.0.1:8061"
"""Where `reflexio services start` serves; used with --backend reflexio and no URL."""
DEFAULT_USER_ID = "user-default"
"""Reflexio's own default user id (reflexio.defaults.DEFAULT_USER_ID)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
BackendChoice = Literal["auto", "embedded", "reflexio"]
Transport = Literal["stdio", "streamable-http", "sse"]
DEFAULT_PATHS: dict[Transport, str] = {"stdio": "", "streamable-http": "/mcp", "sse": "/sse"}
"""The SDK's own endpoint paths."""
MIN_TOKEN_CHARS = 16
MIN_STATE_KEY_CHARS = 32
NEW_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
"""A command that prints a good access token."""


class Settings(BaseModel):
    """Everything the server needs to know, validated. repr() never shows the API key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: BackendChoice = Field(
        default="auto", description="auto: Reflexio when a URL is set, else the embedded store."
    )
    url: str | None = Field(default=None, description="Base URL of the Reflexio backend.")
    data_dir: Path | None = Field(
        default=None, description="Folder of the embedded store, and of the outbox for Reflexio."
    )
    api_key: SecretStr | None = Field(default=None, description="Sent as Authorization: Bearer.")
    user_id: str = Field(
        default=DEFAULT_USER_ID, min_length=1, description="Used when a call names none."
    )
    timeout: float = Field(
        default=defaults.TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Seconds to wait for an answer.",
    )
    connect_timeout: float = Field(
        default=defaults.CONNECT_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Seconds to wait for a connection.",
    )
    max_retries: int = Field(
        default=defaults.MAX_RETRIES,
        ge=0,
        le=10,
        description="Retries of 429/5xx/connection errors.",
    )
    deadline: float = Field(
        default=defaults.DEADLINE_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Seconds any tool call may take, all retries included.",
    )
    publish_rate: float = Field(
        default=defaults.PUBLISH_RATE_PER_MINUTE,
        ge=0,
        allow_inf_nan=False,
        description="Publishes sent to Reflexio per minute at most; 0: unpaced.",
    )
    outbox_max_rows: int = Field(
        default=defaults.OUTBOX_MAX_ROWS, ge=1, description="Publishes the outbox may hold."
    )
    outbox_max_mb: float = Field(
        default=defaults.OUTBOX_MAX_MB,
        gt=0,
        allow_inf_nan=False,
        description="Megabytes (MiB) the outbox's publishes may take.",
    )
    allow_admin: bool = Field(
        default=False, description="Register get_all_interactions (every user)."
    )
    read_only: bool = Field(
        default=False, description="Register no tool that writes (publish, delete)."
    )
    pin_user: bool = Field(
        default=False,
        description="Every call acts for user_id only; tools take no user_id argument.",
    )
    keep_secrets: bool = Field(
        default=False,
        description="Publish secrets (API keys, tokens, passwords) as sent, not redacted.",
    )
    no_confirm: bool = Field(
        default=False,
        description="delete_interaction deletes without asking the user (unattended agents).",
    )
    max_result_chars: int = Field(
        default=defaults.MAX_RESULT_CHARS,
        ge=2_000,
        le=10_000_000,
        description="Largest tool result or resource, in characters of JSON; more is paged.",
    )
    log_level: LogLevel = "INFO"

    transport: Transport = Field(default="stdio", description="How MCP clients reach the server.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on (HTTP).")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on (HTTP).")
    path: str | None = Field(
        default=None, description="Endpoint path (HTTP); default /mcp, or /sse for SSE."
    )
    stateless: bool = Field(
        default=False, description="Streamable HTTP without server-held sessions (replicas)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list[str],
        description="Host headers accepted besides the loopback names and --host itself.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list[str],
        description="Origin headers accepted besides loopback origins.",
    )
    public_url: str | None = Field(
        default=None, description="The URL clients use to reach the server (behind a proxy)."
    )
    access_token: SecretStr | None = Field(
        default=None, description="Bearer token every HTTP request must carry."
    )
    tokens_file: Path | None = Field(
        default=None, description="JSON file of access tokens, each with its user and role."
    )
    state_key: SecretStr | None = Field(
        default=None,
        description="Secret every replica shares to seal the state of a question asked by "
        "returning it (delete confirmations on 2026-07-28 clients), so the answer may reach "
        "another replica or a restarted process.",
    )
    rate_limit: float = Field(
        default=defaults.HTTP_REQUESTS_PER_MINUTE,
        ge=0,
        allow_inf_nan=False,
        description="HTTP requests per minute per access token; 0: unlimited.",
    )
    max_sessions: int = Field(
        default=defaults.MAX_SESSIONS_PER_CALLER,
        ge=1,
        le=10_000,
        description="HTTP sessions (Streamable HTTP, SSE streams) open at once per access token "
        "(per client address without one).",
    )
    read_timeout: float = Field(
        default=defaults.READ_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a client may take to send a request's headers, and again its "
        "body (HTTP); a slower one is answered 408 and disconnected.",
    )
    max_body_mb: float = Field(
        default=defaults.MAX_BODY_MB,
        gt=0,
        allow_inf_nan=False,
        description="Largest HTTP request body, MiB.",
    )

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value == "/"):
            raise ValueError(f"{value!r} is not a path below /; e.g. /mcp")
        return value

    @field_validator("access_token")
    @classmethod
    def _token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"an access token needs at least {MIN_TOKEN_CHARS} characters; make one with "
                f"{NEW_TOKEN}"
            )
        return value

    @field_validator("api_key")
    @classmethod
    def _key_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not all("!" <= char <= "~" for char in value.get_secret_value()):
            raise ValueError(
                "an API key goes in an HTTP header: printable ASCII only, without spaces or "
                "line breaks (check for a stray character pasted with it)"
            )
        return value

    @field_validator("state_key")
    @classmethod
    def _state_key_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_STATE_KEY_CHARS:
            raise ValueError(
                f"a state key needs at least {MIN_STATE_KEY_CHARS} characters; make one with "
                f"{NEW_TOKEN}"
            )
        return value

    @model_validator(mode="after")
    def _network_needs_a_token(self) -> Settings:
        if self.transport == "stdio":
            return self
        if self.access_token is not None and self.tokens_file is not None:
            raise ValueError(
                "give REFLEXIO_MCP_ACCESS_TOKEN or --tokens-file, not both (put the one token "
                "in the file)"
            )
        if not self.authenticates and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without an access token: set "
                f"REFLEXIO_MCP_ACCESS_TOKEN (make one with {NEW_TOKEN}) or --tokens-file, or "
                "listen on --host 127.0.0.1"
            )
        return self

    @property
    def authenticates(self) -> bool:
        """Whether HTTP requests must carry an access token."""
        return self.access_token is not None or self.tokens_file is not None

    @property
    def endpoint_path(self) -> str:
        return self.path or DEFAULT_PATHS[self.transport]

    @property
    def base_url(self) -> str:
        """Where clients reach the server: --public-url, else the address it listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{display_url(value)!r} is not an http(s) URL; e.g. {DEFAULT_URL}")
        return value.rstrip("/")

    @property
    def uses_reflexio(self) -> bool:
        return self.backend == "reflexio" or (self.backend == "auto" and self.url is not None)

    @property
    def reflexio_url(self) -> str:
        return self.url or DEFAULT_URL

    @property
    def data_folder(self) -> Path:
        """The folder of the embedded store, or of the outbox in front of Reflexio: `~`
        expanded and made absolute, so a client's working directory never decides where
        memories go."""
        return (self.data_dir or default_data_dir()).expanduser().resolve()

    def notices(self) -> list[str]:
        """Settings that are valid but do not do what their owner may think."""
        notices: list[str] = []
        if self.transport == "stdio":
            http_only = [
                f"--{name.replace('_', '-')}"
                for name in ("tokens_file", "stateless", "public_url")
                if getattr(self, name)
            ]
            if http_only:
                notices.append(f"{', '.join(http_only)} only apply to the HTTP transports")
        elif self.transport == "sse" and self.stateless:
            notices.append("--stateless applies to streamable-http only: SSE always has sessions")
        if self.transport != "stdio" and not self.authenticates:
            notices.append(
                "no access token: any process on this machine can call the server; set "
                "REFLEXIO_MCP_ACCESS_TOKEN or --tokens-file"
            )
        wildcard = self.transport != "stdio" and self.host in ("0.0.0.0", "::")
        if wildcard and self.authenticates and not self.public_url:
            notices.append(
                f"set --public-url to the URL clients use: without it, 401 answers point them "
                f"at {self.base_url}{self.endpoint_path}, which they cannot reach"
            )
        if wildcard and not self.allowed_hosts:
            notices.append(
                f"listening on {self.host}, but only requests addressed to a loopback name are "
                "accepted until --allowed-hosts names the host clients use (e.g. "
                "--allowed-hosts memory.example.com:*)"
            )
        if self.backend == "embedded" and self.url is not None:
            notices.append(
                "--url / REFLEXIO_URL is ignored with --backend embedded: interactions stay in "
                "the local file and nothing is learned"
            )
        return notices


ENVIRONMENT = {
    "backend": "REFLEXIO_MCP_BACKEND",
    "url": "REFLEXIO_URL",
    "data_dir": "REFLEXIO_MCP_DATA_DIR",
    "api_key": "REFLEXIO_API_KEY",
    "user_id": "REFLEXIO_USER_ID",
    "timeout": "REFLEXIO_TIMEOUT",
    "connect_timeout": "REFLEXIO_CONNECT_TIMEOUT",
    "max_retries": "REFLEXIO_MAX_RETRIES",
    "deadline": "REFLEXIO_MCP_DEADLINE",
    "publish_rate": "REFLEXIO_MCP_PUBLISH_RATE",
    "outbox_max_rows": "REFLEXIO_MCP_OUTBOX_MAX_ROWS",
    "outbox_max_mb": "REFLEXIO_MCP_OUTBOX_MAX_MB",
    "allow_admin": "REFLEXIO_MCP_ALLOW_ADMIN",
    "read_only": "REFLEXIO_MCP_READ_ONLY",
    "pin_user": "REFLEXIO_MCP_PIN_USER",
    "keep_secrets": "REFLEXIO_MCP_KEEP_SECRETS",
    "no_confirm": "REFLEXIO_MCP_NO_CONFIRM",
    "max_result_chars": "REFLEXIO_MCP_MAX_RESULT_CHARS",
    "log_level": "REFLEXIO_MCP_LOG_LEVEL",
    "transport": "REFLEXIO_MCP_TRANSPORT",
    "host": "REFLEXIO_MCP_HOST",
    "port": "REFLEXIO_MCP_PORT",
    "path": "REFLEXIO_MCP_PATH",
    "stateless": "REFLEXIO_MCP_STATELESS",
    "allowed_hosts": "REFLEXIO_MCP_ALLOWED_HOSTS",
    "allowed_origins": "REFLEXIO_MCP_ALLOWED_ORIGINS",
    "public_url": "REFLEXIO_MCP_PUBLIC_URL",
    "access_token": "REFLEXIO_MCP_ACCESS_TOKEN",
    "tokens_file": "REFLEXIO_MCP_TOKENS_FILE",
    "state_key": "REFLEXIO_MCP_STATE_KEY",
    "rate_limit": "REFLEXIO_MCP_RATE_LIMIT",
    "max_sessions": "REFLEXIO_MCP_MAX_SESSIONS",
    "read_timeout": "REFLEXIO_MCP_READ_TIMEOUT",
    "max_body_mb": "REFLEXIO_MCP_MAX_BODY_MB",
}
"""The environment variable behind each setting. Reflexio's own tools use the REFLEXIO_ names."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    """Where a user's data lives on this platform."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reflexio-mcp"


EXPECTED = {
    "url": f"an http(s) URL such as {DEFAULT_URL}",
    "api_key": "the key Reflexio was started with (printable ASCII, no spaces)",
    "access_token": f"at least {MIN_TOKEN_CHARS} characters: make one with {NEW_TOKEN}",
    "state_key": f"at least {MIN_STATE_KEY_CHARS} characters: make one with {NEW_TOKEN}",
    "path": "a path below /, such as /mcp",
    "user_id": "a user id that is not empty",
    "host": "an address such as 127.0.0.1",
    "data_dir": "a folder path, such as ~/memories",
    "tokens_file": "the path of a JSON tokens file",
    "public_url": "the URL clients use, such as https://memory.example.com",
    "allowed_hosts": "comma-separated Host values, such as memory.example.com:*",
    "allowed_origins": "comma-separated origins, such as https://app.example.com",
}
"""What a setting takes, where its type and bounds do not say it."""
UNSET_MEANS = {"url": "the embedded store", "path": "default /mcp, or /sse for SSE"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per setting; each defaults to None so the environment can fill it."""
    parser.add_argument(
        "--backend",
        choices=["auto", "embedded", "reflexio"],
        help="where interactions live; auto: Reflexio if a URL is set, else embedded "
        f"[{ENVIRONMENT['backend']}]",
    )
    parser.add_argument("--url", help=f"Reflexio backend URL [{ENVIRONMENT['url']}]")
    parser.add_argument(
        "--data-dir",
        help=f"folder of the embedded store, or of the outbox [{ENVIRONMENT['data_dir']}]",
    )
    parser.add_argument(
        "--api-key",
        help=f"Reflexio API key; prefer the {ENVIRONMENT['api_key']} variable, "
        "which other users cannot see in the process list",
    )
    parser.add_argument("--user-id", help=f"default user id [{ENVIRONMENT['user_id']}]")
    parser.add_argument(
        "--timeout", type=float, help=f"answer timeout, s [{ENVIRONMENT['timeout']}]"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        help=f"connect timeout, s [{ENVIRONMENT['connect_timeout']}]",
    )
    parser.add_argument("--max-retries", type=int, help=f"[{ENVIRONMENT['max_retries']}]")
    parser.add_argument(
        "--deadline",
        type=float,
        help=f"seconds any tool call may take in all [{ENVIRONMENT['deadline']}]",
    )
    parser.add_argument(
        "--publish-rate",
        type=float,
        help=f"publishes sent to Reflexio per minute at most, 0: unpaced "
        f"[{ENVIRONMENT['publish_rate']}]",
    )
    parser.add_argument(
        "--outbox-max-rows",
        type=int,
        help=f"publishes the outbox may hold [{ENVIRONMENT['outbox_max_rows']}]",
    )
    parser.add_argument(
        "--outbox-max-mb",
        type=float,
        help=f"MiB the outbox's publishes may take [{ENVIRONMENT['outbox_max_mb']}]",
    )
    parser.add_argument(
        "--allow-admin",
        action="store_true",
        default=None,
        help="register get_all_interactions, which reads every user "
        f"[{ENVIRONMENT['allow_admin']}]",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help=f"register no tool that writes (publish, delete) [{ENVIRONMENT['read_only']}]",
    )
    parser.add_argument(
        "--pin-user",
        action="store_true",
        default=None,
        help="every call acts for --user-id only; tools take no user_id "
        f"[{ENVIRONMENT['pin_user']}]",
    )
    parser.add_argument(
        "--keep-secrets",
        action="store_true",
        default=None,
        help="publish API keys, tokens and passwords as sent instead of redacting them "
        f"[{ENVIRONMENT['keep_secrets']}]",
    )
    parser.add_argument(
        "--no-confirm",
        action="store_true",
        default=None,
        help="delete without asking the user first, for unattended agents "
        f"[{ENVIRONMENT['no_confirm']}]",
    )
    parser.add_argument(
        "--max-result-chars",
        type=int,
        help=f"largest tool result or resource in characters; more is paged, "
        f"{defaults.MAX_RESULT_CHARS} [{ENVIRONMENT['max_result_chars']}]",
    )
    parser.add_argument(
        "--log-level", type=str.upper, help=f"DEBUG, INFO, WARNING... [{ENVIRONMENT['log_level']}]"
    )
    http = parser.add_argument_group(
        "HTTP transports",
        "The access token is read from REFLEXIO_MCP_ACCESS_TOKEN only, and the state key "
        "replicas share from REFLEXIO_MCP_STATE_KEY only (a flag would show them in the "
        "process list).",
    )
    http.add_argument(
        "--transport",
        choices=["stdio", "streamable-http", "sse"],
        help=f"stdio (default), streamable-http, or sse for legacy clients "
        f"[{ENVIRONMENT['transport']}]",
    )
    http.add_argument("--host", help=f"address to listen on, 127.0.0.1 [{ENVIRONMENT['host']}]")
    http.add_argument("--port", type=int, help=f"port to listen on, 8000 [{ENVIRONMENT['port']}]")
    http.add_argument(
        "--path", help=f"endpoint path, /mcp (or /sse for sse) [{ENVIRONMENT['path']}]"
    )
    http.add_argument(
        "--stateless",
        action="store_true",
        default=None,
        help=f"no server-held sessions, so replicas can share a load balancer "
        f"[{ENVIRONMENT['stateless']}]",
    )
    http.add_argument(
        "--allowed-hosts",
        help=f"more Host headers to accept, comma-separated, e.g. memory.example.com:* "
        f"[{ENVIRONMENT['allowed_hosts']}]",
    )
    http.add_argument(
        "--allowed-origins",
        help=f"more Origin headers to accept, comma-separated, e.g. https://app.example.com "
        f"[{ENVIRONMENT['allowed_origins']}]",
    )
    http.add_argument(
        "--public-url",
        help=f"the URL clients use, when behind a proxy [{ENVIRONMENT['public_url']}]",
    )
    http.add_argument(
        "--tokens-file",
        help=f"JSON file of access tokens with their user and role [{ENVIRONMENT['tokens_file']}]",
    )
    http.add_argument(
        "--rate-limit",
        type=float,
        help=f"requests per minute per access token, 0: unlimited [{ENVIRONMENT['rate_limit']}]",
    )
    http.add_argument(
        "--max-sessions",
        type=int,
        help=f"sessions open at once per access token, {defaults.MAX_SESSIONS_PER_CALLER} "
        f"[{ENVIRONMENT['max_sessions']}]",
    )
    http.add_argument(
        "--read-timeout",
        type=float,
        help=f"seconds a request's headers, and then its body, may take to arrive, "
        f"{defaults.READ_TIMEOUT_SECONDS:g} [{ENVIRONMENT['read_timeout']}]",
    )
    http.add_argument(
        "--max-body-mb",
        type=float,
        help=f"largest request body, MiB [{ENVIRONMENT['max_body_mb']}]",
    )


def load_settings(flags: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Merge flags over environment over defaults.

    Raises:
        SettingsError: a value is invalid; the message names its flag and variable.
    """
    values: dict[str, object] = {}
    for name, variable in ENVIRONMENT.items():
        flag = getattr(flags, name, None)
        if flag is not None:
            values[name] = flag
        elif (value := environ.get(variable, "").strip()) and not _unfilled(value):
            values[name] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        raise SettingsError(_describe(err), _fixes(err)) from None


def _unfilled(value: str) -> bool:
    """A placeholder a client left unexpanded (an MCPB bundle's optional
    `${user_config.data_dir}` the user did not fill in): the setting is unset."""
    return value.startswith("${") and value.endswith("}")


def _describe(err: ValidationError) -> str:
    lines: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(message)
            continue
        name = str(item["loc"][0])
        flag = "" if name in ("access_token", "state_key") else f"--{name.replace('_', '-')} / "
        lines.append(f"{flag}{ENVIRONMENT.get(name, '?')}: {message}")
    return "invalid configuration: " + "; ".join(lines)


def _fixes(err: ValidationError) -> str:
    fixes: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        if not item["loc"]:  # a rule across settings: its message ends with what to change
            message = item["msg"].removeprefix("Value error, ")
            fixes.append(message.partition(": ")[2] or message)
            continue
        name = str(item["loc"][0])
        if name not in Settings.model_fields:
            continue
        secret = name in ("access_token", "state_key")
        label = ENVIRONMENT[name] if secret else f"--{name.replace('_', '-')} / {ENVIRONMENT[name]}"
        field = Settings.model_fields[name]
        unset_means = UNSET_MEANS.get(name) or (
            None
            if field.default in (None, PydanticUndefined)
            else f"default {_shown(field.default)}"
        )
        unset = "" if secret or unset_means is None else f", or unset it ({unset_means})"
        fixes.append(f"set {label} to {EXPECTED.get(name) or _expected(name)}{unset}")
    return "; ".join(dict.fromkeys(fixes))


def _expected(name: str) -> str:
    """What a setting takes, from its type and bounds."""
    field = Settings.model_fields[name]
    kind = field.annotation
    if kind is bool:
        return "true or false"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(kind))
    bounds: dict[str, object] = {}
    for rule in field.metadata:
        for bound in ("ge", "gt", "le"):
            if (value := getattr(rule, bound, None)) is not None:
                bounds[bound] = value
    noun = "a whole number" if kind is int else "a number" if kind is float else "a value"
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {_shown(bounds['ge'])} to {_shown(bounds['le'])}"
    parts = [
        f"{words} {_shown(bounds[bound])}"
        for bound, words in (("ge", "of at least"), ("gt", "above"), ("le", "of at most"))
        if bound in bounds
    ]
    return " ".join([noun, *parts])


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from an argument list alone (tests and embedding)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
