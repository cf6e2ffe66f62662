"""The cursor codec: a JSON object as opaque text a caller hands back, and that text read back.

Tool cursors (paging) and resources/list cursors (resources) share it. A cursor is the object
as compact JSON, zlib-compressed (a long query repeats itself) and in unpadded URL-safe
base64, behind a marker. Reading one accepts only what `encode` could have made, within a
size bound; what it carries is checked by the caller, which also answers in its protocol's
words when it is not a cursor (`NotOurCursor`): a tool's error, or invalid params.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, cast

COMPRESSED = "z"
"""Cursors are zlib-compressed JSON, marked by this prefix."""
MAX_CURSOR_JSON = 200_000
"""No cursor this server makes inflates to more: a larger one is not ours."""


class NotOurCursor(Exception):
    """The text is not a cursor `encode` made (garbled, cut, or made up)."""


def encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return COMPRESSED + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(cursor: str) -> dict[str, Any]:
    """The object a cursor carries.

    Raises:
        NotOurCursor: the text is not one `encode` made.
    """
    if not cursor.startswith(COMPRESSED):
        raise NotOurCursor
    body = cursor.removeprefix(COMPRESSED)
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        inflating = zlib.decompressobj()
        raw = inflating.decompress(packed, MAX_CURSOR_JSON)
        if inflating.unconsumed_tail or not raw.startswith(b"{"):
            raise NotOurCursor
        payload: Any = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError, zlib.error):
        raise NotOurCursor from None
    if not isinstance(payload, dict):
        raise NotOurCursor
    return cast(dict[str, Any], payload)
