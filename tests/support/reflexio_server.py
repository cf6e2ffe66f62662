"""Runs the real Reflexio server (reflexio-ai 0.2.32) on a free loopback port for tests.

The server needs Python >= 3.12. Its venv is built once with uv (the "light" install: the API
server imports none of torch & co) and cached outside the repository, under
$XDG_CACHE_HOME/reflexio-mcp (or ~/.cache/reflexio-mcp). Each server gets a temporary HOME,
so its SQLite store is fresh and isolated. Nothing here downloads an interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

REFLEXIO_VERSION = "0.2.32"
LIGHT_DEPENDENCIES = [
    "aiohttp", "anthropic", "bcrypt", "cachetools", "colorlog", "cryptography", "fastapi",
    "gitpython", "httpx", "json-repair", "litellm<2,>=1.103.1", "numpy", "openai", "passlib",
    "pydantic[email]>=2.13", "python-dateutil", "python-dotenv", "pyyaml", "redis", "requests",
    "rich", "slowapi", "starlette>=1.3.1", "tenacity", "tiktoken", "typer", "urllib3>=2.7",
    "uvicorn", "websocket-client", "xlsxwriter",
]  # fmt: skip
STARTUP_SECONDS = 90.0
SERVER_KEY = "rk-test-4f1c9a7e2b"
"""The key the keyed Reflexio fixture demands."""
NO_SERVER = "REFLEXIO_TEST_NO_SERVER"
"""Set to 1 and no Reflexio starts (each test that needs one fails saying so): how a run of
`pytest -m "not backend"` shows that it needs none."""


class BackendSetupError(RuntimeError):
    """The real backend could not be installed or started; the message says why."""


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    command: list[str]
    env: dict[str, str]

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reflexio-mcp"


def find_python_312() -> Path:
    """An interpreter >= 3.12: $REFLEXIO_TEST_PYTHON, pyenv's versions, then PATH.

    pyenv's python3.12 shim fails when 3.12 is not pyenv's global version, so the versions
    directory is searched directly.
    """
    candidates: list[Path] = []
    if explicit := os.environ.get("REFLEXIO_TEST_PYTHON"):
        candidates.append(Path(explicit))
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for pattern in ("3.12*", "3.13*"):
        candidates += sorted((pyenv_root / "versions").glob(f"{pattern}/bin/python"))
    for name in ("python3.12", "python3.13"):
        if found := shutil.which(name):
            candidates.append(Path(found))
    if sys.version_info >= (3, 12):
        candidates.append(Path(sys.executable))
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    raise BackendSetupError(
        "no Python >= 3.12 found for the Reflexio backend (tried $REFLEXIO_TEST_PYTHON, "
        f"{pyenv_root}/versions/3.12*, python3.12 on PATH): install one or set REFLEXIO_TEST_PYTHON"
    )


def _uv() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    raise BackendSetupError("uv is needed to build the Reflexio venv: pip install uv")


def ensure_venv() -> Path:
    """The cached venv holding reflexio-ai, built on first use (about 20 s)."""
    venv = cache_dir() / f"reflexio-ai-{REFLEXIO_VERSION}"
    done = venv / ".complete"
    if done.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not build it at once
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": str(venv)}
        uv = _uv()
        steps = [
            [*uv, "venv", "-q", "-p", str(find_python_312()), str(venv)],
            [*uv, "pip", "install", "-q", "--no-deps", f"reflexio-ai=={REFLEXIO_VERSION}"],
            [*uv, "pip", "install", "-q", *LIGHT_DEPENDENCIES],
        ]
        for step in steps:
            result = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise BackendSetupError(
                    f"building the Reflexio venv failed at `{' '.join(step)}`:\n"
                    + result.stderr[-3000:]
                )
        done.touch()
    return venv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


@contextmanager
def reflexio_server(
    workdir: Path, *, extra_env: Mapping[str, str] | None = None
) -> Generator[RunningServer]:
    """Start Reflexio on a free loopback port; stop it (by its own pid) however the block ends."""
    if os.environ.get(NO_SERVER):
        raise BackendSetupError(f"{NO_SERVER} is set: this run starts no Reflexio")
    venv = ensure_venv()
    port = free_port()
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    tokenizers = _site_packages(venv) / "litellm/litellm_core_utils/tokenizers"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TIKTOKEN_CACHE_DIR": str(tokenizers),  # else tiktoken downloads its encoding and dies
        "OPENAI_API_KEY": "sk-test-offline",
        "MOCK_LLM_RESPONSE": "true",
        "REFLEXIO_EMBEDDING_PROVIDER": "openai",
        "RATELIMIT_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else litellm fetches its price list online
        **(extra_env or {}),
    }
    log = workdir / "reflexio.log"
    command = [
        str(venv / "bin/python"), "-m", "reflexio.server", "--host", "127.0.0.1",
        "--port", str(port), "--graceful-shutdown-sec", "1",
        "--max-requests", "0",  # else it exits after 10,000-11,000 requests (a bench's run)
    ]  # fmt: skip
    server = RunningServer(
        f"http://127.0.0.1:{port}", _launch(command, env, log), home, log, command, env
    )
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop(server)


def _launch(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def kill9(server: RunningServer) -> None:
    """Kill the server's process group at once, as a crash or an OOM kill would."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


def restart(server: RunningServer) -> None:
    """Start the server again on the same port, with the same HOME (so the same data)."""
    kill9(server)
    server.process = _launch(server.command, server.env, server.log)
    _wait_healthy(server)


@contextmanager
def required_reflexio_server(
    workdir: Path, *, extra_env: Mapping[str, str] | None = None
) -> Generator[RunningServer]:
    """reflexio_server() for tests: failing, never skipping, when the backend cannot start."""
    try:
        with reflexio_server(workdir, extra_env=extra_env) as server:
            yield server
    except BackendSetupError as err:
        pytest.fail(f"the real Reflexio backend is required and could not start: {err}")


def _wait_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BackendSetupError(
                f"Reflexio exited with {server.process.returncode} while starting:\n"
                + server.log_tail()
            )
        try:
            answer = httpx2.get(
                f"{server.url}/health", headers={"User-Agent": "reflexio-mcp-tests"}
            )
            if answer.status_code == 200 and answer.json().get("status") == "healthy":
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise BackendSetupError(
        f"Reflexio did not become healthy in {STARTUP_SECONDS:g} s:\n{server.log_tail()}"
    )


def stop(server: RunningServer) -> None:
    """Stop the server's process group; SIGKILL if it lingers."""
    stop_group(server.process, seconds=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)  # a child that outlived the server


def stop_group(process: subprocess.Popen[bytes], *, seconds: float) -> int:
    """SIGTERM the process group `process` leads, SIGKILL it if it lingers `seconds`; the
    exit code."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode
