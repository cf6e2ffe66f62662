"""`reflexio-mcp doctor`: check what the server would meet at start-up, without starting it.

One line per check, with the fix for each that fails; exit 1 when any fails. Nothing is
created or changed: a store that does not exist yet is reported as such, and the files that
do exist are opened read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import anyio
from pydantic import SecretStr

from reflexio_mcp import __version__
from reflexio_mcp.backends.embedded import schema as embedded_schema
from reflexio_mcp.backends.reflexio import outbox
from reflexio_mcp.backends.reflexio import salvage as outbox_salvage
from reflexio_mcp.backends.reflexio.http import ReflexioHttpClient
from reflexio_mcp.capture.progress import last_hook_runs
from reflexio_mcp.core.errors import (
    AuthError,
    NotReflexio,
    RateLimited,
    ReflexioMcpError,
    TokenFileError,
)
from reflexio_mcp.core.models import iso_time
from reflexio_mcp.core.urls import display_url
from reflexio_mcp.settings import ENVIRONMENT, Settings, SettingsError, load_settings
from reflexio_mcp.settings.unknown_variables import PREFIX, unknown_variables
from reflexio_mcp.transports.tokens import read_tokens_file

Status = Literal["ok", "warn", "fail"]
TESTED_REFLEXIO = "0.2.32"
ENDPOINTS = (
    "/api/publish_interaction",
    "/api/search_interactions",
    "/api/get_interactions",
    "/api/get_all_interactions",
    "/api/delete_interaction",
    "/api/get_requests",
)
"""The Reflexio paths reflexio-mcp calls: their presence in /openapi.json is the version check
(Reflexio 0.2 reports no version of its own)."""
DOCTOR_USER = "reflexio-mcp-doctor"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run_doctor(flags: argparse.Namespace, environ: Mapping[str, str], *, as_json: bool) -> int:
    """Print every check (text or JSON); 1 when one failed, else 0."""
    checks = anyio.run(collect, flags, environ)
    failed = any(check.status == "fail" for check in checks)
    if as_json:
        print(
            json.dumps(
                {"ok": not failed, "version": __version__, "checks": [asdict(c) for c in checks]},
                indent=2,
            )
        )
    else:
        for check in checks:
            print(render(check))
        summary = "problems found: fix the FAIL lines above" if failed else "all checks passed"
        print(f"reflexio-mcp {__version__}: {summary}")
    return 1 if failed else 0


def render(check: Check) -> str:
    line = f"{check.status.upper():<4}  {check.name}: {check.detail}"
    return f"{line}\n      fix: {check.fix}" if check.fix else line


async def collect(flags: argparse.Namespace, environ: Mapping[str, str]) -> list[Check]:
    unknown = [
        Check("environment", "fail" if u.unsafe else "warn", u.describe(), u.fix())
        for u in unknown_variables(environ)
    ]
    try:
        settings = load_settings(flags, environ)
    except SettingsError as err:
        return [Check("settings", "fail", str(err), err.fix or str(err)), *unknown]
    checks = [Check("settings", "ok", _summary(settings))]
    checks += unknown or [_environment_ok(environ)]
    checks += [Check("settings", "warn", notice) for notice in settings.notices()]
    checks += _data_dir(settings)
    if settings.uses_reflexio:
        checks += await _reflexio(settings)
        checks += _sqlite(
            settings.data_folder / outbox.FILE_NAME, "outbox", _outbox_version, _outbox_salvage
        )
    else:
        checks += _sqlite(
            settings.data_folder / embedded_schema.FILE_NAME, "embedded store", _store_version
        )
    checks += _transport(settings)
    checks += _capture_hooks(settings)
    return checks


def _capture_hooks(settings: Settings) -> list[Check]:
    """What the Claude Code hooks last did here (they print nothing: this is where they tell)."""
    runs = last_hook_runs(settings.data_folder)
    if not runs:
        return []
    latest = runs[0]
    last = f"last run {iso_time(latest.at)}, {latest.event}: {latest.outcome}, {latest.detail}"
    failed = [run for run in runs if run.outcome == "failed"]
    if not failed:
        return [Check("capture hooks", "ok", last)]
    worst = failed[0]
    return [
        Check(
            "capture hooks",
            "warn",
            f"{len(failed)} of the last {len(runs)} hook runs failed; latest failure "
            f"{iso_time(worst.at)}, {worst.event}: {worst.detail}; {last}",
            f"see {settings.data_folder / 'hook.log'}; turns a failed run did not publish are "
            "published by the next run (or `reflexio-mcp import ~/.claude/projects`)",
        )
    ]


def _summary(settings: Settings) -> str:
    backend = (
        f"Reflexio at {display_url(settings.reflexio_url)}"
        if settings.uses_reflexio
        else "the embedded store"
    )
    return (
        f"valid; {backend}, data in {settings.data_folder}, default user {settings.user_id!r}, "
        f"transport {settings.transport}"
    )


def _environment_ok(environ: Mapping[str, str]) -> Check:
    count = sum(1 for name in environ if name.startswith(PREFIX))
    detail = (
        f"the {count} REFLEXIO_* variable(s) set are all ones reflexio-mcp or Reflexio reads"
        if count
        else "no REFLEXIO_* variable is set"
    )
    return Check("environment", "ok", f"{detail} (checked for misspelled names)")


# -- files -------------------------------------------------------------------------------


def _data_dir(settings: Settings) -> list[Check]:
    folder = settings.data_folder
    fix_dir = f"set {ENVIRONMENT['data_dir']} to a folder you can write"
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [
                Check("data dir", "fail", f"{folder} does not exist and cannot be made", fix_dir)
            ]
        return [Check("data dir", "ok", f"{folder} is made at first start (0700)")]
    if not folder.is_dir():
        return [Check("data dir", "fail", f"{folder} is not a folder", fix_dir)]
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        return [Check("data dir", "fail", f"{folder} is not writable by this user", fix_dir)]
    loose = _loose(folder, 0o077)
    if loose:
        return [
            Check(
                "data dir",
                "warn",
                f"{folder} is {loose}: other users may read the memories (the server tightens "
                "it to 0700 at start)",
                f"chmod 700 {folder}",
            )
        ]
    return [Check("data dir", "ok", f"{folder} is writable, owner-only")]


def _loose(path: Path, mask: int) -> str:
    if os.name == "nt":
        return ""
    mode = stat.S_IMODE(path.stat().st_mode)
    return f"mode {mode:04o}" if mode & mask else ""


def _sqlite(
    path: Path,
    name: str,
    version_of: Callable[[sqlite3.Connection], tuple[bool, str]],
    salvage_of: Callable[[sqlite3.Connection], str] | None = None,
) -> list[Check]:
    if not path.exists():
        return [Check(name, "ok", f"{path} does not exist yet: it is made at first start")]
    fix_access = f"give this user read and write access to {path} (and its -wal and -shm files)"
    if not os.access(path, os.R_OK | os.W_OK):
        return [
            Check(name, "fail", f"{path} is not readable and writable by this user", fix_access)
        ]
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            # The outbox is checked as the server checks it at start, indexes too.
            check = "quick_check" if salvage_of is None else "integrity_check"
            try:
                (integrity,) = db.execute(f"PRAGMA {check}").fetchone()
            except sqlite3.DatabaseError as err:  # the check met a page it cannot read
                if salvage_of is None:
                    raise
                integrity = str(err)
            if integrity != "ok" and salvage_of is not None:
                return [Check(name, "fail", f"{path} is damaged ({check}: {integrity}); "
                              f"{salvage_of(db)}", _SALVAGE_FIX)]  # fmt: skip
            known, detail = version_of(db)
        finally:
            db.close()
    except (sqlite3.Error, UnicodeDecodeError) as err:  # a damaged schema's bytes, quoted
        return [
            Check(
                name,
                "fail",
                f"{path} cannot be read as SQLite ({err})",
                _SALVAGE_FIX
                if salvage_of is not None
                else "stop every reflexio-mcp using it, then move the file aside; the server "
                "starts a fresh one",
            )
        ]
    if integrity != "ok":
        return [
            Check(
                name,
                "fail",
                f"{path} is damaged (quick_check: {integrity})",
                "stop every reflexio-mcp using it and move the file aside; recover what you can "
                "with `sqlite3 <file> .recover`",
            )
        ]
    if not known:
        return [
            Check(
                name,
                "fail",
                f"{path}: {detail}, written by a newer reflexio-mcp",
                f"upgrade reflexio-mcp, or set {ENVIRONMENT['data_dir']} to another folder",
            )
        ]
    checks = [Check(name, "ok", f"{path}: intact, {detail}")]
    loose = _loose(path, 0o077)
    if loose:
        checks.append(
            Check(name, "warn", f"{path} is {loose}: other users may read it", f"chmod 600 {path}")
        )
    return checks


_SALVAGE_FIX = (
    "start reflexio-mcp: it copies every readable publish into a fresh outbox and keeps the "
    "damaged file beside it (outbox.sqlite3.damaged-<time>)"
)


def _outbox_salvage(db: sqlite3.Connection) -> str:
    """What a damaged outbox still holds, as the server's salvage would find it."""
    readable = outbox_salvage.read_damaged(db)
    waiting = sum(row["state"] == "queued" for row in readable.rows)
    failed = sum(row["state"] == "failed" for row in readable.rows)
    line = f"{waiting} waiting and {failed} failed publish(es) can still be read whole"
    if readable.unreadable_seqs:
        line += f", {len(readable.unreadable_seqs)} row(s) cannot"
    if readable.unknown_ranges:
        line += ", and some rows cannot be read at all"
    return line


def _store_version(db: sqlite3.Connection) -> tuple[bool, str]:
    (version,) = db.execute("SELECT version FROM schema_version").fetchone()
    (count,) = db.execute("SELECT count(*) FROM interactions").fetchone()
    return version <= embedded_schema.SCHEMA_VERSION, f"schema {version}, {count} interaction(s)"


def _outbox_version(db: sqlite3.Connection) -> tuple[bool, str]:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == 0:
        return True, "empty"
    waiting, failed = db.execute(
        "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'failed') "
        "FROM outbox"
    ).fetchone()
    detail = f"schema {version}, {waiting} publish(es) waiting, {failed} refused"
    return version <= outbox.SCHEMA_VERSION, detail


# -- Reflexio ----------------------------------------------------------------------------


async def _reflexio(settings: Settings) -> list[Check]:
    http = _client(settings, api_key=settings.api_key)
    url = http.url
    async with http:
        started = time.perf_counter()
        try:
            await http.send("GET", "/health", retries=0)
        except NotReflexio as err:
            return [Check("reflexio", "fail", str(err), f"point {ENVIRONMENT['url']} at Reflexio")]
        except ReflexioMcpError as err:
            return [
                Check(
                    "reflexio",
                    "fail",
                    str(err),
                    f"start Reflexio (`reflexio services start`) or fix {ENVIRONMENT['url']}; "
                    "unset it to use the embedded store",
                )
            ]
        took = (time.perf_counter() - started) * 1000
        checks = [Check("reflexio", "ok", f"{url} answers /health ({took:.0f} ms)")]
        checks.append(await _api_version(http))
        checks.append(await _auth(http, settings))
    return checks


async def _api_version(http: ReflexioHttpClient) -> Check:
    try:
        response, _ = await http.send("GET", "/openapi.json", retries=0)
        paths = set(response.json().get("paths", {}))
    except (ReflexioMcpError, ValueError, AttributeError) as err:
        return Check(
            "reflexio API",
            "warn",
            f"cannot read its /openapi.json ({err}); reflexio-mcp is tested with Reflexio "
            f"{TESTED_REFLEXIO}",
        )
    missing = [path for path in ENDPOINTS if path not in paths]
    if missing:
        return Check(
            "reflexio API",
            "fail",
            f"it lacks {', '.join(missing)}: not the Reflexio 0.2 API",
            f"run Reflexio {TESTED_REFLEXIO} (pip install reflexio-ai=={TESTED_REFLEXIO})",
        )
    return Check(
        "reflexio API",
        "ok",
        f"every endpoint reflexio-mcp calls is there (tested with {TESTED_REFLEXIO})",
    )


async def _auth(http: ReflexioHttpClient, settings: Settings) -> Check:
    """A search is sent without a key first: only when Reflexio refuses it is a key needed,
    and only then does "accepted" mean something."""
    key = ENVIRONMENT["api_key"]
    pace = (
        f"publishes paced at {settings.publish_rate:g} a minute ({ENVIRONMENT['publish_rate']}"
        "; Reflexio's default limit is 60 writes and 120 reads a minute per client)"
        if settings.publish_rate
        else "publishes unpaced: a 429 from Reflexio leaves them in the outbox, sent later"
    )
    async with _client(settings, api_key=None) as keyless:
        refused = await _search(keyless)
    if refused is None:
        if settings.api_key is None:
            return Check(
                "reflexio auth",
                "ok",
                f"no API key needed: Reflexio answered a search without one; {pace}",
            )
        return Check(
            "reflexio auth",
            "warn",
            f"Reflexio answered without an API key, so the {key} set here is not checked (a "
            f"Reflexio started without one serves loopback clients only); {pace}",
            f"start Reflexio with {key} set to make it demand the key, or unset {key} here",
        )
    if not isinstance(refused, AuthError):
        return refused
    if settings.api_key is None:
        return Check(
            "reflexio auth", "fail", str(refused), f"set {key} to the key Reflexio was started with"
        )
    refused = await _search(http)
    if refused is None:
        return Check(
            "reflexio auth",
            "ok",
            f"API key accepted: Reflexio refused a search without it and answered one with it; "
            f"{pace}",
        )
    if isinstance(refused, AuthError):
        return Check(
            "reflexio auth",
            "fail",
            str(refused),
            f"{key} is not the key Reflexio was started with: set the right one",
        )
    return refused


def _client(settings: Settings, *, api_key: SecretStr | None) -> ReflexioHttpClient:
    return ReflexioHttpClient(
        settings.reflexio_url,
        api_key=api_key,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=0,
    )


async def _search(http: ReflexioHttpClient) -> AuthError | Check | None:
    """None when Reflexio answers a search; the AuthError when it refuses the credentials; a
    failed check for anything else."""
    body = json.dumps({"user_id": DOCTOR_USER, "most_recent_k": 1}).encode()
    try:
        await http.send("POST", "/api/search_interactions", body=body, retries=0)
    except AuthError as err:
        return err
    except RateLimited as err:
        return Check(
            "reflexio auth",
            "warn",
            f"rate limited right now ({err}); the key could not be checked",
            "wait a minute and run doctor again",
        )
    except ReflexioMcpError as err:
        return Check(
            "reflexio auth",
            "fail",
            str(err),
            "see Reflexio's own log for the cause (its console, or ~/.reflexio/logs), then run "
            "doctor again",
        )
    return None


# -- transport ---------------------------------------------------------------------------


def _transport(settings: Settings) -> list[Check]:
    if settings.transport == "stdio":
        return [
            Check("transport", "ok", "stdio: no port to check; the MCP client starts this command")
        ]
    checks: list[Check] = []
    if settings.tokens_file is not None:
        try:
            tokens = read_tokens_file(settings.tokens_file)
        except TokenFileError as err:
            checks.append(
                Check(
                    "tokens file",
                    "fail",
                    str(err),
                    f"correct {settings.tokens_file} as the message says (the format: "
                    '{"tokens": [{"token": "...", "user_id": "alice", "role": "read|write|'
                    'admin"}]}, readable by its owner only), or point '
                    f"{ENVIRONMENT['tokens_file']} / --tokens-file at another file",
                )
            )
        else:
            checks.append(
                Check(
                    "tokens file",
                    "ok",
                    f"{settings.tokens_file}: {len(tokens)} valid token(s), each with its user "
                    "and role",
                )
            )
    where = f"{settings.host}:{settings.port}"
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((settings.host.strip("[]"), settings.port))
        except OSError as err:
            checks.append(
                Check(
                    "transport",
                    "fail",
                    f"cannot listen on {where} ({err.strerror or err})",
                    f"stop what uses port {settings.port}, or pick another with "
                    f"{ENVIRONMENT['port']} / --port",
                )
            )
            return checks
    auth = "access token required" if settings.authenticates else "no access token"
    checks.append(
        Check(
            "transport",
            "ok",
            f"{settings.transport} can listen on {where}; clients use "
            f"{settings.base_url}{settings.endpoint_path} ({auth})",
        )
    )
    return checks
