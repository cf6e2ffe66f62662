"""Each setting is declared once, on its Settings field: its variable, its flag (unless a
secret), its default and its help; the variable map, the flags and --help come from there."""

from __future__ import annotations

import argparse

import pytest

from reflexio_mcp.settings import ENVIRONMENT, Settings, add_arguments, parse_settings
from reflexio_mcp.settings.flags import help_text
from reflexio_mcp.settings.model import source

FLAGLESS = {"access_token", "state_key"}
"""Secrets: a flag would show them in the process list."""


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="reflexio-mcp")
    add_arguments(built)
    return built


def test_every_field_has_one_variable_and_a_flag_unless_a_secret() -> None:
    assert list(ENVIRONMENT) == list(Settings.model_fields)
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)
    assert set(vars(parser().parse_args([]))) == set(Settings.model_fields) - FLAGLESS
    assert {name for name in Settings.model_fields if not source(name).flag} == FLAGLESS


@pytest.mark.parametrize("name", sorted(set(ENVIRONMENT) - FLAGLESS))
def test_each_flag_says_its_variable_and_leaves_the_setting_unset(name: str) -> None:
    assert ENVIRONMENT[name] in help_text(name)
    assert getattr(parser().parse_args([]), name) is None


def test_help_shows_the_declared_default_where_asked() -> None:
    assert help_text("port") == "port to listen on, 8000 [REFLEXIO_MCP_PORT]"
    assert help_text("read_timeout").endswith(", 30 [REFLEXIO_MCP_READ_TIMEOUT]")
    assert help_text("api_key") == (
        "Reflexio API key; prefer the REFLEXIO_API_KEY variable, which other users cannot see "
        "in the process list"
    )
    assert "--max-retries MAX_RETRIES" in parser().format_help()


def test_a_flag_reads_its_type_and_a_variable_fills_the_same_setting() -> None:
    assert parse_settings(["--port", "9000", "--stateless"], {}).port == 9000
    assert parse_settings(["--log-level", "debug"], {}).log_level == "DEBUG"
    with pytest.raises(SystemExit):
        parse_settings(["--transport", "carrier-pigeon"], {})
    assert parse_settings([], {"REFLEXIO_MCP_PORT": "9001"}).port == 9001
    assert parse_settings(["--port", "9000"], {"REFLEXIO_MCP_PORT": "9001"}).port == 9000
