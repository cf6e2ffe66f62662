"""How the tests launch reflexio-mcp: the installed console script, as a user's MCP client would."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def server_command() -> tuple[str, list[str]]:
    """The installed console script, as a user's MCP client would launch it."""
    script = shutil.which("reflexio-mcp", path=str(Path(sys.executable).parent))
    return (script, []) if script else (sys.executable, ["-m", "reflexio_mcp"])
