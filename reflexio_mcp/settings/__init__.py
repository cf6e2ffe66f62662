"""Settings from command-line flags and environment variables; a flag wins over its variable.

model: the Settings model, where each setting is declared once (variable, flag, default, help),
with declared: what a declaration holds, and rules: what the values must be;
environment and flags: the variables and the flags generated from it; loading: flags over
variables over defaults; errors: what to fix when a value is invalid; folders: the platform's
data folder; unknown_variables: REFLEXIO_* variables nothing reads (typos)."""

from reflexio_mcp.settings.declared import (
    DEFAULT_PATHS,
    DEFAULT_URL,
    DEFAULT_USER_ID,
    MIN_STATE_KEY_CHARS,
    MIN_TOKEN_CHARS,
    NEW_TOKEN,
    BackendChoice,
    LogLevel,
    Transport,
)
from reflexio_mcp.settings.environment import ENVIRONMENT
from reflexio_mcp.settings.errors import SettingsError
from reflexio_mcp.settings.flags import add_arguments
from reflexio_mcp.settings.folders import default_data_dir
from reflexio_mcp.settings.loading import load_settings, parse_settings
from reflexio_mcp.settings.model import Settings

__all__ = [
    "DEFAULT_PATHS",
    "DEFAULT_URL",
    "DEFAULT_USER_ID",
    "ENVIRONMENT",
    "MIN_STATE_KEY_CHARS",
    "MIN_TOKEN_CHARS",
    "NEW_TOKEN",
    "BackendChoice",
    "LogLevel",
    "Settings",
    "SettingsError",
    "Transport",
    "add_arguments",
    "default_data_dir",
    "load_settings",
    "parse_settings",
]
