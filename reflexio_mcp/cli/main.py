"""The `reflexio-mcp` command: its flags, and which command runs (serve, doctor, config,
outbox, demo). Exits 2 on configuration that cannot work, 1 when the server cannot start."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Sequence

from reflexio_mcp import __version__
from reflexio_mcp.cli.config import CLIENTS
from reflexio_mcp.cli.serve import configure_logging
from reflexio_mcp.core.errors import ConfigurationError, ReflexioMcpError
from reflexio_mcp.settings import SettingsError, add_arguments, load_settings
from reflexio_mcp.settings.unknown_variables import unknown_variables

logger = logging.getLogger("reflexio_mcp")


class Parser(argparse.ArgumentParser):
    def unknown_flag(self, argv: Sequence[str]) -> str | None:
        """The first `--flag` no argument declares, named with the nearest one that is.
        argparse would blame the flag's value instead ("invalid choice: '/tmp/x'")."""
        flags = sorted(flag for action in self._actions for flag in action.option_strings)
        for arg in argv:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if not name.startswith("--") or any(flag.startswith(name) for flag in flags):
                continue  # a value, a flag, or an abbreviation argparse accepts
            spelled = name.lower().replace("_", "-")
            nearest = (
                spelled
                if spelled in flags
                else next(iter(difflib.get_close_matches(name, flags, 1)), None)
            )
            hint = f"did you mean {nearest}?" if nearest else "see reflexio-mcp --help"
            return f"unknown flag {name}: {hint}"
        return None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until the client disconnects, or run the demo. Exits 2 on invalid configuration."""
    try:
        try:
            _main(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (`doctor --json | head`): no traceback. Python's recipe:
        # point stdout at devnull so the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _main(argv: Sequence[str]) -> None:
    parser = Parser(
        prog="reflexio-mcp",
        description="MCP server for the interactions an agent keeps in Reflexio.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "demo", "outbox", "doctor", "config"],
        default="serve",
        help="serve: MCP over stdio (default) or HTTP (--transport); demo: start a server "
        "on a throwaway embedded store and show each tool working through a real MCP "
        "client; outbox: show the publishes waiting for Reflexio and those it refused; "
        "doctor: check the settings, the backend, the files and the transport; config "
        "CLIENT: print the JSON a client needs to run this server",
    )
    parser.add_argument(
        "client",
        nargs="?",
        choices=CLIENTS,
        help="with config: the client to configure",
    )
    parser.add_argument("--json", action="store_true", help="with doctor: print the checks as JSON")
    parser.add_argument(
        "--http",
        action="store_true",
        help="with config: reach a running HTTP server (at --host/--port/--public-url) "
        "instead of starting one over stdio",
    )
    failed = parser.add_mutually_exclusive_group()
    failed.add_argument(
        "--retry-failed",
        action="store_true",
        help="with outbox: queue the publishes Reflexio refused again (after fixing the cause)",
    )
    failed.add_argument(
        "--drop-failed",
        action="store_true",
        help="with outbox: delete the publishes Reflexio refused",
    )
    parser.add_argument("--version", action="version", version=f"reflexio-mcp {__version__}")
    add_arguments(parser)
    if unknown := parser.unknown_flag(argv):
        parser.exit(2, f"reflexio-mcp: {unknown}\n")
    flags = parser.parse_args(argv)
    if flags.client is not None and flags.command != "config":
        parser.exit(2, f"reflexio-mcp: {flags.client!r} goes with `config`\n")
    if flags.command == "doctor":
        from reflexio_mcp.cli.doctor import run_doctor

        sys.exit(run_doctor(flags, os.environ, as_json=flags.json))
    if flags.json:
        parser.exit(2, "reflexio-mcp: --json goes with `doctor`\n")
    try:
        settings = load_settings(flags, os.environ)
    except SettingsError as err:
        parser.exit(2, f"reflexio-mcp: {err}\n")
    configure_logging(settings.log_level)
    for unknown in unknown_variables(os.environ):
        logger.warning("%s (%s)", unknown.describe(), unknown.fix())

    if flags.command == "config":
        if flags.client is None:
            parser.exit(2, f"reflexio-mcp: config needs a client: one of {', '.join(CLIENTS)}\n")
        from reflexio_mcp.cli.config import print_config

        print_config(flags.client, settings, http=flags.http)
        return
    if flags.http:
        parser.exit(2, "reflexio-mcp: --http goes with `config`\n")
    if flags.command == "outbox":
        import anyio

        from reflexio_mcp.cli.outbox import outbox_command

        action = (
            "retry-failed" if flags.retry_failed else "drop-failed" if flags.drop_failed else "show"
        )
        sys.exit(anyio.run(outbox_command, settings, action))
    if flags.retry_failed or flags.drop_failed:
        parser.exit(2, "reflexio-mcp: --retry-failed and --drop-failed go with `outbox`\n")

    # Both import the MCP SDK (~0.5 s): not needed for --help or a configuration error.
    if flags.command == "demo":
        from reflexio_mcp.cli.demo import run_demo

        sys.exit(run_demo())

    from reflexio_mcp.cli.serve import serve

    try:
        serve(settings)
    except* ConfigurationError as failures:
        parser.exit(2, f"reflexio-mcp: {failures.exceptions[0]}\n")
    except* ReflexioMcpError as failures:
        # The backend could not open (an unwritable or damaged store, a newer schema): say why.
        for failure in failures.exceptions:
            logger.error("cannot start: %s", failure)  # noqa: TRY400  the message is the whole story
        sys.exit(1)
