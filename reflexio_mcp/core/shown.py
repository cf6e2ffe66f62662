"""How a caller's value is shown in an error message: a glimpse, never the whole of it, and
never a secret."""

from __future__ import annotations

import math
from typing import Any, cast

from reflexio_mcp.secrets import find_secrets


def secret_kind(text: str) -> str | None:
    """The kind of secret `text` holds, if any: an error message must not echo one back."""
    found = find_secrets(text[:10_000])
    return found[0].kind if found else None


def shown_name(name: str) -> str:
    """A caller's field or argument name, for an error message (a pasted token is not named)."""
    return f"(a name that looks like a {kind}, not shown)" if (kind := secret_kind(name)) else name


def shown(value: Any) -> str:
    """A short rendering of a caller's value for an error message: never the whole of it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        digits = len(str(abs(value))) if abs(value) < 10**50 else None
        return str(value) if digits is not None else "a number of more than 50 digits"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"nan": "NaN"}.get(repr(value), repr(value))
    if isinstance(value, str):
        if kind := secret_kind(value):
            return f"a value of {len(value):,} characters that looks like a {kind}, not shown"
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}… ({len(value):,} characters)"
    if isinstance(value, list):
        return f"a list of {len(cast(list[Any], value))} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
