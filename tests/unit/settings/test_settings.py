from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from reflexio_mcp import __version__
from reflexio_mcp.settings import (
    DEFAULT_URL,
    ENVIRONMENT,
    Settings,
    SettingsError,
    parse_settings,
)


def test_defaults_use_the_embedded_store() -> None:
    settings = parse_settings([], {})
    assert not settings.uses_reflexio
    assert settings.user_id == "user-default"
    assert settings.api_key is None
    assert settings.allow_admin is False


@pytest.mark.parametrize(
    ("argv", "environ", "uses_reflexio"),
    [
        ([], {"REFLEXIO_URL": "http://127.0.0.1:9"}, True),
        (["--backend", "embedded"], {"REFLEXIO_URL": "http://127.0.0.1:9"}, False),
        ([], {"REFLEXIO_MCP_BACKEND": "embedded", "REFLEXIO_URL": "http://127.0.0.1:9"}, False),
        (["--backend", "reflexio"], {}, True),
        (["--backend", "auto"], {"REFLEXIO_MCP_BACKEND": "embedded"}, False),
    ],
)
def test_backend_choice(argv: list[str], environ: dict[str, str], uses_reflexio: bool) -> None:
    assert parse_settings(argv, environ).uses_reflexio is uses_reflexio


def test_reflexio_without_url_means_its_local_default() -> None:
    settings = parse_settings(["--backend", "reflexio"], {})
    assert settings.reflexio_url == DEFAULT_URL == "http://127.0.0.1:8061"


def test_environment_fills_settings() -> None:
    settings = parse_settings(
        [],
        {
            "REFLEXIO_URL": "http://reflexio.internal:9000/",
            "REFLEXIO_API_KEY": "key-from-env",
            "REFLEXIO_USER_ID": "alice",
            "REFLEXIO_TIMEOUT": "12.5",
            "REFLEXIO_MCP_ALLOW_ADMIN": "true",
        },
    )
    assert settings.url == "http://reflexio.internal:9000"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "key-from-env"
    assert settings.user_id == "alice"
    assert settings.timeout == 12.5
    assert settings.allow_admin is True


def test_flags_win_over_environment() -> None:
    settings = parse_settings(
        ["--url", "http://127.0.0.1:1", "--user-id", "bob", "--allow-admin"],
        {"REFLEXIO_URL": "http://127.0.0.1:2", "REFLEXIO_USER_ID": "alice"},
    )
    assert (settings.url, settings.user_id, settings.allow_admin) == (
        "http://127.0.0.1:1",
        "bob",
        True,
    )


def test_invalid_value_names_flag_and_variable() -> None:
    with pytest.raises(SettingsError, match=r"--timeout / REFLEXIO_TIMEOUT: .*greater than 0"):
        parse_settings([], {"REFLEXIO_TIMEOUT": "0"})
    with pytest.raises(SettingsError, match=r"--url / REFLEXIO_URL: 'ftp://x' is not an http"):
        parse_settings(["--url", "ftp://x"], {})


def test_api_key_is_masked_in_repr_and_errors() -> None:
    settings = Settings(api_key="super-secret-key")  # pyright: ignore[reportArgumentType]
    assert "super-secret-key" not in repr(settings)
    assert "super-secret-key" not in str(settings)
    with pytest.raises(SettingsError) as err:
        parse_settings(["--api-key", "super-secret-key", "--max-retries", "99"], {})
    assert "super-secret-key" not in str(err.value)


def test_data_dir_is_expanded_and_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert parse_settings(["--data-dir", "~/memories"], {}).data_folder == (
        tmp_path / "home" / "memories"
    )
    assert parse_settings([], {"REFLEXIO_MCP_DATA_DIR": "rel/dir"}).data_folder == (
        tmp_path / "rel" / "dir"
    )


def test_settings_that_do_nothing_are_pointed_out() -> None:
    embedded = parse_settings(["--backend", "embedded", "--url", "http://127.0.0.1:1"], {})
    assert embedded.notices() == [
        "--url / REFLEXIO_URL is ignored with --backend embedded: interactions stay in the local "
        "file and nothing is learned"
    ]
    remote = parse_settings(["--data-dir", "/tmp/x"], {"REFLEXIO_URL": "http://127.0.0.1:1"})
    assert remote.notices() == []  # the outbox lives there
    assert parse_settings([], {}).notices() == []


def test_a_password_in_a_bad_url_is_not_repeated() -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(["--url", "ftp://alice:hunter2@127.0.0.1"], {})
    assert "hunter2" not in str(err.value)
    assert "'ftp://127.0.0.1' is not an http(s) URL" in str(err.value)


def test_manifest_matches_the_package() -> None:
    root = Path(__file__).parents[3]
    manifest = json.loads((root / "manifest.json").read_text())
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["dynamic"] == ["version"]  # hatch reads reflexio_mcp/__init__.py
    assert manifest["version"] == __version__
    assert manifest["name"] == project["name"]
    assert manifest["user_config"]["api_key"]["sensitive"] is True


def test_a_placeholder_a_client_left_unfilled_is_unset() -> None:
    """Claude Desktop may pass an optional user_config it has no value for as the literal
    `${user_config.data_dir}`: that must not become a folder named so."""
    environ = {
        "REFLEXIO_MCP_DATA_DIR": "${user_config.data_dir}",
        "REFLEXIO_URL": "${user_config.reflexio_url}",
        "REFLEXIO_MCP_READ_ONLY": "true",
    }
    settings = parse_settings([], environ)
    assert settings.data_dir is None
    assert settings.url is None
    assert settings.read_only is True


def test_the_bundle_passes_only_settings_the_server_knows() -> None:
    manifest = json.loads((Path(__file__).resolve().parents[3] / "manifest.json").read_text())
    passed = manifest["server"]["mcp_config"]["env"]
    assert set(passed) <= set(ENVIRONMENT.values())
    used = {value.removeprefix("${user_config.").removesuffix("}") for value in passed.values()}
    assert used == set(manifest["user_config"])
    assert "--no-dev" in manifest["server"]["mcp_config"]["args"]
