"""Running `reflexio-mcp doctor` as a user does, and reading its --json report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def doctor(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "REFLEXIO_MCP_DATA_DIR": str(data_dir),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "reflexio_mcp", "doctor", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def checks(data_dir: Path, **env: str) -> tuple[int, dict[str, Any]]:
    done = doctor(data_dir, "--json", **env)
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(check for check in report["checks"] if check["name"] == name)
