"""The tools' schemas as listed: what a model needs and a client validates, nothing else."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from pydantic import BaseModel, Field

from reflexio_mcp.surface.listed_schemas import listed_arguments, listed_result


class Leaf(BaseModel):
    """A docstring for this code's readers."""

    title: str = Field(default="", max_length=5, description="A field called title.")


class Arguments(BaseModel):
    leaf: Leaf | None = None
    count: int | None = Field(default=None, ge=1, description="How many.")
    mode: str = Field(default="fast", description="How.")
    flag: bool = False


class Tree(BaseModel):
    """Recursive."""

    label: str
    children: list[Tree] = Field(default_factory=list[Any])
    parent_label: str | None = None


def valid(schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` meets `schema`, as a client's jsonschema check decides it."""
    Draft202012Validator.check_schema(schema)
    validator: Any = Draft202012Validator(schema)  # jsonschema's own types are partial
    try:
        validator.validate(value)
    except ValidationError:
        return False
    return True


def test_arguments_keep_bounds_and_descriptions_and_lose_the_rest() -> None:
    assert listed_arguments(Arguments.model_json_schema()) == {
        "type": "object",
        "properties": {
            "leaf": {
                "type": "object",
                "properties": {
                    "title": {
                        "type": "string",
                        "maxLength": 5,
                        "description": "A field called title.",
                    }
                },
            },
            "count": {"type": "integer", "minimum": 1, "description": "How many."},
            "mode": {"type": "string", "default": "fast", "description": "How."},
            "flag": {"type": "boolean"},
        },
    }


class Listing(BaseModel):
    """What a tool returns."""

    label: str = Field(description="Said in the tool's description instead.")
    leaves: list[Leaf] = Field(default_factory=list[Leaf])
    first: Leaf | None = None
    note: str | None = None


class Answer(BaseModel):
    """What a tool returns, every field always there."""

    label: str
    leaves: list[Leaf]
    first: Leaf | None


def test_a_result_keeps_its_types_nullability_and_required_fields() -> None:
    listed = listed_result(Answer.model_json_schema())
    assert listed == {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "leaves": {"type": "array"},
            "first": {"type": ["object", "null"]},
        },
        "required": ["label", "leaves", "first"],
    }
    result = Answer(label="a", leaves=[Leaf(title="b")], first=Leaf()).model_dump(mode="json")
    assert valid(listed, result)
    assert valid(listed, {**result, "first": None})
    assert not valid(listed, {**result, "label": 1})


def test_a_result_lists_only_the_fields_it_always_has() -> None:
    listed = listed_result(Listing.model_json_schema())
    assert listed == {
        "type": "object",
        "properties": {"label": {"type": "string"}},
        "required": ["label"],
    }
    result = Listing(label="a", leaves=[Leaf(title="b")], first=Leaf()).model_dump(mode="json")
    assert valid(listed, result)
    assert valid(listed, {**result, "note": None})


def test_a_recursive_definition_stays_a_reference() -> None:
    class Forest(BaseModel):
        trees: list[Tree]

    listed = listed_arguments(Forest.model_json_schema())
    tree = listed["properties"]["trees"]["items"]
    assert tree["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert set(listed["$defs"]) == {"Tree"}
    assert valid(listed, {"trees": [{"label": "a", "children": [{"label": "b"}]}]})
    assert not valid(listed, {"trees": [{"label": "a", "children": [{"label": 1}]}]})
