"""`Authorization` headers and bare `Bearer` tokens: in HTTP dumps, curl commands, code and JSON.
Only the credentials are replaced, never the scheme. Imports no detect-secrets."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

from reflexio_mcp.secrets.names import plausible
from reflexio_mcp.secrets.rules import Rule

_AUTH_HEADER = re.compile(
    r"""authorization(?:\\?["'`])?[ \t]*[:=][ \t]*(?:\\?["'`])?[ \t]*"""
    r"(?:(?P<scheme>bearer|token|bot|basic|apikey)[ \t]+)?(?P<value>[A-Za-z0-9._~+/=-]{8,4096}+)"
)
_BEARER = re.compile(r"Bearer[ \t]+(?P<value>[A-Za-z0-9._~+/-]{20,4096}+=*)")
_HEADER_END = re.compile(r"""[ \t]*(?:\\?["'`,;]|\r?\n|\\r?\\n|\Z)""")


def _basic_credentials(value: str) -> bool:
    """Whether `value` is base64 of `user:password`, as HTTP Basic credentials are."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and len(decoded) >= 3


def auth_value(scheme: str, value: str) -> str | None:
    """The kind of an Authorization header's credentials, or None if they are a placeholder."""
    if scheme == "basic":
        return "basic-auth" if _basic_credentials(value) else None
    return "bearer-token" if plausible(value, "token", quoted=True) else None


class AuthorizationRule(Rule):
    """`Authorization: Bearer|Token|Bot|Basic <credentials>` in headers, curl, code and JSON
    (case-insensitive), and a bare `Bearer <token>`. Only the credentials are replaced."""

    priority = 1

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        if "authorization" in lower:
            for match in _AUTH_HEADER.finditer(lower):
                start, end = match.span("value")
                scheme = match.group("scheme") or ""
                if not scheme and not _HEADER_END.match(text, end):
                    continue  # `Authorization: AWS4-HMAC-SHA256 Credential=...`: not one value
                kind = auth_value(scheme, text[start:end])
                if kind is not None:
                    yield start, end, kind
        if "Bearer" in text:
            for match in _BEARER.finditer(text):
                start, end = match.span("value")
                if plausible(text[start:end], "token", quoted=True):
                    yield start, end, "bearer-token"
