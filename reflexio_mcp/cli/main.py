"""The `reflexio-mcp` command: its flags, and which command runs (serve, doctor, config,
outbox, demo). Exits 2 on configuration that cannot work, 1 when the server cannot start."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reflexio_mcp import __version__

logger = logging.getLogger("reflexio_mcp")


class Parser(argparse.ArgumentParser):
    def unknown_flag(self, argv: Sequence[str]) -> str | None:
        """The first `--flag` no argument declares, named with the nearest one that is.
        argparse would blame the flag's value instead ("invalid choice: '/tmp/x'")."""
        import difflib  # only for a flag that is wrong

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
    # Start-up makes ~150,000 objects (pydantic, the MCP SDK) that live as long as the process,
    # and little garbage: the cyclic collector's passes over them while they are made are
    # wasted, ~10 % of a server's cold start. Off until the command is known; the server turns
    # it back on once start-up is over (serve.py), every other command at once. The modules
    # that make them are imported below, in _main, so that they are made with it off.
    gc.disable()
    try:
        try:
            _main(sys.argv[1:] if argv is None else argv)
        finally:
            gc.enable()  # a caller in-process (a --help, a bad flag) gets its collector back
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (`doctor --json | head`): no traceback. Python's recipe:
        # point stdout at devnull so the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _check_targets(parser: Parser, flags: argparse.Namespace) -> None:
    """The positional arguments each command takes, and what to do when they are wrong."""
    from reflexio_mcp.cli.config import CLIENTS

    command, targets = flags.command, flags.targets
    if flags.hooks and not (command == "config" and targets == ["claude-code"]):
        parser.exit(2, "reflexio-mcp: --hooks goes with `config claude-code`\n")
    if command == "config":
        if not targets:
            parser.exit(2, f"reflexio-mcp: config needs a client: one of {', '.join(CLIENTS)}\n")
        if len(targets) > 1 or targets[0] not in CLIENTS:
            choices = ", ".join(repr(c) for c in CLIENTS)
            parser.exit(
                2, f"reflexio-mcp: invalid choice: {targets[-1]!r} (choose from {choices})\n"
            )
    elif command == "import":
        if not targets:
            parser.exit(2, "reflexio-mcp: import needs the files or folders to import\n")
    elif command == "hook":
        if targets != ["claude-code"]:
            parser.exit(2, "reflexio-mcp: hook takes the agent whose hook it is: claude-code\n")
    elif targets:
        parser.exit(2, f"reflexio-mcp: {targets[0]!r} goes with `config`\n")


def _main(argv: Sequence[str]) -> None:
    # Here, not at the top: they import pydantic, made with the collector off (main).
    from reflexio_mcp.cli.config import CLIENTS
    from reflexio_mcp.cli.serve import configure_logging
    from reflexio_mcp.core.errors import ConfigurationError, ReflexioMcpError
    from reflexio_mcp.settings import SettingsError, add_arguments, load_settings
    from reflexio_mcp.settings.unknown_variables import unknown_variables

    parser = Parser(
        prog="reflexio-mcp",
        description="MCP server for the interactions an agent keeps in Reflexio.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "demo", "outbox", "doctor", "config", "import", "hook"],
        default="serve",
        help="serve: MCP over stdio (default) or HTTP (--transport); demo: start a server "
        "on a throwaway embedded store and show each tool working through a real MCP "
        "client; outbox: show the publishes waiting for Reflexio and those it refused; "
        "doctor: check the settings, the backend, the files and the transport; config "
        "CLIENT: print the JSON a client needs to run this server (with --hooks: the Claude "
        "Code hooks that capture and recall sessions); import PATH...: publish Claude Code "
        "or Codex transcripts and Reflexio CLI payload files; hook claude-code: run as a "
        "Claude Code hook (reads the event on stdin)",
    )
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="CLIENT|PATH",
        help=f"with config: the client to configure ({', '.join(CLIENTS)}); with import: the "
        "files or folders to import; with hook: the agent (claude-code)",
    )
    parser.add_argument(
        "--hooks",
        action="store_true",
        help="with config claude-code: print the settings.json hooks block instead",
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
    _check_targets(parser, flags)
    if flags.command != "serve":
        gc.enable()  # the server's start-up turns it back on itself (serve.py)
    if flags.command == "doctor":
        from reflexio_mcp.cli.doctor import run_doctor

        sys.exit(run_doctor(flags, os.environ, as_json=flags.json))
    if flags.json:
        parser.exit(2, "reflexio-mcp: --json goes with `doctor`\n")
    try:
        settings = load_settings(flags, os.environ)
    except SettingsError as err:
        if flags.command == "hook":  # exit 2 is Claude Code's "block": a Stop hook's keeps it going
            print(f"reflexio-mcp hook: {err}", file=sys.stderr)
            return
        parser.exit(2, f"reflexio-mcp: {err}\n")
    if flags.command == "hook":
        from reflexio_mcp.cli.capture import hook_command

        hook_command(settings)  # logs to the data folder: never to Claude Code's stdout
        return
    configure_logging(settings.log_level)
    for unknown in unknown_variables(os.environ):
        logger.warning("%s (%s)", unknown.describe(), unknown.fix())

    if flags.command == "config":
        from reflexio_mcp.cli.config import print_config, print_hooks

        if flags.hooks:
            print_hooks(settings)
        else:
            print_config(flags.targets[0], settings, http=flags.http)
        return
    if flags.command == "import":
        from reflexio_mcp.cli.capture import import_command

        sys.exit(import_command(settings, [Path(target) for target in flags.targets]))
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
