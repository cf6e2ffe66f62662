"""Fuzzing paged results, in process on the embedded store (and, for a store changing
between pages, on the real Reflexio too):

- following next_cursor yields exactly the listing's turns, in order, each page within
  the result size budget (plus SLACK), whatever the turns hold;
- listings paged while turns are published (past, newer, better-matching, another
  user's) and deleted between their pages (a state machine, on both backends) show each
  turn they held at their first page once, in order, unless it was deleted first, and
  nothing else.

The first tests are minimal reproductions of faults this fuzzing found.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.core.limits import MAX_TOOL_DATA_DEPTH, MAX_TOOL_STATUS_CHARS
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.budget import TOO_LARGE
from tests.support.reflexio_server import RunningServer
from tests.support.surface_fuzzing import (
    JSON,
    MIN_BUDGET,
    TOOLS,
    Args,
    ClientFactory,
    Harness,
    T,
    client_of,
    cut_ids,
    examples,
    fresh,
    harness,
    ids_of,
    ok,
    pages,
    read_text,
    session_uri,
    settings,
    user_uri,
)
from tests.support.surface_fuzzing import serial as _serial
from tests.support.tool_arguments import nested

# ========================================================================================
# Minimal reproductions of the faults found (each fails until fixed)
# ========================================================================================


async def test_a_search_page_stays_within_the_budget_whatever_the_query_length(
    tmp_path: Path,
) -> None:
    """The cursor carries the query verbatim (up to 10,000 characters, base64 adds a third),
    while fit_page keeps only ENVELOPE_CHARS for everything around the turns."""
    budget = MIN_BUDGET
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        turns = [{"content": f"gardening note {n} " + "x" * 300} for n in range(6)]
        await ok(client, "publish_interaction", {"interactions": turns})
        query = "gardening" + "\n" * 5_000
        listing = await pages(client, "search_interactions", {"query": query}, budget)
    assert len(ids_of(listing)) == 6


@pytest.mark.parametrize(
    "turn",
    [
        {
            "content": "big",
            "role": "r" * 1000,
            "interacted_image_url": "https://x.test/" + "a" * 2000,
        },
        {
            "content": "\x01" * 5000,
            "expert_content": "\x02" * 5000,
            "user_action_description": "\x03" * 5000,
            "tools_used": [{"tool_name": "t", "tool_data": {"out": "\x04" * 5000}}],
        },
    ],
    ids=["long-role-and-image-url", "control-characters"],
)
async def test_a_lone_turn_larger_than_the_budget_is_cut_to_fit_it(
    tmp_path: Path, turn: Args
) -> None:
    """cut_to_fit cuts only content, expert_content, user_action_description and tools_used, and
    stops at MIN_FIELD_CHARS characters each, which JSON escapes up to six times over."""
    budget = MIN_BUDGET
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        await ok(client, "publish_interaction", {"interactions": [turn]})
        listing = await pages(client, "get_interactions", {}, budget)
    assert len(ids_of(listing)) == 1


async def test_a_page_of_ordinary_turns_stays_within_the_budget(tmp_path: Path) -> None:
    """fit_page measures compact JSON (model_dump_json), but the text the model reads is the
    SDK's JSON indented by 2 (func_metadata: pydantic_core.to_json(result, indent=2)): ten
    lines of indentation per turn, more per tool used. A page of short turns that each used one
    tool comes out about 1.65 times the budget (at the default 40,000: 65,000 characters)."""
    budget = 10_000
    tool = {"tool_name": "grep", "tool_data": {"pattern": "x", "paths": ["a", "b"]}}
    turns = [{"content": f"ok {n}", "tools_used": [tool]} for n in range(100)]
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        await ok(client, "publish_interaction", {"interactions": turns})
        listing = await pages(client, "get_interactions", {"top_k": 100}, budget)
    assert len(ids_of(listing)) == 100


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("meanwhile", ["publish", "delete"])
async def test_pages_show_each_turn_once_when_the_store_changes_between_them(
    tmp_path: Path, tool: str, meanwhile: str
) -> None:
    """A cursor is the request plus how many results were shown, so a turn published (in the
    same second as the newest listed, for get_interactions) or deleted between two pages shifts
    the rest of the listing: a turn is shown twice, or never."""
    budget = MIN_BUDGET
    when = 1_700_000_000
    arguments: Args = {"top_k": 20}
    if tool == "search_interactions":
        arguments["query"] = "gardening"
    server = build_server(
        settings(tmp_path, max_result_chars=budget, allow_admin=True, no_confirm=True)
    )
    async with Client(server) as client:
        turns = [
            {"content": f"gardening note {n} " + "x" * 400, "created_at": when} for n in range(8)
        ]
        await ok(client, "publish_interaction", {"interactions": turns})
        first = await ok(client, tool, arguments)
        assert first["truncated"]
        listed = [turn["interaction_id"] for turn in first["interactions"]]
        expected = set(ids_of(await pages(client, tool, arguments, 10**9)))
        if meanwhile == "publish":
            new = {"content": "gardening again " + "x" * 400, "created_at": when}
            await ok(client, "publish_interaction", {"interactions": [new]})
        else:
            gone = listed[0]
            await ok(client, "delete_interaction", {"interaction_id": gone})
            expected.discard(gone)
        rest = await pages(client, tool, {"cursor": first["next_cursor"]}, budget)
    seen = listed + ids_of(rest)
    assert len(seen) == len(set(seen)), f"shown twice: {seen}"
    assert expected <= set(seen), f"never shown: {sorted(expected - set(seen))}"


# =============================================================================================
# Paging: any listing, any budget, any turns
# =============================================================================================

REFERENCE_BUDGET = 10_000_000
PAGE_BUDGETS = (MIN_BUDGET, 3_333, 8_000)
LATER = 2_000_000_000
"""Turns of paging examples are stamped from here on, each example later than the last, so
that get_all_interactions lists the example's own turns first."""
PIECES = ["gardening", "a", "寿司", "😀", "\x00", "\x1f", "\n", '"', "\\", "\u2028", " ", "é"]


def repeated(sizes: list[int]) -> SearchStrategy[str]:
    return st.tuples(st.sampled_from(PIECES), st.sampled_from(sizes)).map(
        lambda pair: (pair[0] * pair[1])[: pair[1]]
    )


def text_up_to(limit: int) -> SearchStrategy[str]:
    sizes = [n for n in (1, 50, 300, 1_500, 6_000, 25_000) if n <= limit]
    return st.one_of(st.text(max_size=30), repeated(sizes))


def _output(text: str) -> Args:
    return {"output": text}


def _deep(levels: int, as_list: bool) -> Args:
    return {"deep": nested(levels, as_list)}


def _said(said: str, more: Args) -> Args:
    return {"content": "gardening " + said, **more}


TOOL_DATA: SearchStrategy[Any] = st.one_of(
    st.dictionaries(st.text(max_size=8), JSON, max_size=3),
    st.builds(_output, text_up_to(25_000)),
    st.builds(_deep, st.integers(1, MAX_TOOL_DATA_DEPTH - 2), st.booleans()),
)
PAGED_TURN: SearchStrategy[Args] = st.builds(
    _said,
    text_up_to(25_000),
    st.fixed_dictionaries(
        {},
        optional={
            "expert_content": text_up_to(25_000),
            "user_action_description": text_up_to(9_000),
            "role": st.sampled_from(["user", "assistant", "寿司", "r" * 1000]),
            "interacted_image_url": st.sampled_from(
                ["https://x.test/a.png", "https://x.test/" + "u" * (2048 - 15)]
            ),
            "tools_used": st.lists(
                st.fixed_dictionaries(
                    {"tool_name": st.sampled_from(["grep", "t" * 1000])},
                    optional={
                        "tool_data": TOOL_DATA,
                        "status": st.sampled_from(["ok", "s" * MAX_TOOL_STATUS_CHARS]),
                    },
                ),
                max_size=2,
            ),
            "created_at": st.sampled_from([0, 1, 2]),  # seconds after the example's start
        },
    ),
)


def _listing(tool: str, top_k: int, query: str) -> tuple[str, Args]:
    """A listing's tool and arguments: only a search takes a query."""
    if tool == "search_interactions" and query:
        return tool, {"top_k": top_k, "query": query}
    return tool, {"top_k": top_k}


LISTINGS: SearchStrategy[tuple[str, Args]] = st.builds(
    _listing,
    st.sampled_from(TOOLS),
    st.integers(1, 30),
    st.sampled_from(["gardening", "寿司", "a", "", "gardening 寿司 😀"]),
)


@contextmanager
def paging() -> Generator[Harness]:
    factories = {
        "reference": client_of(max_result_chars=REFERENCE_BUDGET, allow_admin=True),
        **{
            f"budget-{budget}": client_of(max_result_chars=budget, allow_admin=True)
            for budget in PAGE_BUDGETS
        },
    }
    with harness(**factories) as served:
        yield served


def test_following_next_cursor_yields_exactly_the_listing_within_the_budget() -> None:
    with paging() as served:

        @examples(25)
        @given(
            turns=st.lists(PAGED_TURN, min_size=1, max_size=10),
            listing=LISTINGS,
            budget=st.sampled_from(PAGE_BUDGETS),
        )
        def example(turns: list[Args], listing: tuple[str, Args], budget: int) -> None:
            user = fresh("pager")
            start = LATER + 10 * next(_serial)
            turns = [{**turn, "created_at": start + turn.get("created_at", 2)} for turn in turns]
            tool, arguments = listing
            if tool == "get_all_interactions":  # the example's own turns, the newest stored
                arguments = {"top_k": min(arguments["top_k"], len(turns))}
            else:
                arguments = {**arguments, "user_id": user}

            async def run() -> None:
                reference = served["reference"]
                publish = {"user_id": user, "session_id": "s", "interactions": turns}
                await ok(reference, "publish_interaction", publish)
                client = served[f"budget-{budget}"]
                for uri in (user_uri(user), session_uri(user, "s")):
                    document = await read_text(client, uri)
                    assert len(document) <= budget, f"{uri}: {len(document)} characters"
                    assert json.loads(document)["user_id"] == user
                whole = await ok(reference, tool, arguments)
                assert not whole["truncated"], "the reference budget is too small"
                listing = await pages(client, tool, arguments, budget)
                assert ids_of(listing) == [t["interaction_id"] for t in whole["interactions"]]
                originals = {t["interaction_id"]: t for t in whole["interactions"]}
                for page in listing:
                    cut = cut_ids(page)
                    for turn in page["interactions"]:
                        original = originals[turn["interaction_id"]]
                        if turn["interaction_id"] in cut:  # a true prefix, or the note
                            shown = turn["content"].split("… [cut: ")[0]
                            assert shown == TOO_LARGE or original["content"].startswith(shown)
                        else:
                            assert turn == original, f"changed without saying it was cut: {turn}"

            note(f"{tool} {arguments} at budget {budget}")
            served.run(run)

        example()


# --- the store changing between pages, on both backends ---------------------------------------

KEYSET_LATER = 5_000_000_000
"""Turns of these examples are stamped from here on (past LATER and any other test's turns),
each example later than the last, so that get_all_interactions lists the example's own."""
Stamp = tuple[int, int]
"""A turn to publish: seconds after the example's start (-1 is before its first turn), and how
often it says "gardening" (more often matches a search better)."""
STAMPS: SearchStrategy[Stamp] = st.tuples(st.integers(-1, 4), st.integers(1, 4))


def _keyset_listing(tool: str, count: int, most_recent: bool, query: bool) -> tuple[str, Args]:
    if tool != "search_interactions":
        return tool, {"top_k": count}
    return tool, {"most_recent_k" if most_recent else "top_k": count} | (
        {"query": "gardening"} if query else {}
    )


CHANGING_LISTINGS: SearchStrategy[tuple[str, Args]] = st.builds(
    _keyset_listing, st.sampled_from(TOOLS), st.integers(1, 12), st.booleans(), st.booleans()
)


def _stamped_turns(stamps: list[Stamp], start: int) -> list[Args]:
    return [
        {
            "content": "gardening " * strength + f"{fresh('note')} " + "x" * 300,
            "created_at": start + at,
        }
        for at, strength in stamps
    ]


@dataclass
class OpenListing:
    """A listing being paged through: what it held at its first page, and what was shown."""

    tool: str
    expected: list[int]
    owners: dict[int, str]
    seen: list[int]
    cursor: str | None


class ChangingStore(RuleBasedStateMachine):
    """Listings of every tool open at once, paged through in any order, while turns are
    published (past, present, better-matching, the user's own or another user's) and deleted.

    Each listing must show every turn it held at its first page, except those deleted before
    their page, exactly once, in its order, nothing else, and end (next_cursor null) only then.
    """

    served: Harness
    """The clients: `reference` shows any listing whole, `paged` pages at MIN_BUDGET."""

    def __init__(self) -> None:
        super().__init__()
        self.user = fresh("changing")
        self.start = KEYSET_LATER + 10 * next(_serial)
        self.listings: list[OpenListing] = []
        self.deleted: set[int] = set()

    def run(self, step: Callable[[Client, Client], Awaitable[T]]) -> T:
        return self.served.run(lambda: step(self.served["reference"], self.served["paged"]))

    @initialize(stamps=st.lists(STAMPS, min_size=2, max_size=12))
    def seed(self, stamps: list[Stamp]) -> None:
        self.publish(stamps, other_user=False)

    @rule(stamps=st.lists(STAMPS, min_size=1, max_size=4), other_user=st.booleans())
    def publish(self, stamps: list[Stamp], other_user: bool) -> None:
        who = f"{self.user}-other" if other_user else self.user
        publish = {"user_id": who, "interactions": _stamped_turns(stamps, self.start)}
        answer = self.run(lambda reference, _: ok(reference, "publish_interaction", publish))
        assert not answer.get("queued"), "a publish was queued: the listing changes later"

    @rule(listing=CHANGING_LISTINGS)
    def open_listing(self, listing: tuple[str, Args]) -> None:
        tool, arguments = listing
        if tool == "get_all_interactions":  # the newest turns are this example's own
            arguments = {"top_k": min(arguments["top_k"], 3)}
        else:
            arguments = {**arguments, "user_id": self.user}
        note(f"open {tool} {arguments}")

        async def first(reference: Client, paged: Client) -> OpenListing:
            whole = (await ok(reference, tool, arguments))["interactions"]
            page = await ok(paged, tool, arguments)
            return OpenListing(
                tool=tool,
                expected=[t["interaction_id"] for t in whole],
                owners={t["interaction_id"]: t["user_id"] for t in whole},
                seen=[t["interaction_id"] for t in page["interactions"]],
                cursor=page["next_cursor"],
            )

        self.listings.append(self.run(first))

    @precondition(lambda self: any(listing.cursor for listing in self.listings))
    @rule(pick=st.integers(0, 2**16))
    def next_page(self, pick: int) -> None:
        going = [listing for listing in self.listings if listing.cursor]
        listing = going[pick % len(going)]
        arguments = {"cursor": listing.cursor}
        page = self.run(lambda _, paged: ok(paged, listing.tool, arguments))
        listing.seen += [t["interaction_id"] for t in page["interactions"]]
        listing.cursor = page["next_cursor"]

    @precondition(lambda self: any(listing.expected for listing in self.listings))
    @rule(pick=st.integers(0, 2**16))
    def delete(self, pick: int) -> None:
        owners = {i: o for listing in self.listings for i, o in listing.owners.items()}
        present = sorted(set(owners) - self.deleted)
        if not present:
            return
        target = present[pick % len(present)]
        arguments: Args = {"user_id": owners[target], "interaction_id": target}
        self.run(lambda reference, _: ok(reference, "delete_interaction", arguments))
        self.deleted.add(target)

    def teardown(self) -> None:
        for listing in self.listings:
            if listing.cursor is not None:
                tool, arguments = listing.tool, {"cursor": listing.cursor}

                async def rest(_: Client, paged: Client) -> list[dict[str, Any]]:
                    return await pages(paged, tool, arguments, MIN_BUDGET)  # noqa: B023

                listing.seen += ids_of(self.run(rest))
            seen, expected = listing.seen, listing.expected
            assert len(seen) == len(set(seen)), f"{listing.tool} showed some twice: {seen}"
            assert set(seen) <= set(expected), f"not in the listing: {set(seen) - set(expected)}"
            missed = [i for i in expected if i not in seen and i not in self.deleted]
            assert not missed, f"{listing.tool} never showed {missed} of {expected}"
            assert seen == [i for i in expected if i in seen], f"out of order: {seen}"


@pytest.mark.parametrize("kind", ["embedded", "reflexio"])
def test_pages_show_the_first_pages_listing_once_whatever_changes_between_them(
    kind: str, request: pytest.FixtureRequest
) -> None:
    options: Args = {"allow_admin": True, "no_confirm": True}
    if kind == "reflexio":  # unpaced: a publish is stored when it answers, never queued
        server: RunningServer = request.getfixturevalue("lone_reflexio")
        options |= {"url": server.url, "publish_rate": 0}
    else:
        options["backend"] = "embedded"

    def client(budget: int) -> ClientFactory:
        return lambda data_dir: Client(
            build_server(Settings(data_dir=data_dir, max_result_chars=budget, **options))
        )

    with harness(reference=client(REFERENCE_BUDGET), paged=client(MIN_BUDGET)) as served:

        class Machine(ChangingStore):
            pass

        Machine.served = served
        run_state_machine_as_test(
            Machine, settings=hypothesis.settings(examples(15), stateful_step_count=12)
        )
