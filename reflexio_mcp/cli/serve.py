"""`reflexio-mcp` (no command): serve MCP over stdio, Streamable HTTP or SSE until stopped."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Generator
from contextlib import contextmanager

from reflexio_mcp import __version__
from reflexio_mcp.settings import Settings

logger = logging.getLogger("reflexio_mcp")

TERMINAL_NOTICE = (
    "reflexio-mcp serves MCP over stdio for MCP clients, which start it themselves; typing "
    "here does nothing useful. See it work: `reflexio-mcp demo`; configure a client: "
    "`reflexio-mcp config <client>` (Ctrl-D or Ctrl-C to quit)"
)


def serve(settings: Settings) -> None:
    # The cyclic collector is off through start-up (see cli.main), on again once it is over.
    gc.disable()
    with _models_built_when_first_used():
        from reflexio_mcp.app import SharedBackend, build_server
        from reflexio_mcp.backends.from_settings import build_backend
        from reflexio_mcp.surface.start_up import after_start_up
        from reflexio_mcp.transports.tokens import read_tokens_file

        if settings.transport != "stdio" and settings.tokens_file is not None:
            read_tokens_file(settings.tokens_file)  # refuse a bad file before anything starts
        backend = build_backend(settings)
        where = (
            "stdio"
            if settings.transport == "stdio"
            else f"{settings.transport} at {settings.base_url}{settings.endpoint_path}"
            + (" (stateless)" if settings.stateless and settings.transport != "sse" else "")
        )
        logger.info(
            "reflexio-mcp %s over %s (pid %d), serving %s",
            __version__,
            where,
            os.getpid(),
            backend.description,
        )
        if not backend.learns:
            logger.info("no learning on the embedded store: set REFLEXIO_URL to use Reflexio")
        for notice in settings.notices():
            logger.warning("%s", notice)
        if "--api-key" in sys.argv:
            logger.warning(
                "--api-key shows the key in the process list; set REFLEXIO_API_KEY instead"
            )
        server = None
        if settings.transport == "stdio":
            if sys.stdin.isatty():
                logger.warning("%s", TERMINAL_NOTICE)
            server = build_server(settings, backend)
    # Once nothing can fail before serving: a start-up that fails in-process leaves no thread
    # behind to freeze its caller's objects.
    after_start_up(_collect_start_up, name="reflexio-mcp-start-up-garbage")
    if server is not None:
        from reflexio_mcp.transports.stdio_pipes import serve_stdio

        serve_stdio(server)
        return
    from reflexio_mcp.transports.http_server import serve_http

    shared = SharedBackend(backend, settings.user_id)
    serve_http(
        settings,
        shared,
        lambda tokens, counting: build_server(settings, shared, tokens, counting=counting),
    )


@contextmanager
def _models_built_when_first_used() -> Generator[None]:
    """pydantic models defined meanwhile (the MCP SDK's types, the tools' and the stores'
    models) get their validators and serializers when first used, not when defined (pydantic's
    defer_build): the SDK defines hundreds, a stdio session uses a few dozen. Only classes
    defined meanwhile: pydantic's default is back once the server is built. It is a default
    pydantic keeps in a private module; if that is gone, models are built as they are defined.
    So are they on a pydantic without the lock that makes a deferred build safe when several
    worker threads first use a model at once (2.14 has it; before, a racing thread could
    validate with the parent model's validator: pydantic issues 11849, 13419).
    """
    import pydantic.main

    try:
        from pydantic._internal._config import config_defaults
    except ImportError:
        config_defaults = None
    if config_defaults is None or not hasattr(pydantic.main, "_rebuild_lock"):
        yield
        return
    before = config_defaults.get("defer_build", False)
    config_defaults["defer_build"] = True
    try:
        yield
    finally:
        config_defaults["defer_build"] = before


def _collect_start_up() -> None:
    """Collect start-up's garbage once, then set what survived aside for good (gc.freeze: later
    collections no longer walk it) and turn the collector back on."""
    gc.collect()
    gc.freeze()
    gc.enable()


def configure_logging(level: str) -> None:
    """Everything to stderr: stdout carries the stdio protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # One line per HTTP request is noise in a client's log; our client logs at DEBUG itself.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if level != "DEBUG":
        # The SDK logs a line per HTTP session at INFO (per request when stateless).
        logging.getLogger("mcp").setLevel(logging.WARNING)
