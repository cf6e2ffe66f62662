"""Which names hold secrets, and which values in a secret's place are ones: the judgement the
keyword rule, the header rule and the tool-data walk share. `key_kind("GITHUB_TOKEN")` is
"token"; `plausible("${DB_PASSWORD}", "password", quoted=True)` is False (a reference)."""

from __future__ import annotations

import functools
import re
from typing import Final

MAX_KEY: Final = 64
MAX_VALUE: Final = 1000
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_A-Za-z]+")
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")
_WORDY = re.compile(r"[a-z]+(?:[_.-][a-z]+)*(?:[_.-][a-z]?[0-9]{1,3})?")

_TRAILING_WORDS: Final = frozenset(
    {
        "value", "val", "str", "string", "plain", "plaintext", "raw", "b64", "base64", "hex",
        "bytes", "literal", "enc", "encoded", "base", "prod", "production", "dev", "staging",
        "live", "new", "old", "current", "confirm", "confirmation", "again", "repeat",
    }
)  # fmt: skip
_PASSWORD_ENDINGS: Final = (
    "password", "passwd", "passwort", "passphrase", "passcode", "contraseña", "contrasena",
)  # fmt: skip
_NOT_SECRET_TOKENS: Final = frozenset(
    {
        "page", "next", "prev", "continuation", "cursor", "sync", "cancellation", "pagination",
        "resume", "pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "stop", "start",
        "end", "max", "min", "num", "count", "input", "output", "prompt", "completion",
    }
)  # fmt: skip
_KEY_QUALIFIERS: Final = frozenset(
    {
        "secret", "access", "auth", "client", "account", "service", "master", "encryption",
        "signing", "app", "application", "license", "subscription", "db", "database", "admin",
        "shared", "webhook", "hmac", "consumer", "sas", "storage",
    }
)  # fmt: skip
_PASS_QUALIFIERS: Final = frozenset(
    {"db", "database", "key", "user", "root", "admin", "smtp", "ftp"}
)
_PLACEHOLDER_WORDS: Final = frozenset(
    {
        "none", "null", "nil", "undefined", "true", "false", "yes", "no", "on", "off",
        "required", "optional", "str", "string", "int", "bytes", "bool", "any", "text", "value",
        "values", "default", "empty", "blank", "unset", "test", "testing", "foo", "bar", "baz",
        "foobar", "pass", "hidden", "masked", "omitted", "todo", "tbd", "secretstr", "abc",
        "abcd", "secure", "sensitive", "unknown", "missing", "notset", "env", "environ", "void",
        "object", "dict", "list", "type", "number", "integer", "boolean", "uuid", "json",
    }
)  # fmt: skip
_PLACEHOLDER_PARTS: Final = (
    "password", "passwd", "passwort", "secret", "token", "apikey", "your", "xxxx", "example",
    "placeholder", "changeme", "redacted", "dummy", "sample", "notreal", "replace", "insert",
    "aws4request",  # a SigV4 credential scope: its access key id is redacted on its own
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def key_kind(name: str) -> str | None:
    """The kind of secret a value under this name is, or None if the name is not secret-like.

    `GITHUB_TOKEN` -> "token", `apiKey` -> "api-key", `db_pass` -> "password", `secret_key_base`
    -> "secret", `Authorization` -> "authorization" (its value is a scheme and credentials);
    `token_type`, `max_tokens`, `next_page_token`, `password_hint`, `primary_key` -> None.
    """
    if len(name) > MAX_KEY:
        return None
    words = [w.lower() for w in _WORDS.findall(name)]
    while len(words) > 1 and (words[-1] in _TRAILING_WORDS or words[-1].isdigit()):
        words.pop()
    if not words:
        return None
    last = words[-1]
    prev = words[-2] if len(words) > 1 else ""
    joined = "".join(words)
    if joined.endswith(_PASSWORD_ENDINGS) or last in ("pwd", "pass"):
        return "password"
    if last.endswith("pass") and last[:-4] in _PASS_QUALIFIERS:
        return "password"  # dbpass, keypass
    if last.endswith("secret"):
        return "secret"
    if last.endswith("token"):
        return None if prev in _NOT_SECRET_TOKENS or last in ("nexttoken", "pagetoken") else "token"
    if joined.endswith("secretaccesskey"):
        return "aws-secret-key"
    if joined.endswith("apikey"):
        return "api-key"
    if last in ("privatekey", "privkey") or (last == "key" and prev in ("private", "priv")):
        return "private-key"
    if (last == "key" and prev in _KEY_QUALIFIERS) or (
        last.endswith("key") and last[:-3] in _KEY_QUALIFIERS
    ):
        return "secret"  # secret_key, SERVICE_KEY, masterkey
    if last in ("credential", "credentials", "creds", "auth"):
        return "secret"
    if last == "authorization":
        return "authorization"
    return None


def _random_segment(segment: str) -> bool:
    """Whether a part of a dotted value looks generated (`a0AfH6SMBx3`), not named (`environ`)."""
    mixed = segment != segment.lower() and segment != segment.upper()
    return mixed and (len(segment) >= 16 or any(c.isdigit() for c in segment))


def plausible(value: str, kind: str, *, quoted: bool) -> bool:
    """Whether a value in a secret's place is one: not a placeholder, reference, path or type."""
    from detect_secrets.filters.heuristic import (
        is_not_alphanumeric_string,
        is_prefixed_with_dollar_sign,
        is_sequential_string,
        is_templated_secret,
    )

    if len(value) < (4 if kind == "password" else 8) or len(value) >= MAX_VALUE:
        return False
    if (
        "[REDACTED" in value
        or is_templated_secret(value)  # {x}, <x>, ${x}
        or is_prefixed_with_dollar_sign(value)  # $DB_PASSWORD
        or is_not_alphanumeric_string(value)  # ****, 12345678
        or is_sequential_string(value)  # abcdefgh
    ):
        return False
    if value[0] in "%<{[" or any(p in value for p in ("${", "{{", "$(", "%(", "...", "…")):
        return False
    if value.startswith(("/", "~/", "./", "../", "http://", "https://", "file:")):
        return False
    if _WINDOWS_PATH.match(value):
        return False
    lower = value.lower()
    if len(set(lower)) <= 2:
        return False  # xxxx, abab
    alnum = "".join(c for c in lower if c.isalnum())
    if alnum in _PLACEHOLDER_WORDS or any(part in alnum for part in _PLACEHOLDER_PARTS):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_upper = any(c.isupper() for c in value)
    has_lower = any(c.islower() for c in value)
    random_looking = (has_digit and (has_upper or has_lower)) or (
        has_upper and has_lower and len(value) >= 16 and "_" not in value
    )
    if kind != "password" and _WORDY.fullmatch(value):
        return False  # basic_auth_v2, prod-db-2, us-east-1: names, not generated tokens
    if not quoted:
        if _DOTTED.fullmatch(value) and not any(map(_random_segment, value.split("."))):
            return False  # self.password, process.env.API_KEY, settings.SECRET_KEY
        if value.replace("_", "").isalpha() and not random_looking:
            return False  # a variable (`password=password`) or a type (`api_key: str`)
    return kind == "password" or random_looking
