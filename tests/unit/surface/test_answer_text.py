"""The text a model reads of a listing: JSON Lines that show every turn's content once, whole,
with its ids, and nothing empty, default or repeated; at most twice the characters of the
content it carries on a conversation like LoCoMo's."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.core.limits import MAX_TIMESTAMP
from reflexio_mcp.core.models import Interaction, StoredToolUse
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.answer_text import answer_text, answered
from reflexio_mcp.surface.listing import ContextTurn, InteractionList, SearchAnswer
from tests.support.tool_calls import call, text

TEXTS = st.text(max_size=40)
RENDERING = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = st.builds(
    StoredToolUse,
    tool_name=st.text(max_size=10),
    tool_data=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=2),
    status=st.sampled_from(["", "ok"]),
)


@st.composite
def interactions(draw: st.DrawFn, users: list[str]) -> list[Interaction]:
    ids = draw(st.lists(st.integers(1, 2**63 - 1), unique=True, max_size=8))
    return [
        Interaction(
            interaction_id=interaction_id,
            user_id=draw(st.sampled_from(users) | TEXTS),
            request_id=draw(TEXTS),
            session_id=draw(st.sampled_from(["", "s-1"]) | TEXTS),
            created_at=draw(st.integers(0, MAX_TIMESTAMP)),
            role=draw(st.sampled_from(["User", "assistant"]) | TEXTS),
            content=draw(TEXTS),
            expert_content=draw(st.sampled_from([""]) | TEXTS),
            user_action=draw(st.sampled_from(["none", "click"])),
            user_action_description=draw(st.sampled_from([""]) | TEXTS),
            interacted_image_url=draw(st.sampled_from(["", "https://example.com/a.png"])),
            tools_used=draw(st.lists(TOOLS, max_size=2)),
            score=draw(st.none() | st.floats(0, 1)),
        )
        for interaction_id in ids
    ]


def lines_of(rendered: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, *turns = [json.loads(line) for line in rendered.split("\n")]
    return header, turns


def shown_as(turn: Interaction, line: dict[str, Any], user_id: str | None) -> None:
    """`line` shows `turn` whole, and nothing that is empty, default or said elsewhere."""
    assert line["interaction_id"] == turn.interaction_id
    assert line.get("content", "") == turn.content
    assert line["time"] == turn.time
    assert line["role"] == turn.role
    assert "created_at" not in line
    assert line.get("user_id", user_id) == turn.user_id
    assert ("user_id" in line) is (turn.user_id != user_id)
    if turn.score is None:
        assert "score" not in line
    else:
        assert math.isclose(line["score"], round(turn.score, 2))
    for name in ("expert_content", "user_action_description", "interacted_image_url"):
        assert line.get(name, "") == getattr(turn, name)
        assert (name in line) is bool(getattr(turn, name))
    assert line.get("user_action", "none") == turn.user_action
    tools = [tool.model_dump(exclude_defaults=True) for tool in turn.tools_used]
    assert line.get("tools_used", []) == tools


@RENDERING
@given(st.sampled_from(["me", "user with \"quotes\"\n"]).flatmap(
    lambda user: st.tuples(st.just(user), interactions([user]))
))  # fmt: skip
def test_every_turn_is_one_line_that_reads_back_whole(case: tuple[str, list[Interaction]]) -> None:
    user_id, turns = case
    answer = InteractionList(user_id=user_id, count=len(turns), interactions=turns)
    header, lines = lines_of(answer_text(answer))
    assert header == {"user_id": user_id}  # the count is the number of lines
    assert [line["interaction_id"] for line in lines] == [t.interaction_id for t in turns]
    for turn, line in zip(turns, lines, strict=True):
        shown_as(turn, line, user_id)
        if turn.session_id:
            assert line["session_id"] == turn.session_id
            assert "request_id" not in line
        else:  # the publish is what groups it then
            assert "session_id" not in line
            assert line["request_id"] == turn.request_id


@RENDERING
@given(interactions(["ann", "bob"]))
def test_every_users_turns_each_say_whose(turns: list[Interaction]) -> None:
    header, lines = lines_of(
        answer_text(InteractionList(user_id=None, count=len(turns), interactions=turns))
    )
    assert header == {}  # user_id null: every user
    for turn, line in zip(turns, lines, strict=True):
        assert line["user_id"] == turn.user_id
        shown_as(turn, line, None)


@RENDERING
@given(interactions(["me"]), st.data())
def test_context_turns_follow_their_hit_marked_as_context(
    turns: list[Interaction], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(turns)))
    hits, others = turns[:split], turns[split:]
    context = [
        ContextTurn.model_validate(
            {**dict(turn), "context_of": data.draw(st.sampled_from(hits)).interaction_id}
        )
        for turn in (others if hits else [])
    ]
    answer = SearchAnswer(
        user_id="me", count=len(hits), interactions=hits, context=context,
        search_mode_effective="fts", note="a note\nof two lines",
    )  # fmt: skip
    header, lines = lines_of(answer_text(answer, mode_asked="hybrid"))
    assert header == {
        "user_id": "me", "note": "a note\nof two lines",
        "search_mode_effective": "fts",  # not the mode asked for
    }  # fmt: skip
    expected: list[tuple[int, int | None]] = []
    for hit in hits:
        expected.append((hit.interaction_id, None))
        expected += [
            (t.interaction_id, hit.interaction_id)
            for t in context
            if t.context_of == hit.interaction_id
        ]
    assert [(line["interaction_id"], line.get("context_of")) for line in lines] == expected
    by_id = {t.interaction_id: t for t in [*hits, *context]}
    for line in lines:
        turn = by_id[line["interaction_id"]]
        shown_as(turn, line, "me")
        if isinstance(turn, ContextTurn):
            hit = by_id[turn.context_of]
            # Its session is the hit's: said once, on the hit's line.
            same = turn.session_id == hit.session_id
            assert line.get("session_id", hit.session_id if same else "") == turn.session_id


def test_the_mode_a_search_ran_is_said_when_it_is_not_the_one_asked() -> None:
    ran = SearchAnswer(user_id="me", count=0, interactions=[], search_mode_effective="fts")
    assert answer_text(ran, mode_asked="fts") == '{"user_id":"me"}'
    assert answer_text(ran, mode_asked="vector") == '{"user_id":"me","search_mode_effective":"fts"}'
    unsaid = SearchAnswer(user_id="me", count=0, interactions=[])
    assert answer_text(unsaid, mode_asked="vector") == '{"user_id":"me"}'


def test_the_structured_content_keeps_the_whole_schema() -> None:
    turn = Interaction(interaction_id=1, user_id="me", request_id="r", created_at=0, content="hi")
    result = answered(SearchAnswer(user_id="me", count=1, interactions=[turn]))
    assert result.structured_content == {
        "user_id": "me", "count": 1, "truncated": False, "next_cursor": None, "note": None,
        "search_mode_effective": None, "context": [],
        "interactions": [{
            "interaction_id": 1, "user_id": "me", "request_id": "r", "session_id": "",
            "created_at": 0, "role": "User", "content": "hi", "expert_content": "",
            "user_action": "none", "user_action_description": "", "interacted_image_url": "",
            "tools_used": [], "score": None, "time": "1970-01-01T00:00:00Z",
        }],
    }  # fmt: skip
    assert text(result) == (
        '{"user_id":"me"}\n'
        '{"interaction_id":1,"request_id":"r","time":"1970-01-01T00:00:00Z","role":"User",'
        '"content":"hi"}'
    )


# A conversation as LoCoMo's are: two people, turns of one to three sentences (LoCoMo's dev
# half: 143 characters a turn on average, median 127).
CONVERSATION = [
    (
        "Maya",
        "Hey Jon! I finally booked the trip to Lisbon for May. We fly TAP out of Newark on "
        "the 12th and come back on the 20th, so eight whole days.",
    ),
    (
        "Jon",
        "That's great news! Are you staying in Alfama again, or did you find somewhere new "
        "this time? Last year you said the hills wore you out.",
    ),
    (
        "Maya",
        "Somewhere new: a small guesthouse in Príncipe Real with a rooftop garden. The owner "
        "grows lemons and makes her own jam for breakfast.",
    ),
    (
        "Jon",
        "Sounds lovely. Remember to try the custard tarts at the place near the tram stop, "
        "the ones we talked about last winter over coffee.",
    ),
    (
        "Maya",
        "Definitely. I also want to take a day trip to Sintra, though I hear the palaces get "
        "very crowded after ten in the morning in May.",
    ),
    (
        "Jon",
        "Go early then. When I went I took the first train from Rossio and had Pena Palace "
        "almost to myself for an hour before the tour buses.",
    ),
    (
        "Maya",
        "Good tip. How is the new job going, by the way? Last time you said the team was "
        "still figuring out the database migration plan.",
    ),
    (
        "Jon",
        "Better now. We moved everything from MySQL to Postgres over two weekends, and the "
        "reports that took minutes now take a few seconds.",
    ),
    (
        "Maya",
        "Wow, that must have been a relief. Did your manager finally approve the hiring plan "
        "for the second analyst you asked for in March?",
    ),
    (
        "Jon",
        "She did, and we start interviewing next week. I'm nervous about it, I've never been "
        "on that side of the table before, honestly.",
    ),
    (
        "Maya",
        "You'll be fine. Just ask them about a problem they solved and listen for how they "
        "think, not only what they know. That works for me.",
    ),
    (
        "Jon",
        "That's helpful, thanks. Oh, and I adopted a dog last Saturday! A three-year-old "
        "greyhound called Biscuit, very calm and very sleepy.",
    ),
    (
        "Maya",
        "No way! I love greyhounds. Does he get along with your cat, or are you keeping them "
        "in separate rooms for now, like the shelter said?",
    ),
    (
        "Jon",
        "Separate rooms for the first week, as the shelter suggested. Yesterday they sniffed "
        "each other through the gate and nobody hissed.",
    ),
    (
        "Maya",
        "That's a good start. My sister's dog took a month to accept her cats, and now the "
        "three of them sleep in the same basket by the fire.",
    ),
    (
        "Jon",
        "I hope we get there. Are you still going to the pottery class on Thursdays? You "
        "showed me that blue bowl you made for your mother.",
    ),
    (
        "Maya",
        "Yes, every Thursday. This month we are learning to throw taller pieces, and I keep "
        "collapsing them halfway up, which is frustrating.",
    ),
    (
        "Jon",
        "Practice makes perfect. Send me a photo when you get one to stand, I want to see the"
        " glaze you picked for it after all that talk.",
    ),
]


async def test_a_search_answer_is_at_most_twice_the_content_it_carries(tmp_path: Path) -> None:
    turns = [
        {"role": role, "content": content, "created_at": 1_714_557_600 + n}
        for n, (role, content) in enumerate(CONVERSATION)
    ]
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        for n in range(0, len(turns), 6):
            session = {
                "session_id": f"c1-session_{n // 6 + 1}",  # as bench/recall.py names them
                "interactions": turns[n : n + 6],
            }
            await call(client, "publish_interaction", {"user_id": "locomo-1", **session})
        text_chars = content_chars = 0
        for query in (  # each of them about several turns, as LoCoMo's questions often are
            "What did Maya plan for the Lisbon trip, the guesthouse and Sintra?",
            "How are Jon's dog Biscuit and the cat getting along, and whose dog took a month?",
            "What happened at Jon's job: the database, the manager, the interviews?",
            "What does Maya make at the pottery class, and the bowl and glaze?",
        ):
            result = await client.call_tool(
                "search_interactions", {"user_id": "locomo-1", "query": query, "top_k": 10}
            )
            assert result.structured_content is not None
            hits = result.structured_content["interactions"]
            assert hits
            text_chars += len(text(result))
            content_chars += sum(len(hit["content"]) for hit in hits)
    assert text_chars <= 2 * content_chars, (text_chars, content_chars)
