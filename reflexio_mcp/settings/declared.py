"""What a setting is declared with besides its type and default (`Source`), and the constants
the declarations and their error messages share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

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
HTTP = "HTTP transports"
"""The --help section of the settings that only the HTTP transports read."""


@dataclass(frozen=True)
class Source:
    """Where a setting is read from besides its default, and how it is explained."""

    env: str
    """Its environment variable."""
    flag: bool = True
    """Whether it has a flag, named after the field (--data-dir); a secret has none, since a
    flag would show it in the process list."""
    group: str | None = None
    """The --help section it is listed in; None: the first."""
    show_default: bool = False
    """Its --help text ends with its default (", 8000")."""
    parse: Callable[[str], object] | None = None
    """How the flag's value is read; None: by the field's type (a Literal lists its choices)."""
    takes: str | None = None
    """What to set it to, where its type and bounds do not say it (in error messages)."""
    unset_means: str | None = None
    """What leaving it unset means, where its default does not say it."""


def source_of(model: type[BaseModel], name: str) -> Source:
    """The Source declared with the field `name` of `model`."""
    return next(meta for meta in model.model_fields[name].metadata if isinstance(meta, Source))


def flag_name(name: str) -> str:
    """The flag of the setting `name`: --data-dir for data_dir."""
    return "--" + name.replace("_", "-")


def shown(value: object) -> str:
    """A setting's value as a user writes it: true, 30 (not 30.0), 127.0.0.1."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)
