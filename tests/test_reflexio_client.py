"""The Reflexio client against httpx2.MockTransport: error paths no real server gives on demand."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest
from pydantic import SecretStr

from reflexio_mcp import __version__
from reflexio_mcp.errors import (
    AuthError,
    BackendTimeout,
    BackendUnreachable,
    InvalidInput,
    NotFound,
    RateLimited,
    Rejected,
    ServerError,
)
from reflexio_mcp.models import GetRequest, InteractionData, PublishRequest, SearchRequest
from reflexio_mcp.reflexio_client import USER_AGENT, ReflexioClient

URL = "http://127.0.0.1:8061"
KEY = "rk-0123456789-secret"
Handler = Callable[[httpx2.Request], httpx2.Response]


def client(handler: Handler, *, api_key: str | None = KEY, max_retries: int = 2) -> ReflexioClient:
    return ReflexioClient(
        URL,
        api_key=SecretStr(api_key) if api_key else None,
        max_retries=max_retries,
        retry_delay=0,
        transport=httpx2.MockTransport(handler),
    )


def publish_request(**changes: object) -> PublishRequest:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "user_id": "u",
        "session_id": "s",
        "interaction_data_list": [InteractionData(role="user", content="hi")],
    }
    return PublishRequest.model_validate(fields | changes)


def ok_publish(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(
        200, json={"success": True, "message": "Interaction published successfully"}
    )


def interactions_answer(*ids: int, user_id: str = "u") -> httpx2.Response:
    rows = [
        {"interaction_id": i, "user_id": user_id, "request_id": "r", "created_at": 1_700_000_000}
        for i in ids
    ]
    return httpx2.Response(200, json={"success": True, "interactions": rows})


async def test_sends_user_agent_auth_and_json() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return ok_publish(request)

    async with client(handler) as reflexio:
        await reflexio.publish(publish_request(), wait_for_response=True)
    (request,) = seen
    assert request.headers["User-Agent"] == USER_AGENT == f"reflexio-mcp/{__version__}"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.url.path == "/api/publish_interaction"
    assert request.url.params["wait_for_response"] == "true"
    body = json.loads(request.content)
    assert body["session_id"] == "s"
    assert body["interaction_data_list"] == [
        {"role": "user", "content": "hi", "expert_content": "", "user_action": "none",
         "user_action_description": "", "interacted_image_url": "", "image_encoding": "",
         "tools_used": []}
    ]  # fmt: skip


async def test_no_authorization_header_without_key() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return interactions_answer()

    async with client(handler, api_key=None) as reflexio:
        await reflexio.get_interactions(GetRequest(user_id="u"))
    assert "Authorization" not in seen[0].headers


async def test_connection_refused_is_retried_then_says_how_to_start_reflexio() -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        raise httpx2.ConnectError("Connection refused", request=request)

    async with client(handler, max_retries=2) as reflexio:
        with pytest.raises(BackendUnreachable) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert calls == 3
    assert str(err.value) == (
        "Reflexio backend unreachable at http://127.0.0.1:8061: start it with "
        "`reflexio services start` or set REFLEXIO_URL"
    )


async def test_read_timeout_is_not_retried_and_names_the_setting() -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        raise httpx2.ReadTimeout("timed out", request=request)

    async with client(handler) as reflexio:
        with pytest.raises(
            BackendTimeout, match="did not answer /api/get_interactions within 30 s"
        ):
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert calls == 1


@pytest.mark.parametrize(
    ("api_key", "fix"),
    [
        (None, "this Reflexio server needs an API key: set REFLEXIO_API_KEY"),
        (KEY, "the REFLEXIO_API_KEY given is not one this Reflexio server accepts"),
    ],
)
async def test_401_says_which_key_to_fix(api_key: str | None, fix: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"detail": "Authentication required"})

    async with client(handler, api_key=api_key) as reflexio:
        with pytest.raises(AuthError) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert fix in str(err.value)
    assert err.value.status_code == 401
    assert KEY not in str(err.value)


async def test_403_for_user_agent_is_explained() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(403, json={"detail": "Forbidden: Suspicious user agent"})

    async with client(handler) as reflexio:
        with pytest.raises(AuthError, match=r"refused the User-Agent .*replaced 'reflexio-mcp/"):
            await reflexio.get_interactions(GetRequest(user_id="u"))


async def test_422_becomes_field_and_reason() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        detail = [
            {"loc": ["body", "interaction_data_list", 0, "user_action"], "type": "enum",
             "msg": "Input should be 'click', 'scroll', 'type' or 'none'"},
            {"loc": ["body", "session_id"], "type": "missing", "msg": "Field required"},
        ]  # fmt: skip
        return httpx2.Response(422, json={"detail": detail})

    async with client(handler) as reflexio:
        with pytest.raises(InvalidInput) as err:
            await reflexio.publish(publish_request(), wait_for_response=False)
    assert err.value.problems == [
        "interaction_data_list.0.user_action: Input should be 'click', 'scroll', 'type' or 'none'",
        "session_id: Field required",
    ]


async def test_500_is_a_server_error_that_points_at_the_server_log() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, text="Internal Server Error")

    async with client(handler) as reflexio:
        with pytest.raises(ServerError, match=r"failed on /api/get_interactions \(500: Internal"):
            await reflexio.get_interactions(GetRequest(user_id="u"))


async def test_503_is_retried_until_it_succeeds() -> None:
    answers = iter([httpx2.Response(503), httpx2.Response(502), interactions_answer(7)])

    async with client(lambda request: next(answers)) as reflexio:
        found = await reflexio.get_interactions(GetRequest(user_id="u"))
    assert [i.interaction_id for i in found] == [7]


async def test_429_after_retries_says_to_wait_and_batch() -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(429, json={"error": "Rate limit exceeded: 60 per 1 minute"})

    async with client(handler) as reflexio:
        with pytest.raises(RateLimited) as err:
            await reflexio.publish(publish_request(), wait_for_response=False)
    assert calls == 3
    assert "Rate limit exceeded: 60 per 1 minute" in str(err.value)
    assert "wait a minute" in str(err.value)


async def test_retried_publish_keeps_its_request_id_and_already_exists_means_delivered() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx2.Response(503)  # the first attempt was stored but its answer was lost
        return httpx2.Response(
            200, json={"success": False, "message": "request_id 'req-1' already exists"}
        )

    async with client(handler) as reflexio:
        answer = await reflexio.publish(publish_request(), wait_for_response=False)
    assert answer.success
    assert "delivered by an earlier attempt" in answer.message
    assert [b["request_id"] for b in bodies] == ["req-1", "req-1"]


async def test_already_exists_on_first_attempt_is_an_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, json={"success": False, "message": "request_id 'req-1' already exists"}
        )

    async with client(handler) as reflexio:
        with pytest.raises(
            Rejected, match="did not store the publish: request_id 'req-1' already exists"
        ):
            await reflexio.publish(publish_request(), wait_for_response=False)


async def test_publish_over_10_mib_is_refused_before_sending() -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return ok_publish(request)

    big = [InteractionData(content="x" * 900_000) for _ in range(12)]
    async with client(handler) as reflexio:
        with pytest.raises(InvalidInput, match=r"at most 10 MiB per publish; split it"):
            await reflexio.publish(
                publish_request(interaction_data_list=big), wait_for_response=False
            )
    assert calls == 0


async def test_key_echoed_by_the_backend_is_redacted() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, json={"detail": f"bad token {KEY}"})

    async with client(handler) as reflexio:
        with pytest.raises(ServerError) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert KEY not in str(err.value)
    assert "bad token ***" in str(err.value)
    assert KEY not in repr(reflexio)


async def test_answer_outside_the_contract_is_a_server_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, text="<html>proxy login</html>")

    async with client(handler) as reflexio:
        with pytest.raises(ServerError, match="is not its API"):
            await reflexio.get_interactions(GetRequest(user_id="u"))


async def test_404_suggests_the_url_is_not_reflexio() -> None:
    async with client(
        lambda request: httpx2.Response(404, json={"detail": "Not Found"})
    ) as reflexio:
        with pytest.raises(ServerError, match="is REFLEXIO_URL a Reflexio server"):
            await reflexio.get_all_interactions(10)


async def test_delete_of_unknown_id_sends_no_delete() -> None:
    methods: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        methods.append(request.method)
        return interactions_answer(1, 2)

    async with client(handler) as reflexio:
        with pytest.raises(NotFound, match="no interaction 9 for user 'u': nothing was deleted"):
            await reflexio.delete_interaction("u", 9)
    assert methods == ["POST"]


async def test_delete_sends_json_body_and_returns_what_it_deleted() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx2.Response(200, json={"success": True, "message": "Deleted successfully"})
        return interactions_answer(1, 2)

    async with client(handler) as reflexio:
        deleted = await reflexio.delete_interaction("u", 2)
    assert deleted.interaction_id == 2
    assert seen[-1].method == "DELETE"
    assert json.loads(seen[-1].content) == {"user_id": "u", "interaction_id": 2}


async def test_search_honours_top_k_even_when_the_backend_does_not() -> None:
    async with client(lambda request: interactions_answer(1, 2, 3, 4)) as reflexio:
        found = await reflexio.search_interactions(SearchRequest(user_id="u", query="x", top_k=2))
    assert [i.interaction_id for i in found] == [1, 2]
