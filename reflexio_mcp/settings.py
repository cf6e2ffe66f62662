"""Settings from command-line flags and environment variables; a flag wins over its variable."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from reflexio_mcp import defaults
from reflexio_mcp.redaction import display_url

DEFAULT_URL = "http://127.0.0.1:8061"
"""Where `reflexio services start` serves; used with --backend reflexio and no URL."""
DEFAULT_USER_ID = "user-default"
"""Reflexio's own default user id (reflexio.defaults.DEFAULT_USER_ID)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
BackendChoice = Literal["auto", "embedded", "reflexio"]


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
    log_level: LogLevel = "INFO"

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
    "log_level": "REFLEXIO_MCP_LOG_LEVEL",
}
"""The environment variable behind each setting. Reflexio's own tools use the REFLEXIO_ names."""


def default_data_dir() -> Path:
    """Where a user's data lives on this platform."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reflexio-mcp"


class SettingsError(Exception):
    """Configuration that cannot work; the message names the flag or variable to fix."""


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
        "--log-level", type=str.upper, help=f"DEBUG, INFO, WARNING... [{ENVIRONMENT['log_level']}]"
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
        elif environ.get(variable, "").strip():
            values[name] = environ[variable].strip()
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None


def _describe(err: ValidationError) -> str:
    lines: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        name = str(item["loc"][0]) if item["loc"] else "settings"
        where = f"--{name.replace('_', '-')} / {ENVIRONMENT.get(name, '?')}"
        lines.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(lines)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from an argument list alone (tests and embedding)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
