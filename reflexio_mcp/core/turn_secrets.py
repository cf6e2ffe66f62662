"""Secrets in a publish's turns are replaced by `[REDACTED:<kind>]` before anything is stored.

`redact_turns` returns copies of the turns in which only each secret's characters are replaced,
and how many of each kind (the kinds: `reflexio_mcp.secrets`). Scanned: `role`, `content`,
`expert_content`, `user_action_description`, `interacted_image_url`, `tools_used[*].tool_name`
and `.status`, and every string anywhere in `tools_used[*].tool_data` (keys too); there a
string under a name such as "password", "api_key", "client_secret" or "GITHUB_TOKEN" (or the
"value" beside {"name": "DB_PASSWORD"}) is a secret by its name, as detect-secrets'
KeywordDetector reasons. Never `image_encoding`: base64 images are high-entropy by nature.
The input is never mutated; no secret value appears in anything returned (but the text it was
not recognised in), nor in a log or an exception: this module logs nothing and raises nothing
of its own.

A publish's strings are scanned as one text joined by newlines (`find_secrets_in`): one pass per
regex for the whole publish, however many small strings its tool data holds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from reflexio_mcp.core.models import InteractionData, ToolUsed
from reflexio_mcp.secrets import (
    Finding,
    apply,
    auth_value,
    find_secrets_in,
    key_kind,
    marker,
    plausible,
)


@dataclass(frozen=True)
class Redaction:
    """The turns with their secrets replaced, and how many of each kind were replaced."""

    turns: list[InteractionData]
    """New objects; the input is never mutated."""
    counts: dict[str, int]
    """kind -> how many replaced, e.g. {"aws-access-key": 1}; empty when none."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_NAME_KEYS: Final = ("name", "Name", "key", "Key", "header", "parameter", "variable")
_AUTH_SCHEME = re.compile(
    r"(?i)[ \t]*(?:(?P<scheme>bearer|token|bot|basic|apikey)[ \t]+)?"
    r"(?P<value>[A-Za-z0-9._~+/=-]{8,4096})[ \t]*"
)


def _collect(data: Any, texts: list[str]) -> None:
    """Every string in a JSON value (dict keys too), in the order `_rebuild` takes them."""
    if isinstance(data, str):
        texts.append(data)
    elif isinstance(data, list):
        for item in cast(list[Any], data):
            _collect(item, texts)
    elif isinstance(data, dict):
        for key, value in cast(dict[Any, Any], data).items():
            if isinstance(key, str):
                texts.append(key)
            _collect(value, texts)


class _Scanned:
    """The texts of a publish in order, each with its findings; `take` hands them out in turn."""

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts
        self._findings = find_secrets_in(texts)
        self._next = 0
        self.counts: Counter[str] = Counter()

    def take(self, limit: int | None = None) -> tuple[str, list[Finding]]:
        """The next text redacted (within `limit` characters), and what was found in it."""
        text, found = self._texts[self._next], self._findings[self._next]
        self._next += 1
        if not found:
            return text, found
        self.counts.update(f.kind for f in found)
        redacted = apply(text, found)
        if limit is not None and len(redacted) > limit:
            redacted = apply(text, found, short=True)[:limit]
        return redacted, found

    def take_text(self) -> str:
        """`take()[0]`, for the common case of no findings, without building a tuple."""
        if not self._findings[self._next]:
            self._next += 1
            return self._texts[self._next - 1]
        return self.take()[0]

    def take_raw(self) -> tuple[str, list[Finding]]:
        """The next text as it is, and what was found in it (nothing counted)."""
        text, found = self._texts[self._next], self._findings[self._next]
        self._next += 1
        return text, found


def _under_secret_name(value: str, kind: str, scanned: _Scanned) -> str:
    """A string stored under a secret-like name: what the scan found in it, else all of it."""
    text, found = scanned.take_raw()
    if found:
        scanned.counts.update(f.kind for f in found)
        return apply(text, found)
    if kind == "authorization":
        match = _AUTH_SCHEME.fullmatch(value)
        secret_kind = match and auth_value((match.group("scheme") or "").lower(), match["value"])
        if match is None or not secret_kind:
            return value
        scanned.counts[secret_kind] += 1
        start, end = match.span("value")
        return value[:start] + marker(secret_kind) + value[end:]
    stripped = value.strip()
    if kind == "password" and " " in stripped:  # a passphrase: a literal, under this name
        secret = len(stripped) >= 8 and "[REDACTED" not in stripped
    else:
        secret = " " not in stripped and plausible(stripped, kind, quoted=True)
    if not secret:
        return value
    scanned.counts[kind] += 1
    return marker(kind)


def _rebuild(data: Any, scanned: _Scanned) -> Any:
    """A copy of a JSON value with its secrets replaced (new dicts and lists throughout)."""
    if isinstance(data, str):
        return scanned.take_text()
    if isinstance(data, list):
        return [
            scanned.take_text() if type(item) is str else _rebuild(item, scanned)
            for item in cast(list[Any], data)
        ]
    if not isinstance(data, dict):
        return data
    items = cast(dict[Any, Any], data)
    # {"name": "DB_PASSWORD", "value": "..."}: env lists, form fields, header lists.
    pair_kind: str | None = None
    value_key = (
        "value"
        if type(items.get("value")) is str
        else "Value"
        if type(items.get("Value")) is str
        else None
    )
    if value_key is not None:
        for name_key in _NAME_KEYS:
            name = items.get(name_key)
            if isinstance(name, str) and (pair_kind := key_kind(name)) is not None:
                break
    out: dict[Any, Any] = {}
    for key, value in items.items():
        new_key = key
        kind: str | None = None
        if isinstance(key, str):
            kind = pair_kind if key == value_key and pair_kind else key_kind(key)
            new_key = scanned.take_text()
            while new_key in out or (new_key != key and new_key in items):
                new_key += "_"  # two keys redacted alike must not overwrite each other
        if type(value) is str:
            out[new_key] = (
                scanned.take_text() if kind is None else _under_secret_name(value, kind, scanned)
            )
        else:
            out[new_key] = _rebuild(value, scanned)
    return out


def _max_length(model: type[InteractionData] | type[ToolUsed], field: str) -> int:
    """A string field's max_length, read from the model so that a change there is followed."""
    for meta in model.model_fields[field].metadata:
        limit = getattr(meta, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"{model.__name__}.{field} has no max_length")


_TURN_FIELDS: Final = {
    name: _max_length(InteractionData, name)
    for name in (
        "role",
        "content",
        "expert_content",
        "user_action_description",
        "interacted_image_url",
    )
}
_TOOL_NAME_LIMIT: Final = _max_length(ToolUsed, "tool_name")
_STATUS_LIMIT: Final = _max_length(ToolUsed, "status")


def _turn_texts(turn: InteractionData, texts: list[str]) -> None:
    texts += (cast(str, getattr(turn, name)) for name in _TURN_FIELDS)
    for tool in turn.tools_used:
        texts += (tool.tool_name, tool.status)
        _collect(tool.tool_data, texts)


def _redacted_turn(turn: InteractionData, scanned: _Scanned) -> InteractionData:
    update = {name: scanned.take(limit)[0] for name, limit in _TURN_FIELDS.items()}
    tools: list[ToolUsed] = []
    for tool in turn.tools_used:
        name = scanned.take(_TOOL_NAME_LIMIT)[0]
        status = scanned.take(_STATUS_LIMIT)[0]
        rebuilt = _rebuild(tool.tool_data, scanned)
        values = dict(tool.__dict__, tool_name=name, status=status, tool_data=rebuilt)
        tools.append(ToolUsed.model_construct(set(tool.model_fields_set), **values))
    # model_construct keeps which fields were set (model_copy(update=) marks every updated one),
    # and the new lists and dicts share nothing mutable with the input.
    values = dict(turn.__dict__, tools_used=tools, **update)
    return InteractionData.model_construct(set(turn.model_fields_set), **values)


def redact_turns(turns: Sequence[InteractionData]) -> Redaction:
    """Copies of the turns with every secret replaced by `[REDACTED:<kind>]`, and the counts.

    Synchronous and CPU-bound (see bench/redaction.py for MB/s): run big publishes in a worker
    thread. Thread-safe.
    """
    texts: list[str] = []
    for turn in turns:
        _turn_texts(turn, texts)
    scanned = _Scanned(texts)
    redacted = [_redacted_turn(turn, scanned) for turn in turns]
    return Redaction(turns=redacted, counts=dict(sorted(scanned.counts.items())))
