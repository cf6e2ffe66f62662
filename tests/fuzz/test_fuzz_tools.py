"""Fuzzing: every tool answers any arguments in time, in its own words, and loses nothing.

Each test starts one server on a throwaway embedded store and drives it through the SDK's
in-process client with arguments hypothesis generates: mostly valid (so publishes store rows
that search, get and delete then find), the rest boundary numbers, wrong types, missing and
unknown arguments, odd text, odd times and odd turns. Every call must answer within
CALL_SECONDS with no protocol error. A failure must read as the project's own message: never
the SDK's prefix, a traceback, pydantic's report, a crash or a store error. A success must carry
structured content and act for the user named (or the default user); a listing holds only
that user's turns, inside the time window, no more than asked, newest first unless a query
ranks them. What a publish says it stored must read back (by its request_id), with the
user's newest turns and resource; at the end of each test, get_all_interactions and every
user's whole history must still read. REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples per test
(default 200).
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from pydantic import ValidationError

from tests.support.tool_arguments import (
    DELETE,
    FUZZ,
    GET,
    GET_ALL,
    PUBLISH,
    PUBLISH_STATUS,
    RESOURCE_USER_IDS,
    SEARCH,
    USER_ID,
    Args,
)
from tests.support.tool_fuzzer import fuzzer

# --- values -------------------------------------------------------------------------------


# --- arguments of each tool ---------------------------------------------------------------


# --- the server and its checks ------------------------------------------------------------


def fuzz(tool: str, calls: SearchStrategy[Args]) -> None:
    """Run EXAMPLES examples of `tool` against one server, then read everything back."""
    with fuzzer() as server:

        @FUZZ
        @given(data=st.data())
        def example(data: st.DataObject) -> None:
            server.example(data, tool, calls)

        example()
        server.everything_reads_back()


def test_publish_interaction_answers_any_arguments_and_what_it_stores_reads_back() -> None:
    fuzz("publish_interaction", PUBLISH)


def test_search_interactions_answers_any_arguments() -> None:
    fuzz("search_interactions", SEARCH)


def test_get_interactions_answers_any_arguments() -> None:
    fuzz("get_interactions", GET)


def test_get_all_interactions_answers_any_arguments() -> None:
    fuzz("get_all_interactions", GET_ALL)


def test_get_publish_status_answers_any_arguments() -> None:
    fuzz("get_publish_status", PUBLISH_STATUS)


def test_delete_interaction_answers_any_arguments() -> None:
    fuzz("delete_interaction", DELETE)


def test_user_resource_reads_every_valid_user_id_and_refuses_the_rest_as_invalid_params() -> None:
    with fuzzer() as server:

        @FUZZ
        @given(user_id=RESOURCE_USER_IDS, safe=st.sampled_from(["", "@:"]))
        def example(user_id: str, safe: str) -> None:
            document = server.read(f"reflexio://users/{quote(user_id, safe=safe)}/interactions")
            try:
                USER_ID.validate_python(user_id)
            except ValidationError:
                assert document is None, f"{user_id!r} was accepted"
            else:
                assert document is not None, f"{user_id!r} was refused"
                assert document["user_id"] == user_id

        example()
