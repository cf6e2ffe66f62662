"""What the server opens once, in its lifespan, and every tool and resource reaches via ctx."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from reflexio_mcp.core import defaults
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.surface.access_scope import acting_user_id


@dataclass(frozen=True)
class AppState:
    backend: Backend
    default_user_id: str
    session_id: str
    """Reflexio requires a session_id: publishes that give none share this process's own."""
    max_result_chars: int = defaults.MAX_RESULT_CHARS
    """Results larger than this are paged (result_pages)."""
    deadline: float = defaults.DEADLINE_SECONDS
    """Seconds a tool call may take (request_deadline stops it then)."""
    redact_secrets: bool = True
    """Secrets in published turns are replaced by markers before they are stored."""
    confirm_deletes: bool = True
    """delete_interaction asks the user (or needs confirm=true) before deleting."""

    def user(self, named: str = "") -> str:
        """Whom a call acts for (access_scope.acting_user_id): the caller's own user (a
        token's, or the pinned one), else the user it `named`, else the server's default.
        Naming another user than a pinned caller's own is refused before the call gets here."""
        return acting_user_id(self.default_user_id, named)


ToolContext = Context[AppState, Any]


def app_state(ctx: ToolContext) -> AppState:
    return ctx.request_context.lifespan_context
