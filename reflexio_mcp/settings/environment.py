"""The environment variable behind each setting, and the settings an environment sets."""

from __future__ import annotations

from collections.abc import Mapping

from reflexio_mcp.settings.model import Settings, source

ENVIRONMENT = {name: source(name).env for name in Settings.model_fields}
"""The environment variable behind each setting. Reflexio's own tools use the REFLEXIO_ names."""


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings `environ` sets, by name: a variable that is empty, blank or an unfilled
    placeholder leaves its setting unset."""
    values: dict[str, str] = {}
    for name, variable in ENVIRONMENT.items():
        if (value := environ.get(variable, "").strip()) and not _unfilled(value):
            values[name] = value
    return values


def _unfilled(value: str) -> bool:
    """A placeholder a client left unexpanded (an MCPB bundle's optional
    `${user_config.data_dir}` the user did not fill in): the setting is unset."""
    return value.startswith("${") and value.endswith("}")
