"""The `reflexio-mcp` command: read settings, set up logging, serve MCP over stdio."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from reflexio_mcp import __version__
from reflexio_mcp.settings import SettingsError, add_arguments, load_settings

logger = logging.getLogger("reflexio_mcp")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server until its client disconnects. Exits 2 on invalid configuration."""
    parser = argparse.ArgumentParser(
        prog="reflexio-mcp",
        description="MCP server for the interactions an agent keeps in Reflexio.",
    )
    parser.add_argument("--version", action="version", version=f"reflexio-mcp {__version__}")
    add_arguments(parser)
    flags = parser.parse_args(argv)
    try:
        settings = load_settings(flags, os.environ)
    except SettingsError as err:
        parser.exit(2, f"reflexio-mcp: {err}\n")
    configure_logging(settings.log_level)

    from reflexio_mcp.server import build_server  # imports the MCP SDK: keep --help fast

    server = build_server(settings)
    logger.info("reflexio-mcp %s serving over stdio, backend: %s", __version__, settings.url)
    server.run("stdio")


def configure_logging(level: str) -> None:
    """Everything to stderr: stdout carries the stdio protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # One line per HTTP request is noise in a client's log; our client logs at DEBUG itself.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
