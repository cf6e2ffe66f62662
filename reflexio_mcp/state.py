"""What the server opens once, in its lifespan, and every tool and resource reaches via ctx."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from reflexio_mcp.backend import Backend


@dataclass(frozen=True)
class AppState:
    backend: Backend
    default_user_id: str
    session_id: str
    """Reflexio requires a session_id: publishes that give none share this process's own."""


ToolContext = Context[AppState, Any]


def app_state(ctx: ToolContext) -> AppState:
    return ctx.request_context.lifespan_context
