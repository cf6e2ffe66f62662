"""What the settings must be, alone and together, and the notices for settings that are valid
but do not do what their owner may think."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from reflexio_mcp.core.loopback import is_loopback
from reflexio_mcp.core.urls import display_url
from reflexio_mcp.settings.declared import (
    DEFAULT_URL,
    MIN_STATE_KEY_CHARS,
    MIN_TOKEN_CHARS,
    NEW_TOKEN,
    flag_name,
    source_of,
)

if TYPE_CHECKING:
    from reflexio_mcp.settings.model import Settings


def comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def path_is_absolute(value: str | None) -> str | None:
    if value is not None and (not value.startswith("/") or value == "/"):
        raise ValueError(f"{value!r} is not a path below /; e.g. /mcp")
    return value


def token_is_long(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"an access token needs at least {MIN_TOKEN_CHARS} characters; make one with "
            f"{NEW_TOKEN}"
        )
    return value


def key_fits_a_header(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not all("!" <= char <= "~" for char in value.get_secret_value()):
        raise ValueError(
            "an API key goes in an HTTP header: printable ASCII only, without spaces or "
            "line breaks (check for a stray character pasted with it)"
        )
    return value


def state_key_is_long(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value().strip()) < MIN_STATE_KEY_CHARS:
        raise ValueError(
            f"a state key needs at least {MIN_STATE_KEY_CHARS} characters; make one with "
            f"{NEW_TOKEN}"
        )
    return value


def url_is_http(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{display_url(value)!r} is not an http(s) URL; e.g. {DEFAULT_URL}")
    return value.rstrip("/")


def network_needs_a_token(settings: Settings) -> Settings:
    """HTTP off loopback needs an access token or a tokens file, and not both."""
    if settings.transport == "stdio":
        return settings
    token = source_of(type(settings), "access_token").env
    tokens_file = flag_name("tokens_file")
    if settings.access_token is not None and settings.tokens_file is not None:
        raise ValueError(f"give {token} or {tokens_file}, not both (put the one token in the file)")
    if not settings.authenticates and not is_loopback(settings.host):
        raise ValueError(
            f"refusing to listen on {settings.host} without an access token: set {token} "
            f"(make one with {NEW_TOKEN}) or {tokens_file}, or listen on "
            f"{flag_name('host')} 127.0.0.1"
        )
    return settings


def notices(settings: Settings) -> list[str]:
    """Settings that are valid but do not do what their owner may think."""
    env = {name: source_of(type(settings), name).env for name in ("access_token", "url")}
    found: list[str] = []
    if settings.transport == "stdio":
        http_only = [
            flag_name(name)
            for name in ("tokens_file", "stateless", "public_url")
            if getattr(settings, name)
        ]
        if http_only:
            found.append(f"{', '.join(http_only)} only apply to the HTTP transports")
    elif settings.transport == "sse" and settings.stateless:
        found.append("--stateless applies to streamable-http only: SSE always has sessions")
    if settings.transport != "stdio" and not settings.authenticates:
        found.append(
            "no access token: any process on this machine can call the server; set "
            f"{env['access_token']} or {flag_name('tokens_file')}"
        )
    wildcard = settings.transport != "stdio" and settings.host in ("0.0.0.0", "::")
    if wildcard and settings.authenticates and not settings.public_url:
        found.append(
            f"set --public-url to the URL clients use: without it, 401 answers point them "
            f"at {settings.base_url}{settings.endpoint_path}, which they cannot reach"
        )
    if wildcard and not settings.allowed_hosts:
        found.append(
            f"listening on {settings.host}, but only requests addressed to a loopback name are "
            "accepted until --allowed-hosts names the host clients use (e.g. "
            "--allowed-hosts memory.example.com:*)"
        )
    if settings.backend == "embedded" and settings.url is not None:
        found.append(
            f"--url / {env['url']} is ignored with --backend embedded: "
            "interactions stay in the local file and nothing is learned"
        )
    return found
