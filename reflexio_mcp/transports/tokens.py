"""Who may do what: access tokens, the user each acts for, and its role.

A token comes from REFLEXIO_MCP_ACCESS_TOKEN (one token, the server's own roles) or from a
tokens file that maps each token to one user and a role:

    {"tokens": [{"token": "...", "user_id": "alice", "role": "write"}]}

The file must be readable by its owner only; it is read again whenever it changes, so removing
a line revokes that token without a restart. A file rewritten in place is, for a moment,
truncated or half-written: while it does not parse and changed less than REWRITE_SECONDS ago,
the last good tokens stay in force. A file that stays invalid (or becomes unreadable, or
readable by others) refuses every token until it is fixed (failing closed), and says why in
the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from reflexio_mcp.core.errors import TokenFileError
from reflexio_mcp.core.fields import UserId
from reflexio_mcp.core.grants import Grant, Role
from reflexio_mcp.settings import MIN_TOKEN_CHARS, NEW_TOKEN, Settings

logger = logging.getLogger(__name__)

REWRITE_SECONDS = 5.0
"""How long after its last change a tokens file that does not parse is taken for one being
written, rather than a broken one."""


def local_grant(settings: Settings) -> Grant:
    """The grant of a caller the server cannot tell apart: stdio, or the one access token."""
    role: Role = "read" if settings.read_only else "admin" if settings.allow_admin else "write"
    return Grant(settings.user_id if settings.pin_user else None, role)


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    user_id: UserId
    role: Role = "write"
    name: str = Field(default="", max_length=200, description="Shown in logs instead of the token.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"needs at least {MIN_TOKEN_CHARS} characters; make one with {NEW_TOKEN}"
            )
        return value


class TokenFileContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry]


class UnparsedTokenFile(TokenFileError):
    """The file's content is not a tokens file (perhaps not yet: it may be half-written)."""


@dataclass(frozen=True)
class _Known:
    digest: bytes
    grant: Grant
    label: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def read_tokens_file(path: Path) -> list[_Known]:
    """The tokens in `path`.

    Raises:
        TokenFileError: unreadable, readable by others, not JSON of the expected shape, or
            the same token twice.
    """
    try:
        if sys.platform != "win32" and path.stat().st_mode & 0o077:
            raise TokenFileError(
                f"tokens file {path} can be read by other users: run chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TokenFileError(f"cannot read tokens file {path}: {err.strerror or err}") from None
    try:
        content = TokenFileContent.model_validate(json.loads(text))
    except json.JSONDecodeError as err:
        raise UnparsedTokenFile(
            f"tokens file {path} is not JSON (line {err.lineno}: {err.msg}); expected "
            '{"tokens": [{"token": "...", "user_id": "alice", "role": "write"}]}'
        ) from None
    except ValidationError as err:
        raise UnparsedTokenFile(f"tokens file {path}: {_problems(err)}") from None
    known: list[_Known] = []
    for number, entry in enumerate(content.tokens, start=1):
        digest = _digest(entry.token.get_secret_value())
        if any(hmac.compare_digest(digest, other.digest) for other in known):
            raise UnparsedTokenFile(
                f"tokens file {path}: tokens[{number - 1}]: the same token twice"
            )
        label = entry.name or f"token {number} of {path.name}"
        known.append(_Known(digest, Grant(entry.user_id, entry.role), f"{label} ({entry.user_id})"))
    return known


def _problems(err: ValidationError) -> str:
    """What is wrong, never the values: a value in this file may be a token."""
    lines: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        )
        lines.append(f"{where.lstrip('.') or 'file'}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


class AccessTokens:
    """The SDK's TokenVerifier over our tokens: a constant-time comparison against each one.

    The AccessToken handed to the SDK carries the grant, never the token itself (the SDK keeps
    it on the request, where a repr or a log line could show it).
    """

    def __init__(self, settings: Settings) -> None:
        self._file = settings.tokens_file
        self._single: list[_Known] = []
        if settings.access_token is not None:
            digest = _digest(settings.access_token.get_secret_value().strip())
            self._single = [_Known(digest, local_grant(settings), "the access token")]
        self._known: list[_Known] = []
        self._stamp: tuple[int, ...] | None = None
        if self._file is not None:
            self._known = read_tokens_file(self._file)
            self._stamp = self._file_stamp()

    async def verify_token(self, token: str) -> AccessToken | None:
        found = self.match(token)
        if found is None:
            return None
        grant = found.grant
        return AccessToken(
            token=f"sha256:{found.digest.hex()[:12]}",
            client_id=found.label,
            scopes=[grant.role],
            subject=grant.user_id,
            claims=grant.claims(),
        )

    def match(self, token: str) -> _Known | None:
        digest = _digest(token)
        found: _Known | None = None
        for known in [*self._single, *self._current()]:
            if hmac.compare_digest(digest, known.digest):
                found = known
        return found

    def _current(self) -> list[_Known]:
        if self._file is None:
            return []
        stamp = self._file_stamp()
        if stamp != self._stamp:
            try:
                self._known = read_tokens_file(self._file)
            except UnparsedTokenFile as err:
                if _being_written(stamp):
                    return self._known  # the last good ones; read again at the next request
                self._refuse_all(err)
            except TokenFileError as err:
                self._refuse_all(err)
            else:
                logger.info("tokens file %s read again: %d tokens", self._file, len(self._known))
            self._stamp = stamp
        return self._known

    def _refuse_all(self, err: TokenFileError) -> None:
        self._known = []
        logger.error("%s; every token is refused until it is fixed", err)

    def _file_stamp(self) -> tuple[int, ...] | None:
        """Changes whenever the file's content or permissions may have: a chmod 600 (or 644)
        counts."""
        assert self._file is not None
        try:
            stat = os.stat(self._file)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino, stat.st_mode)


def _being_written(stamp: tuple[int, ...] | None) -> bool:
    """Whether the file changed less than REWRITE_SECONDS ago (a second's clock skew allowed;
    a time further in the future counts as broken, or it would be kept forever)."""
    if stamp is None:
        return False
    age = time.time() - stamp[0] / 1e9
    return -1.0 <= age < REWRITE_SECONDS
