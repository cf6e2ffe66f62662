"""The wording of a SettingsError (core/errors.py): each invalid value named by its flag and
variable, with what to set it to."""

from __future__ import annotations

from typing import Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from reflexio_mcp.core.errors import SettingsError
from reflexio_mcp.settings.declared import flag_name, shown
from reflexio_mcp.settings.environment import ENVIRONMENT
from reflexio_mcp.settings.model import Settings, source


def settings_error(err: ValidationError) -> SettingsError:
    """The SettingsError that explains `err`."""
    return SettingsError(_describe(err), _fixes(err))


def _label(name: str) -> str:
    """How a setting is named to a user: `--flag / VARIABLE`, or the variable alone for a
    setting without a flag."""
    if name in Settings.model_fields and not source(name).flag:
        return ENVIRONMENT[name]
    return f"{flag_name(name)} / {ENVIRONMENT.get(name, '?')}"


def _describe(err: ValidationError) -> str:
    lines: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(message)
            continue
        lines.append(f"{_label(str(item['loc'][0]))}: {message}")
    return "invalid configuration: " + "; ".join(lines)


def _fixes(err: ValidationError) -> str:
    fixes: list[str] = []
    for item in err.errors(include_url=False, include_input=False):
        if not item["loc"]:  # a rule across settings: its message ends with what to change
            message = item["msg"].removeprefix("Value error, ")
            fixes.append(message.partition(": ")[2] or message)
            continue
        name = str(item["loc"][0])
        if name not in Settings.model_fields:
            continue
        declared = source(name)
        field = Settings.model_fields[name]
        unset_means = declared.unset_means or (
            None
            if field.default in (None, PydanticUndefined)
            else f"default {shown(field.default)}"
        )
        unset = "" if not declared.flag or unset_means is None else f", or unset it ({unset_means})"
        fixes.append(f"set {_label(name)} to {declared.takes or _expected(name)}{unset}")
    return "; ".join(dict.fromkeys(fixes))


def _expected(name: str) -> str:
    """What a setting takes, from its type and bounds."""
    field = Settings.model_fields[name]
    kind = field.annotation
    if kind is bool:
        return "true or false"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(kind))
    bounds: dict[str, object] = {}
    for rule in field.metadata:
        for bound in ("ge", "gt", "le"):
            if (value := getattr(rule, bound, None)) is not None:
                bounds[bound] = value
    noun = "a whole number" if kind is int else "a number" if kind is float else "a value"
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {shown(bounds['ge'])} to {shown(bounds['le'])}"
    parts = [
        f"{words} {shown(bounds[bound])}"
        for bound, words in (("ge", "of at least"), ("gt", "above"), ("le", "of at most"))
        if bound in bounds
    ]
    return " ".join([noun, *parts])
