"""Pydantic's validation reports, reworded as the project's own 'field: what to change' lines.

Pydantic's text ("1 validation error for delete_interactionArguments ... For further
information visit https://errors.pydantic.dev/...") names the field, but a model acts faster
on `top_k: must be between 1 and 1000 (got 0)`. Every argument error, whether the SDK's
schema check or our own models found it, goes through `invalid_input()`; every refusal of
input, whichever protocol answer carries it (a tool's error, invalid params, a batch item's
message), is worded by `invalid_input_text()`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.models import InteractionData, ToolUsed
from reflexio_mcp.core.shown import shown, shown_name

MAX_NAMED = 10
"""Problems (or unknown arguments) named one by one in an error; the rest are counted."""
_KNOWN_NESTED_FIELDS = sorted({*InteractionData.model_fields, *ToolUsed.model_fields})
_JSON_TYPE = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing_size": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "datetime_type": "an ISO 8601 time",
}


def invalid_input(error: ValidationError, rename: dict[str, str] | None = None) -> InvalidInput:
    """One 'field: reason' line per problem, never a URL, never more than a glimpse of a value.

    `rename` maps a model's field names to the argument names the caller used ("" names a
    value that is not a field of any model).
    """
    return InvalidInput(problem_lines(error.errors(include_url=False), rename or {}))


def invalid_input_text(
    problem: ValidationError | InvalidInput | str, rename: dict[str, str] | None = None
) -> str:
    """The one voice of refused input: the prefix every refusal starts with, then what to
    change (a validation report reworded as `invalid_input` does, with `rename`)."""
    if isinstance(problem, ValidationError):
        problem = invalid_input(problem, rename)
    return f"invalid input: {problem}"


def problem_lines(errors: Iterable[ErrorDetails], rename: dict[str, str]) -> list[str]:
    """At most MAX_NAMED lines, then how many more: an error must fit in a model's context."""
    lines: list[str] = []
    for item in errors:
        line = f"{field_path(item['loc'], rename)}: {_reason(item)}"
        if line not in lines:  # a union reports one problem once per member
            lines.append(line)
    if len(lines) > MAX_NAMED:
        lines = [*lines[:MAX_NAMED], f"and {len(lines) - MAX_NAMED} more problems like these"]
    return lines


def field_path(loc: Sequence[int | str], rename: dict[str, str] | None = None) -> str:
    """('interactions', 0, 'content') -> 'interactions[0].content'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = (rename or {}).get(part, part) if not path else shown_name(part)
            path += f".{name}" if path else name
    return path or (rename or {}).get("", "arguments")


def _reason(item: ErrorDetails) -> str:
    kind = item["type"]
    context: dict[str, Any] = dict(item.get("ctx") or {})
    value = item.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(context.get("error", item["msg"])).removeprefix("Value error, ")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        name = str(item["loc"][-1]) if item["loc"] else ""
        close = difflib.get_close_matches(name, _KNOWN_NESTED_FIELDS, n=1)
        return "not a known field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind in _JSON_TYPE:
        return f"must be {_JSON_TYPE[kind]} (got {_kind_of(value)})"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')} (got {shown(value)})"
    if kind == "string_too_short":
        low = context.get("min_length", 1)
        return "must not be empty" if low == 1 else f"must have at least {low} characters"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "more"
        return f"must have at most {context.get('max_length'):,} characters (got {length:,})"
    if kind in ("too_short", "too_long"):
        bound = "at least" if kind == "too_short" else "at most"
        limit = context.get("min_length" if kind == "too_short" else "max_length")
        items = "item" if limit == 1 else "items"
        return f"must have {bound} {limit} {items} (got {context.get('actual_length')})"
    if kind == "finite_number":
        return f"must be a finite number (got {shown(value)})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(context.values()), "?")
        return f"must be {words} {bound} (got {shown(value)})"
    return f"{item['msg']} (got {shown(value)})"


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {shown(value)}"
    return shown(value) if not isinstance(value, dict) else "an object"
