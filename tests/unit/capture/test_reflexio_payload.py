"""The files Reflexio's own CLI publishes (`reflexio interactions publish --file`), read as its
_parse_json_payload reads them (reflexio-ai 0.2.32, reflexio/cli/commands/interactions.py): one
object, an array of objects, or JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflexio_mcp.capture.conversation import Exchange, Skipped
from reflexio_mcp.capture.formats import kind_of
from reflexio_mcp.capture.reflexio_payload import read_payloads

PAYLOAD = {
    "user_id": "ana",
    "session_id": "support-42",
    "source": "helpdesk",
    "agent_version": "v3",
    "interactions": [
        {"role": "user", "content": "my order never came"},
        {
            "role": "assistant",
            "content": "I have re-sent it.",
            "tools_used": [{"tool_name": "resend"}],
        },
    ],
}


def read(path: Path) -> list[Exchange | Skipped]:
    return list(read_payloads(path))


def test_json_lines_give_one_exchange_per_object(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    other = {**PAYLOAD, "user_id": "ben", "session_id": "support-43"}
    path.write_text(json.dumps(PAYLOAD) + "\n\n" + json.dumps(other) + "\n")
    assert kind_of(path) == "reflexio"
    first, second = read(path)
    assert isinstance(first, Exchange)
    assert isinstance(second, Exchange)
    assert (first.user_id, first.session_id, first.source, first.agent_version) == (
        "ana", "support-42", "helpdesk", "v3",
    )  # fmt: skip
    assert [t.content for t in first.turns] == ["my order never came", "I have re-sent it."]
    assert first.turns[1].tools_used[0].tool_name == "resend"
    assert second.user_id == "ben"
    assert first.request_id != second.request_id


def test_an_indented_document_and_an_array_are_read_whole(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(PAYLOAD, indent=2))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([PAYLOAD, {**PAYLOAD, "session_id": "s2"}], indent=2))
    assert kind_of(one) == kind_of(many) == "reflexio"
    [alone] = read(one)
    assert isinstance(alone, Exchange)
    assert [e.session_id for e in read(many) if isinstance(e, Exchange)] == ["support-42", "s2"]


def test_the_same_object_in_two_files_has_one_request_id(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(PAYLOAD) + "\n")
    (tmp_path / "b.json").write_text(json.dumps([PAYLOAD], indent=1))
    [a] = read(tmp_path / "a.jsonl")
    [b] = read(tmp_path / "b.json")
    assert isinstance(a, Exchange)
    assert isinstance(b, Exchange)
    assert a.request_id == b.request_id


def test_without_user_or_session_the_settings_user_and_the_file_name_stand_in(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"interactions": [{"role": "user", "content": "hi"}]}) + "\n")
    [found] = read(path)
    assert isinstance(found, Exchange)
    assert found.user_id is None
    assert found.session_id == "import:notes.jsonl"


def test_bad_objects_are_skipped_naming_the_field_and_the_rest_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    bad_turn = {**PAYLOAD, "interactions": [{"role": "user", "content": "x", "colour": "red"}]}
    bad_source = {**PAYLOAD, "source": "Chat Bad"}
    empty = {**PAYLOAD, "interactions": []}
    last = {**PAYLOAD, "session_id": "last"}
    objects = [PAYLOAD, "{not json", bad_turn, [1, 2], bad_source, empty, last]
    lines = [o if isinstance(o, str) else json.dumps(o) for o in objects]
    path.write_text("\n".join(lines) + "\n")
    items = read(path)
    kept = [i.session_id for i in items if isinstance(i, Exchange)]
    assert kept == ["support-42", "last"]
    reasons = {i.where.rsplit(":", 1)[1]: i.reason for i in items if isinstance(i, Skipped)}
    assert reasons["2"].startswith("not JSON")
    assert "colour" in reasons["3"]
    assert "interactions" in reasons["4[0]"]  # each item of an array is an object to read
    assert "source" in reasons["5"]
    assert reasons["6"].startswith("interactions: empty")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["interactions", "user_id", "session_id", "source", "role", "content",
                         "tools_used", "tool_name", "created_at", "agent_version"]),
        inner, max_size=4),
    max_leaves=10), max_size=6))  # fmt: skip
def test_no_object_makes_reading_fail(tmp_path: Path, values: list[object]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in [PAYLOAD, *values]))
    items = read(path)
    assert isinstance(items[0], Exchange)
    assert all(isinstance(i, Exchange | Skipped) for i in items)
