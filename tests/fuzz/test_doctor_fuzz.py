"""doctor and config against what no one planned for: any bytes in the store and outbox files,
a real store damaged anywhere, any values in the settings' environment variables. Each always
answers (checks with a fix for every failure, or a config document), never raises, and never
shows a secret it was given. REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples (default 50)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflexio_mcp.backends.embedded import schema as embedded_schema
from reflexio_mcp.backends.reflexio import outbox
from reflexio_mcp.cli.config import CLIENTS, client_config
from reflexio_mcp.cli.doctor import Check, collect
from reflexio_mcp.settings import ENVIRONMENT, SettingsError, load_settings

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "s3cret-value-that-must-not-show-9f2c"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOSED = f"http://127.0.0.1:{closed_port()}"
"""Reflexio URLs point here: nothing listens, and nothing leaves the machine."""


def doctor_checks(environ: dict[str, str]) -> list[Check]:
    return anyio.run(collect, argparse.Namespace(), environ)


FIX_VERBS = ("set ", "give ", "rename ", "unset ", "start ", "stop ", "point ", "correct ",
             "chmod ", "upgrade ", "run ", "see ", "wait ")  # fmt: skip


def assert_answered(checks: list[Check]) -> None:
    assert checks
    for check in checks:
        assert check.status in ("ok", "warn", "fail")
        assert check.detail
        assert check.fix or check.status != "fail", check  # settings failures too, now
        assert not check.fix or check.fix.startswith(FIX_VERBS), check  # a fix says what to do
        assert SECRET not in check.detail + check.fix


def real_store(folder: Path) -> Path:
    path = folder / embedded_schema.FILE_NAME
    with sqlite3.connect(path) as db:
        for statement in [*embedded_schema.SCHEMA, *embedded_schema.LOOKUP_INDEXES]:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?)", (embedded_schema.SCHEMA_VERSION,))
        db.execute(
            "INSERT INTO publishes VALUES ('r1', 'u', 's', '', '', 0)",
        )
        for n in range(50):
            db.execute(
                "INSERT INTO interactions (user_id, request_id, created_at, role, content, "
                "expert_content, user_action, user_action_description, interacted_image_url, "
                "image_encoding, tools_used) VALUES ('u', 'r1', ?, 'User', ?, '', 'none', '', "
                "'', '', '[]')",
                (n, f"turn {n} " * 20),
            )
    db.close()
    return path


@FUZZ
@given(
    store=st.binary(max_size=6000),
    outbox_bytes=st.binary(max_size=6000),
    reflexio=st.booleans(),
)
def test_any_bytes_in_the_files_get_checks(
    store: bytes, outbox_bytes: bytes, reflexio: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, embedded_schema.FILE_NAME).write_bytes(store)
        Path(folder, outbox.FILE_NAME).write_bytes(outbox_bytes)
        environ = {ENVIRONMENT["data_dir"]: folder, ENVIRONMENT["timeout"]: "1"}
        if reflexio:
            environ[ENVIRONMENT["url"]] = CLOSED
        checks = doctor_checks(environ)
    assert_answered(checks)
    assert any(c.status == "fail" for c in checks)  # unreachable, or not a store


@FUZZ
@given(damage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=64))))
def test_a_real_store_damaged_anywhere_gets_checks(damage: list[tuple[int, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = real_store(Path(folder))
        data = bytearray(path.read_bytes())
        for offset, patch in damage:
            at = offset % len(data)
            data[at : at + len(patch)] = patch
        path.write_bytes(bytes(data))
        checks = doctor_checks({ENVIRONMENT["data_dir"]: folder})
    assert_answered(checks)
    store_check = next(c for c in checks if c.name == "embedded store")
    if not damage:
        assert store_check.status == "ok", store_check


VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "1", "true", "no", "-1", "1e309", "nan", " ", "${x}"]),
)
FUZZED = [name for name in ENVIRONMENT if name not in ("url", "data_dir", "host", "tokens_file")]


@FUZZ
@given(
    values=st.dictionaries(st.sampled_from(FUZZED), VALUES, max_size=8),
    url=st.sampled_from([None, CLOSED, f"{CLOSED}/x?y=1", f"http://user:{SECRET}@127.0.0.1:1"]),
    secret=st.sampled_from([None, "api_key", "access_token", "state_key"]),
)
def test_any_environment_gets_checks_and_a_config_or_a_settings_error(
    values: dict[str, str], url: str | None, secret: str | None
) -> None:
    """Any values in any settings; the secret (an API key, a token, a URL password) never
    shows, whatever else is wrong."""
    with tempfile.TemporaryDirectory() as folder:
        environ = {ENVIRONMENT[name]: value for name, value in values.items()}
        if secret is not None:
            environ[ENVIRONMENT[secret]] = SECRET
        environ[ENVIRONMENT["data_dir"]] = folder
        environ[ENVIRONMENT["timeout"]] = "1"
        if url is not None:
            environ[ENVIRONMENT["url"]] = url
        checks = doctor_checks(environ)
        assert_answered(checks)
        try:
            loaded = load_settings(argparse.Namespace(), environ)
        except SettingsError as err:
            assert (checks[0].status, checks[0].detail) == ("fail", str(err))  # noqa: PT017
            return
        for client in CLIENTS:
            for http in (False, True):
                text = json.dumps(client_config(client, loaded, http=http))
                assert SECRET not in text
