"""The tools' schemas as tools/list shows them: pydantic's JSON schema without what costs
every session context and tells a model nothing (issue 18: the whole list fits in 10,000
characters).

Both lose pydantic's titles and the models' docstrings (written for this code's readers), and
have each `$ref` replaced by what it points to. Arguments keep every property, bound, enum
and the description written for each; they lose the defaults a model assumes anyway ("",
false, null, empty) and the null branch of an optional argument (leaving it out means null;
null is still accepted). Results keep what a client validates them against: each field's
type (an object inside, such as a turn, as a bare object), enums, nullability and which
fields are required; what a result means is said in the tool's description, where a model
reads it.
"""

from __future__ import annotations

from typing import Any, cast

Schema = dict[str, Any]

_NULL: Schema = {"type": "null"}
_ASSUMED: tuple[object, ...] = ("", False, None, [], {}, 0)
"""Defaults a model assumes of an argument it leaves out."""
_NAMED_SUBSCHEMAS = ("properties", "$defs")
"""Keywords whose value maps names to schemas: a property may be called "title"."""
_SUBSCHEMAS = ("items", "additionalProperties", "not")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def listed_arguments(schema: Schema) -> Schema:
    """An input schema as listed: bounds, enums and argument descriptions, no noise."""
    return _walk(_inlined(_undocumented(schema)), result=False)


def listed_result(schema: Schema) -> Schema:
    """An output schema as listed: the fields a result always has, with their types; an
    object inside it (a turn, a batch item's result) is just an object, and a list of them just
    an array. A field it may leave at its default (a note, a cursor, a count of retries) is not
    listed: any value validates there, and the model reads it in the result itself."""
    listed = _walk(_inlined(_undocumented(schema)), result=True)
    fields = cast(dict[str, Schema], listed.get("properties", {}))
    required = set(cast(list[str], listed.get("required", [])))
    return {
        **listed,
        "properties": {name: _opaque(field) for name, field in fields.items() if name in required},
    }


def _opaque(schema: Schema) -> Schema:
    """The schema with any object in it (itself, or the items of an array) as its bare type,
    an array of objects a bare array: validating a whole turn per listed turn cost every SDK
    client about 0.1 ms a turn, most of a search's latency, and a model reads the turns'
    fields in the result itself."""
    if "properties" in schema:
        return {"type": schema.get("type", "object")}
    items = schema.get("items")
    if isinstance(items, dict):
        inner = _opaque(cast(Schema, items))
        if inner.get("type") == "object" and len(inner) == 1:
            return {key: value for key, value in schema.items() if key != "items"}
        return {**schema, "items": inner}
    return schema


def _inlined(schema: Schema) -> Schema:
    """The schema with each `$ref` replaced by its definition: every model here is used in one
    place, so $defs only add names and pointers (and some clients resolve $ref poorly). A
    recursive definition stays a reference."""
    definitions = cast(dict[str, Schema], schema.get("$defs", {}))
    kept: set[str] = set()

    def resolved(node: Any, within: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [resolved(item, within) for item in cast(list[Any], node)]
        if not isinstance(node, dict):
            return node
        node = cast(Schema, node)
        name = str(node.get("$ref", "")).removeprefix("#/$defs/")
        if name in definitions:
            if name in within:
                kept.add(name)
                return node
            rest = {key: value for key, value in node.items() if key != "$ref"}
            definition = _undocumented(definitions[name])
            return {**resolved(definition, within | {name}), **rest}
        return {key: resolved(value, within) for key, value in node.items() if key != "$defs"}

    inlined = cast(Schema, resolved(schema, frozenset()))
    if kept:
        inlined["$defs"] = {
            name: resolved(_undocumented(definitions[name]), frozenset({name})) for name in kept
        }
    return inlined


def _undocumented(model: Schema) -> Schema:
    """A model's schema without its docstring."""
    return {key: value for key, value in model.items() if key != "description"}


def _walk(schema: Schema, *, result: bool) -> Schema:
    walked: Schema = {}
    for key, value in schema.items():
        if key in _NAMED_SUBSCHEMAS:
            named = cast(dict[str, Schema], value)
            walked[key] = {name: _walk(sub, result=result) for name, sub in named.items()}
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            walked[key] = _walk(cast(Schema, value), result=result)
        elif key in _SUBSCHEMA_LISTS:
            walked[key] = [_walk(sub, result=result) for sub in cast(list[Schema], value)]
        else:
            walked[key] = value
    walked.pop("title", None)
    omitted_means_null = walked.get("default", ...) is None
    if result:
        walked.pop("description", None)
    if result or _assumed(walked.get("default", ...)):
        walked.pop("default", None)
    if walked.get("additionalProperties") is True:  # what JSON Schema assumes
        del walked["additionalProperties"]
    if result or omitted_means_null:
        return _nullable(walked, result=result)
    return walked


def _assumed(default: object) -> bool:
    return any(type(default) is type(assumed) and default == assumed for assumed in _ASSUMED)


def _nullable(schema: Schema, *, result: bool) -> Schema:
    """`X | None` as one schema: X itself for an argument that is null when left out, X with
    null among its types for a result (a result holds the null)."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or len(cast(list[Schema], branches)) != 2:
        return schema
    others = [b for b in cast(list[Schema], branches) if b != _NULL]
    if len(others) != 1:
        return schema
    [other] = others
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    if not result:
        return {**other, **rest}
    if isinstance(other.get("type"), str):
        nullable = {**other, "type": [other["type"], "null"], **rest}
        if isinstance(enum := other.get("enum"), list):  # an enum allows only what it lists
            nullable["enum"] = [*cast(list[object], enum), None]
        return nullable
    return schema
