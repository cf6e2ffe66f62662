"""Fuzzing resources, in process on the embedded store: the session template and
subscriptions answer any input with a result or INVALID_PARAMS, and never a pinned
caller another user's data; resources/list pages through every session once; a
subscriber is told of exactly the watched resources a publish changed, however spelled.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import itertools
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio
from anyio.from_thread import start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client, MCPDeprecationWarning
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from reflexio_mcp.app import build_server
from reflexio_mcp.surface.resources import PAGE_SIZE
from tests.support.surface_fuzzing import (
    CALL_SECONDS,
    OTHER,
    PINNED,
    SESSION_ID,
    USER_ID,
    client_of,
    examples,
    fresh,
    harness,
    invalid_params,
    ok,
    read_or_refused,
    read_text,
    session_uri,
    settings,
)

# =============================================================================================
# Resources: the session template, resources/list cursors and paging
# =============================================================================================

URI_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            PINNED,
            OTHER,
            "%62ob",
            "b%6Fb",
            "Ann",
            "ann%20",
            "%61nn",
            "a:b",
            "..",
            "%2e%2e",
            "a%2Fb",
            "%00",
            "%ZZ",
            "%C3",
            "x?y",
            "x#y",
            "a/b",
            "😀",
            "s%2F1",
            "s/1",
            "%25",
            "",
            " ",
        ]
    ),
)


def test_the_session_template_answers_any_uri_and_never_another_users_turns() -> None:
    with harness(
        admin=client_of(), pinned=client_of("legacy", user_id=PINNED, pin_user=True)
    ) as served:

        async def seed() -> None:
            for user in (PINNED, OTHER, "a:b", "%61nn"):
                for session in ("s/1", "s%2F1", "trip", "%ZZ"):
                    await ok(
                        served["admin"],
                        "publish_interaction",
                        {
                            "user_id": user,
                            "session_id": session,
                            "user_message": f"{user} said",
                            "agent_response": "ok",
                        },
                    )

        served.run(seed)

        @examples(60)
        @given(
            user=URI_TEXT,
            session=URI_TEXT,
            encode=st.sampled_from(["raw", "quoted", "quoted-user"]),
            pinned=st.booleans(),
        )
        def example(user: str, session: str, encode: str, pinned: bool) -> None:
            if encode == "raw":
                uri = f"reflexio://users/{user}/sessions/{session}"
            elif encode == "quoted":
                uri = session_uri(user, session)
            else:
                uri = f"reflexio://users/{quote(user, safe='')}/sessions/{session}"
            document = served.run(
                lambda: read_or_refused(served["pinned" if pinned else "admin"], uri)
            )
            if document is None:
                return
            owner = document["user_id"]
            if pinned:
                assert owner == PINNED, uri
            if encode == "quoted":
                assert (owner, document["session_id"]) == (user, session), uri
            USER_ID.validate_python(owner)
            SESSION_ID.validate_python(document["session_id"])
            assert {t["user_id"] for t in document["interactions"]} <= {owner}, uri

        example()


def test_resources_list_pages_through_every_session_once() -> None:
    with tempfile.TemporaryDirectory() as tmp, start_blocking_portal() as portal:

        @examples(6)
        @given(
            count=st.integers(0, 2 * PAGE_SIZE + 5),
            odd=st.sampled_from(["s", "s/", "寿司 ", "a%2F", "%"]),
        )
        def example(count: int, odd: str) -> None:
            user = fresh("lister")

            async def run() -> None:
                server = build_server(settings(Path(tmp), user_id=user))
                with anyio.fail_after(CALL_SECONDS):
                    await listed_sessions(server, user, count, odd)

            portal.call(run)

        example()


async def listed_sessions(server: Any, user: str, count: int, odd: str) -> None:
    """Publish `count` sessions for `user` (the server's own user), then page resources/list
    through them: each listed once, no page over PAGE_SIZE."""
    async with Client(server) as client:
        sessions = [f"{odd}{n}" for n in range(count)]
        for start in range(0, count, 100):
            items = [
                {"session_id": s, "user_message": "a", "agent_response": "b"}
                for s in sessions[start : start + 100]
            ]
            answer = await ok(client, "publish_batch", {"publishes": items})
            assert answer["failed"] == 0, answer
        seen: list[str] = []
        listed = await client.list_resources(cache_mode="bypass")
        while True:
            assert len(listed.resources) <= PAGE_SIZE
            seen += [str(r.uri) for r in listed.resources if "/sessions/" in str(r.uri)]
            if listed.next_cursor is None:
                break
            assert len(seen) <= count + PAGE_SIZE, "nextCursor never ends"
            listed = await client.list_resources(cursor=listed.next_cursor, cache_mode="bypass")
        assert len(seen) == len(set(seen)), "a session listed twice"
        assert set(seen) == {session_uri(user, s) for s in sessions}


# =============================================================================================
# Subscriptions of a pinned caller, on both eras
# =============================================================================================


def test_a_pinned_caller_subscribes_to_its_own_resources_only() -> None:
    with harness(
        admin=client_of(),
        legacy=client_of("legacy", user_id=PINNED, pin_user=True),
        modern=client_of("auto", user_id=PINNED, pin_user=True),
    ) as served:

        @examples(40)
        @given(
            user=URI_TEXT,
            tail=st.sampled_from(
                ["/interactions", "/sessions/s", "/sessions/", "", "/x", "?a=/interactions"]
            ),
            scheme=st.sampled_from(
                [
                    "reflexio://users/",
                    "REFLEXIO://users/",
                    "reflexio://Users/",
                    " reflexio://users/",
                ]
            ),
            era=st.sampled_from(["legacy", "modern"]),
        )
        def example(user: str, tail: str, scheme: str, era: str) -> None:
            uri = f"{scheme}{user}{tail}"

            async def run() -> bool:
                client = served[era]
                try:
                    if era == "legacy":
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", MCPDeprecationWarning)
                            await client.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                            await client.unsubscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                    else:
                        async with client.listen(resource_subscriptions=[uri]):
                            pass
                except MCPError as err:
                    invalid_params(err)
                    return False
                return True

            accepted = served.run(run)
            owner_named = scheme == "reflexio://users/" and user not in ("", PINNED)
            if accepted and owner_named:
                # Accepted: then the URI names no other user, however it is decoded.
                head = re.split(r"[/?#]", user, maxsplit=1)[0]
                assert unquote(head) in ("", PINNED), uri

        example()


# =============================================================================================
# Subscriptions: told of exactly the watched resources a publish changed, however spelled
# =============================================================================================

WATCH_USERS = ["a b", "a+b", "a:b", "東京", "x%y", "plain"]
WATCH_SESSIONS = ["s/1", "s 2", "%", "寿司", "t"]
_ALWAYS_ENCODED = "/?#%"


def spelled(text: str, choices: list[int]) -> str:
    """`text` percent-encoded character by character as `choices` say: 0 raw (unless it must
    be encoded), 1 upper-case hex, 2 lower-case hex."""
    out: list[str] = []
    for char, choice in zip(text, itertools.cycle(choices or [0]), strict=False):
        if choice == 0 and char not in _ALWAYS_ENCODED:
            out.append(char)
        else:
            encoded = quote(char, safe="")
            if encoded == char:  # unreserved: quote leaves it as is
                encoded = "".join(f"%{byte:02X}" for byte in char.encode())
            out.append(encoded.lower() if choice == 2 else encoded)
    return "".join(out)


def _watched(
    user: str, session: str, user_choices: list[int], session_choices: list[int], kind: str
) -> str:
    owner = spelled(user, user_choices)
    if kind == "user":
        return f"reflexio://users/{owner}/interactions"
    return f"reflexio://users/{owner}/sessions/{spelled(session, session_choices)}"


WATCHED: SearchStrategy[str] = st.builds(
    _watched,
    st.sampled_from(WATCH_USERS),
    st.sampled_from(WATCH_SESSIONS),
    st.lists(st.integers(0, 2), max_size=4),
    st.lists(st.integers(0, 2), max_size=4),
    st.sampled_from(["user", "session"]),
)


def test_a_subscriber_is_told_of_exactly_what_a_publish_changed() -> None:
    told: list[str] = []

    async def legacy_told(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            told.append(message.params.uri)

    with harness(
        legacy=client_of("legacy", messages=legacy_told), modern=client_of("auto")
    ) as served:

        @examples(20)
        @given(
            watched=st.lists(WATCHED, min_size=1, max_size=6, unique=True),
            user=st.sampled_from(WATCH_USERS),
            session=st.sampled_from(WATCH_SESSIONS),
            era=st.sampled_from(["legacy", "modern"]),
        )
        def example(watched: list[str], user: str, session: str, era: str) -> None:
            async def documents() -> dict[str, str]:
                return {uri: await read_text(served[era], uri) for uri in watched}

            async def publish() -> None:
                await ok(
                    served[era],
                    "publish_interaction",
                    {
                        "user_id": user,
                        "session_id": session,
                        "user_message": fresh("m"),
                        "agent_response": "r",
                    },
                )

            async def run() -> tuple[set[str], set[str]]:
                before = await documents()
                heard: set[str] = set()
                if era == "legacy":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", MCPDeprecationWarning)
                        for uri in watched:
                            await served[era].subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                        told.clear()
                        await publish()
                        await anyio.sleep(0.05)
                        heard = set(told)
                        for uri in watched:
                            await served[era].unsubscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                else:
                    async with served[era].listen(resource_subscriptions=watched) as sub:
                        await publish()
                        while True:
                            with anyio.move_on_after(0.1) as quiet:
                                event = await sub.__anext__()
                                if isinstance(event, ResourceUpdated):
                                    heard.add(event.uri)
                            if quiet.cancelled_caught:
                                break
                after = await documents()
                return heard, {uri for uri in watched if before[uri] != after[uri]}

            heard, changed = served.run(run)
            assert heard == changed, f"told {sorted(heard)}, changed {sorted(changed)}"

        example()
