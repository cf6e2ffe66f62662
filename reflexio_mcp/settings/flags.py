"""The command-line flags, one per setting that has one, generated from the Settings model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import NoneType, UnionType
from typing import Any, Literal, get_args, get_origin

from reflexio_mcp.settings.declared import HTTP, flag_name, shown
from reflexio_mcp.settings.environment import ENVIRONMENT
from reflexio_mcp.settings.model import Settings, source

GROUP_DESCRIPTIONS = {
    HTTP: f"The access token is read from {ENVIRONMENT['access_token']} only, and the state key "
    f"replicas share from {ENVIRONMENT['state_key']} only (a flag would show them in the "
    "process list).",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per setting; each defaults to None so the environment can fill it."""
    groups: dict[str | None, Any] = {None: parser}  # the parser, or an argument group of it
    for name, field in Settings.model_fields.items():
        declared = source(name)
        if not declared.flag:
            continue
        if declared.group not in groups:
            groups[declared.group] = parser.add_argument_group(
                declared.group, GROUP_DESCRIPTIONS.get(declared.group or "")
            )
        groups[declared.group].add_argument(
            flag_name(name), help=help_text(name), **_reading(field.annotation, declared.parse)
        )


def help_text(name: str) -> str:
    """The setting's description, then its default if shown, then its variable in brackets
    unless the description names it."""
    declared = source(name)
    field = Settings.model_fields[name]
    text = field.description or ""
    if declared.show_default:
        text += f", {shown(field.default)}"
    if "{env}" in text:
        return text.format(env=declared.env)
    return f"{text} [{declared.env}]".lstrip()


def _reading(annotation: object, parse: Callable[[str], object] | None) -> dict[str, Any]:
    """argparse's way to read a value of this type."""
    kind = _without_none(annotation)
    if parse is not None:
        return {"type": parse}
    if kind is bool:
        return {"action": "store_true", "default": None}
    if kind is int or kind is float:
        return {"type": kind}
    if get_origin(kind) is Literal:
        return {"choices": list(get_args(kind))}
    return {}


def _without_none(annotation: object) -> object:
    if isinstance(annotation, UnionType):
        [kind] = [arg for arg in get_args(annotation) if arg is not NoneType]
        return kind
    return annotation
