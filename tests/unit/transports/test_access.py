"""Access tokens and the HTTP settings: what starts, what is refused, and what a token grants."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reflexio_mcp.core.errors import SettingsError, TokenFileError
from reflexio_mcp.core.grants import Grant
from reflexio_mcp.settings import Settings, parse_settings
from reflexio_mcp.transports.tokens import (
    AccessTokens,
    local_grant,
    read_tokens_file,
)

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"


def tokens_file(path: Path, entries: list[dict[str, str]], mode: int = 0o600) -> Path:
    path.write_text(json.dumps({"tokens": entries}))
    path.chmod(mode)
    return path


def http(tmp_path: Path, **values: object) -> Settings:
    return Settings.model_validate({"transport": "streamable-http", **values})


def test_non_loopback_bind_without_a_token_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError) as refused:
        parse_settings(["--transport", "streamable-http", "--host", "0.0.0.0"], {})
    message = str(refused.value)
    assert "\n" not in message
    assert "refusing to listen on 0.0.0.0 without an access token" in message
    assert "REFLEXIO_MCP_ACCESS_TOKEN" in message
    assert "--tokens-file" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert parse_settings(["--transport", "sse", "--host", host], {}).host == host


def test_a_token_allows_any_address_and_never_shows() -> None:
    settings = parse_settings(
        ["--transport", "streamable-http", "--host", "0.0.0.0"],
        {"REFLEXIO_MCP_ACCESS_TOKEN": ALICE},
    )
    assert settings.authenticates
    assert ALICE not in repr(settings)
    assert ALICE not in str(settings.model_dump())


def test_short_tokens_and_both_kinds_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REFLEXIO_MCP_ACCESS_TOKEN: an access token needs at"):
        parse_settings(["--transport", "streamable-http"], {"REFLEXIO_MCP_ACCESS_TOKEN": "short"})
    with pytest.raises(SettingsError, match="not both"):
        parse_settings(
            ["--transport", "streamable-http", "--tokens-file", str(tmp_path / "t.json")],
            {"REFLEXIO_MCP_ACCESS_TOKEN": ALICE},
        )


def test_http_settings_from_the_environment() -> None:
    settings = parse_settings(
        [],
        {
            "REFLEXIO_MCP_TRANSPORT": "streamable-http",
            "REFLEXIO_MCP_PORT": "9123",
            "REFLEXIO_MCP_STATELESS": "1",
            "REFLEXIO_MCP_ALLOWED_HOSTS": "memory.example.com:*, other.example:8000",
            "REFLEXIO_MCP_PATH": "/memory",
        },
    )
    assert settings.port == 9123
    assert settings.stateless
    assert settings.allowed_hosts == ["memory.example.com:*", "other.example:8000"]
    assert settings.endpoint_path == "/memory"
    assert settings.base_url == "http://127.0.0.1:9123"


@pytest.mark.parametrize("path", ["mcp", "/"])
def test_a_path_must_be_below_the_root(path: str) -> None:
    with pytest.raises(SettingsError, match="--path / REFLEXIO_MCP_PATH"):
        parse_settings(["--transport", "streamable-http", "--path", path], {})


def test_default_paths_are_the_sdks() -> None:
    assert parse_settings(["--transport", "streamable-http"], {}).endpoint_path == "/mcp"
    assert parse_settings(["--transport", "sse"], {}).endpoint_path == "/sse"


def test_local_grant_follows_the_switches() -> None:
    assert local_grant(Settings()) == Grant(None, "write")
    assert local_grant(Settings(read_only=True)) == Grant(None, "read")
    assert local_grant(Settings(allow_admin=True)) == Grant(None, "admin")
    assert local_grant(Settings(pin_user=True, user_id="carol")) == Grant("carol", "write")


async def test_tokens_file_maps_each_token_to_its_user_and_role(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path / "tokens.json",
        [
            {"token": ALICE, "user_id": "alice", "role": "write"},
            {"token": BOB, "user_id": "bob", "role": "read", "name": "bob's laptop"},
        ],
    )
    tokens = AccessTokens(http(tmp_path, tokens_file=path))
    alice = await tokens.verify_token(ALICE)
    assert alice is not None
    assert alice.claims == {"role": "write", "user_id": "alice"}
    assert ALICE not in repr(alice)  # the SDK keeps it on the request: only a fingerprint
    bob = await tokens.verify_token(BOB)
    assert bob is not None
    assert bob.client_id == "bob's laptop (bob)"
    assert await tokens.verify_token(ALICE + "x") is None
    assert await tokens.verify_token("") is None


async def test_a_changed_file_is_read_again_and_a_broken_one_refuses_all(tmp_path: Path) -> None:
    path = tokens_file(tmp_path / "tokens.json", [{"token": ALICE, "user_id": "alice"}])
    tokens = AccessTokens(http(tmp_path, tokens_file=path))
    assert await tokens.verify_token(ALICE) is not None

    tokens_file(path, [{"token": BOB, "user_id": "bob"}])
    os.utime(path, ns=(1, 1))  # a rewrite within the clock's resolution still counts
    assert await tokens.verify_token(ALICE) is None
    assert await tokens.verify_token(BOB) is not None

    path.write_text("{not json")
    assert await tokens.verify_token(BOB) is not None  # just written: perhaps half-way
    os.utime(path, (1, 1))  # left broken
    assert await tokens.verify_token(BOB) is None  # fail closed until fixed
    tokens_file(path, [{"token": BOB, "user_id": "bob"}])
    assert await tokens.verify_token(BOB) is not None

    path.unlink()
    assert await tokens.verify_token(BOB) is None


async def test_a_file_being_rewritten_keeps_the_last_good_tokens_until_the_new_one_parses(
    tmp_path: Path,
) -> None:
    path = tokens_file(tmp_path / "tokens.json", [{"token": ALICE, "user_id": "alice"}])
    tokens = AccessTokens(http(tmp_path, tokens_file=path))
    new = json.dumps({"tokens": [{"token": BOB, "user_id": "bob"}]})
    with path.open("r+", encoding="utf-8") as file:
        file.truncate(0)
        for start in range(0, len(new) - 7, 7):  # all but the last piece
            file.write(new[start : start + 7])
            file.flush()
            assert await tokens.verify_token(ALICE) is not None, file.tell()
            assert await tokens.verify_token(BOB) is None
        file.write(new[file.tell() :])
    assert await tokens.verify_token(BOB) is not None
    assert await tokens.verify_token(ALICE) is None
    path.chmod(0o644)  # readable by others: refused at once, not kept
    assert await tokens.verify_token(BOB) is None


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        ('{"tokens": []}', 0o644, "can be read by other users: run chmod 600"),
        ("[1, 2", 0o600, "is not JSON (line 1"),
        ('{"tokens": [{"token": "short", "user_id": "a"}]}', 0o600, "tokens[0].token: needs at"),
        (
            json.dumps({"tokens": [{"token": ALICE, "user_id": "a", "role": "root"}]}),
            0o600,
            "tokens[0].role",
        ),
        (
            json.dumps({"tokens": [{"token": ALICE, "user_id": "a/b"}]}),
            0o600,
            "tokens[0].user_id",
        ),
        (
            json.dumps(
                {"tokens": [{"token": ALICE, "user_id": "a"}, {"token": ALICE, "user_id": "b"}]}
            ),
            0o600,
            "tokens[1]: the same token twice",
        ),
        (json.dumps({"tokens": [{"token": ALICE, "user_id": "a", "admin": True}]}), 0o600, "admin"),
    ],
)
def test_a_bad_tokens_file_says_what_to_fix(
    tmp_path: Path, content: str, mode: int, expected: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(TokenFileError) as refused:
        read_tokens_file(path)
    assert expected in str(refused.value)
    assert ALICE not in str(refused.value)


def test_a_missing_tokens_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read tokens file"):
        read_tokens_file(tmp_path / "absent.json")
