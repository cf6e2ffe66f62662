"""Settings from flags over environment variables over defaults."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from reflexio_mcp.settings.environment import ENVIRONMENT, from_environment
from reflexio_mcp.settings.errors import settings_error
from reflexio_mcp.settings.flags import add_arguments
from reflexio_mcp.settings.model import Settings


def load_settings(flags: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Merge flags over environment over defaults.

    Raises:
        SettingsError: a value is invalid; the message names its flag and variable.
    """
    environment = from_environment(environ)
    values: dict[str, object] = {}
    for name in ENVIRONMENT:
        if (flag := getattr(flags, name, None)) is not None:
            values[name] = flag
        elif name in environment:
            values[name] = environment[name]
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        raise settings_error(err) from None


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from an argument list alone (tests and embedding)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
