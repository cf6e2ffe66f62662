"""`reflexio-mcp doctor` as a user runs it: the command, its output, its exit code."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from reflexio_mcp.backends.embedded import schema as embedded_schema
from tests.support.doctor import by_name, checks, doctor
from tests.support.loopback_http import serving
from tests.support.reflexio_server import SERVER_KEY, RunningServer


def test_a_fresh_embedded_setup_passes_without_creating_anything(tmp_path: Path) -> None:
    data = tmp_path / "not-yet"
    done = doctor(data)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert all(line.startswith("OK ") for line in lines[:-1]), done.stdout
    assert "made at first start" in done.stdout
    assert lines[-1].endswith("all checks passed")
    assert not data.exists()
    assert done.stderr == ""


def test_an_existing_store_is_checked_intact_with_its_count(tmp_path: Path) -> None:
    store = tmp_path / embedded_schema.FILE_NAME
    with sqlite3.connect(store) as db:
        for statement in embedded_schema.SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?)", (embedded_schema.SCHEMA_VERSION,))
    tmp_path.chmod(0o700)
    store.chmod(0o600)
    code, report = checks(tmp_path)
    assert code == 0, report
    assert report["ok"] is True
    assert "intact, schema 3, 0 interaction(s)" in by_name(report, "embedded store")["detail"]


def test_a_damaged_store_fails_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / embedded_schema.FILE_NAME).write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    done = doctor(tmp_path)
    assert done.returncode == 1
    assert f"FAIL  embedded store: {tmp_path / embedded_schema.FILE_NAME}" in done.stdout
    assert "      fix: stop every reflexio-mcp using it" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("problems found: fix the FAIL lines above")


def test_a_store_from_a_newer_version_fails(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / embedded_schema.FILE_NAME) as db:
        for statement in embedded_schema.SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (99)")
    code, report = checks(tmp_path)
    assert code == 1
    check = by_name(report, "embedded store")
    assert check["status"] == "fail"
    assert "schema 99" in check["detail"]
    assert "upgrade reflexio-mcp" in check["fix"]


def test_a_data_dir_that_cannot_be_a_folder_fails(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    for data in (occupied, occupied / "below"):
        code, report = checks(data)
        assert code == 1
        assert "REFLEXIO_MCP_DATA_DIR" in by_name(report, "data dir")["fix"]


def test_loose_permissions_warn_with_the_chmod_that_fixes_them(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    code, report = checks(tmp_path)
    assert code == 0  # a warning is not a failure
    check = by_name(report, "data dir")
    assert check["status"] == "warn"
    assert check["fix"] == f"chmod 700 {tmp_path}"


def test_invalid_settings_fail_naming_the_variable(tmp_path: Path) -> None:
    code, report = checks(tmp_path, REFLEXIO_MCP_PORT="eighty")
    assert code == 1
    [check] = report["checks"]
    assert check["status"] == "fail"
    assert "REFLEXIO_MCP_PORT" in check["detail"]


def test_an_unreachable_reflexio_fails_with_how_to_start_it(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    code, report = checks(tmp_path, REFLEXIO_URL=f"http://127.0.0.1:{port}", REFLEXIO_TIMEOUT="2")
    assert code == 1
    check = by_name(report, "reflexio")
    assert "unreachable" in check["detail"]
    assert "reflexio services start" in check["fix"]


@pytest.fixture
def not_reflexio() -> Iterator[str]:
    """A loopback web server that answers every GET with an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Page) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_url_that_is_not_reflexio_fails(tmp_path: Path, not_reflexio: str) -> None:
    code, report = checks(tmp_path, REFLEXIO_URL=not_reflexio)
    assert code == 1
    check = by_name(report, "reflexio")
    assert check["status"] == "fail"
    assert "REFLEXIO_URL" in check["fix"]


def test_the_real_reflexio_passes_every_check(tmp_path: Path, reflexio: RunningServer) -> None:
    done = doctor(tmp_path, REFLEXIO_URL=reflexio.url)
    assert done.returncode == 0, done.stdout
    assert f"OK    reflexio: {reflexio.url} answers /health" in done.stdout
    assert "OK    reflexio API: every endpoint reflexio-mcp calls is there" in done.stdout
    assert "OK    reflexio auth: no API key needed" in done.stdout


def test_a_wrong_api_key_fails_and_never_shows_it(
    tmp_path: Path, keyed_reflexio: RunningServer
) -> None:
    wrong = "rk-wrong-doctor-key-123"
    done = doctor(tmp_path, REFLEXIO_URL=keyed_reflexio.url, REFLEXIO_API_KEY=wrong)
    assert done.returncode == 1
    assert "FAIL  reflexio auth:" in done.stdout
    assert "is not the key Reflexio was started with" in done.stdout
    assert wrong not in done.stdout + done.stderr
    missing = doctor(tmp_path, REFLEXIO_URL=keyed_reflexio.url)
    assert "fix: set REFLEXIO_API_KEY to the key Reflexio was started with" in missing.stdout
    right = doctor(tmp_path, REFLEXIO_URL=keyed_reflexio.url, REFLEXIO_API_KEY=SERVER_KEY)
    assert right.returncode == 0, right.stdout
    assert "OK    reflexio auth: API key accepted" in right.stdout
    assert SERVER_KEY not in right.stdout + right.stderr


def test_a_taken_http_port_fails_naming_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, report = checks(
            tmp_path, REFLEXIO_MCP_TRANSPORT="streamable-http", REFLEXIO_MCP_PORT=str(port)
        )
    assert code == 1
    check = by_name(report, "transport")
    assert f"127.0.0.1:{port}" in check["detail"]
    assert "--port" in check["fix"]
    assert any(c["status"] == "warn" and "no access token" in c["detail"] for c in report["checks"])


def test_a_free_http_port_passes_and_names_the_client_url(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, report = checks(
        tmp_path,
        REFLEXIO_MCP_TRANSPORT="streamable-http",
        REFLEXIO_MCP_PORT=str(port),
        REFLEXIO_MCP_ACCESS_TOKEN="t" * 40,
    )
    assert code == 0, report
    assert (
        f"http://127.0.0.1:{port}/mcp (access token required)"
        in by_name(report, "transport")["detail"]
    )


@pytest.mark.parametrize(
    ("variable", "meant", "status"),
    [
        ("REFLEXIO_MCP_READONLY", "REFLEXIO_MCP_READ_ONLY", "fail"),  # a safety switch
        ("REFLEXIO_MCP_PINUSER", "REFLEXIO_MCP_PIN_USER", "fail"),
        ("REFLEXIO_MCP_ACESS_TOKEN", "REFLEXIO_MCP_ACCESS_TOKEN", "fail"),
        ("REFLEXIO_ULR", "REFLEXIO_URL", "warn"),
        ("REFLEXIO_USERID", "REFLEXIO_USER_ID", "warn"),
        ("REFLEXIO_MCP_TIMEOUT", "REFLEXIO_TIMEOUT", "warn"),
    ],
)
def test_a_misspelled_variable_is_named_with_the_real_one(
    tmp_path: Path, variable: str, meant: str, status: str
) -> None:
    done = doctor(tmp_path, **{variable: "1"})
    assert done.returncode == (1 if status == "fail" else 0), done.stdout
    assert f"{status.upper():<4}  environment: {variable} is ignored" in done.stdout
    assert f"did you mean {meant}?" in done.stdout
    assert f"fix: rename {variable} to {meant}" in done.stdout
    if status == "fail":
        assert "all checks passed" not in done.stdout


def test_the_environment_check_says_what_it_checked(tmp_path: Path) -> None:
    code, report = checks(tmp_path, REFLEXIO_EMBEDDING_PROVIDER="openai")
    assert code == 0, report
    check = by_name(report, "environment")
    assert check["status"] == "ok"
    assert check["detail"] == (
        "the 2 REFLEXIO_* variable(s) set are all ones reflexio-mcp or Reflexio reads (checked "
        "for misspelled names)"
    )


@pytest.mark.parametrize(
    ("env", "fix"),
    [
        (
            {"REFLEXIO_MCP_PORT": "eighty"},
            "set --port / REFLEXIO_MCP_PORT to a whole number from 1 to 65535, or unset it "
            "(default 8000)",
        ),
        (
            {"REFLEXIO_MCP_READ_ONLY": "maybe"},
            "set --read-only / REFLEXIO_MCP_READ_ONLY to true or false, or unset it (default "
            "false)",
        ),
        (
            {"REFLEXIO_MCP_TRANSPORT": "websocket"},
            "set --transport / REFLEXIO_MCP_TRANSPORT to one of stdio, streamable-http, sse, or "
            "unset it (default stdio)",
        ),
        (
            {"REFLEXIO_URL": "ftp://x"},
            "set --url / REFLEXIO_URL to an http(s) URL such as http://127.0.0.1:8061, or unset "
            "it (the embedded store)",
        ),
        (
            {"REFLEXIO_MCP_TRANSPORT": "sse", "REFLEXIO_MCP_ACCESS_TOKEN": "short"},
            "set REFLEXIO_MCP_ACCESS_TOKEN to at least 16 characters: make one with python3 -c",
        ),
        (
            {"REFLEXIO_MCP_TRANSPORT": "sse", "REFLEXIO_MCP_HOST": "0.0.0.0"},
            "set REFLEXIO_MCP_ACCESS_TOKEN (make one with",
        ),
    ],
)
def test_invalid_settings_get_a_fix_that_says_what_to_do(
    tmp_path: Path, env: dict[str, str], fix: str
) -> None:
    code, report = checks(tmp_path, **env)
    assert code == 1
    check = by_name(report, "settings")
    assert check["fix"].startswith(fix), check["fix"]
    assert "the message names" not in json.dumps(report)


def test_a_key_reflexio_does_not_need_is_not_called_accepted(
    tmp_path: Path, reflexio: RunningServer
) -> None:
    code, report = checks(tmp_path, REFLEXIO_URL=reflexio.url, REFLEXIO_API_KEY="rk-unneeded-12")
    assert code == 0, report
    check = by_name(report, "reflexio auth")
    assert check["status"] == "warn"
    assert "answered without an API key" in check["detail"]
    assert "accepted" not in check["detail"]
    assert "rk-unneeded-12" not in json.dumps(report)


def test_a_bad_tokens_file_gets_a_fix_that_says_what_to_do(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{not json")
    tokens.chmod(0o600)
    code, report = checks(
        tmp_path,
        REFLEXIO_MCP_TRANSPORT="streamable-http",
        REFLEXIO_MCP_PORT="1",
        REFLEXIO_MCP_TOKENS_FILE=str(tokens),
    )
    assert code == 1
    check = by_name(report, "tokens file")
    assert check["fix"].startswith(f"correct {tokens}"), check["fix"]


def test_the_ok_lines_say_what_was_checked(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps({"tokens": [{"token": "t" * 40, "user_id": "ana", "role": "read"}]})
    )
    tokens.chmod(0o600)
    code, report = checks(
        tmp_path,
        REFLEXIO_MCP_TRANSPORT="streamable-http",
        REFLEXIO_MCP_PORT="1",
        REFLEXIO_MCP_TOKENS_FILE=str(tokens),
    )
    assert by_name(report, "tokens file") == {
        "name": "tokens file",
        "status": "ok",
        "detail": f"{tokens}: 1 valid token(s), each with its user and role",
        "fix": "",
    }
    code, report = checks(tmp_path)
    assert code == 0, report
    assert by_name(report, "transport")["detail"] == (
        "stdio: no port to check; the MCP client starts this command"
    )
