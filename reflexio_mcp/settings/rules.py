"""What each setting's value must be, alone (the rules between settings are the model's)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from reflexio_mcp.core.urls import display_url
from reflexio_mcp.settings.declared import (
    DEFAULT_URL,
    MIN_STATE_KEY_CHARS,
    MIN_TOKEN_CHARS,
    NEW_TOKEN,
)


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
