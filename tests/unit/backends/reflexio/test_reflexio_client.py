"""The Reflexio client against httpx2.MockTransport: error paths no real server gives on demand."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx2
import pytest
from pydantic import SecretStr

from reflexio_mcp import __version__
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.http import USER_AGENT
from reflexio_mcp.core.errors import (
    AuthError,
    BackendTimeout,
    BackendUnreachable,
    InvalidInput,
    NotFound,
    NotReflexio,
    RateLimited,
    ReflexioMcpError,
    Rejected,
    ServerError,
)
from reflexio_mcp.core.models import GetRequest, InteractionData, PublishRequest, SearchRequest
from reflexio_mcp.core.urls import display_url
from tests.support.transport_failures import failing_with

URL = "http://127.0.0.1:8061"
KEY = "rk-0123456789-secret"
Handler = Callable[[httpx2.Request], httpx2.Response]


def client(
    handler: Handler, *, api_key: str | None = KEY, max_retries: int = 2, url: str = URL
) -> ReflexioApi:
    return ReflexioApi(
        url,
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
    # A turn without created_at is sent with the second it was published (Issue 16.3).
    stamped = body["interaction_data_list"][0].pop("created_at")
    assert isinstance(stamped, int)
    assert abs(stamped - time.time()) < 60
    assert body["interaction_data_list"] == [
        {"role": "user", "content": "hi", "expert_content": "", "user_action": "none",
         "user_action_description": "", "interacted_image_url": "", "image_encoding": "",
         "tools_used": []}
    ]  # fmt: skip


def test_the_body_fixes_each_turns_time_when_it_is_built() -> None:
    """A turn without created_at gets the publish's second; one with it keeps its own. The body
    is what the outbox journals, so a publish delivered later keeps its publish time."""
    request = publish_request(
        interaction_data_list=[
            InteractionData(role="user", content="now"),
            InteractionData(role="assistant", content="then", created_at=1_600_000_000),
        ]
    )
    turns = json.loads(request.checked_body(now=1_700_000_123))["interaction_data_list"]
    assert [turn["created_at"] for turn in turns] == [1_700_000_123, 1_600_000_000]
    assert request.interaction_data_list[0].created_at is None  # the request itself is unchanged


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
        return failing_with(ConnectionRefusedError(111, "Connection refused"))(request)

    async with client(handler, max_retries=2) as reflexio:
        with pytest.raises(BackendUnreachable) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert calls == 3
    assert str(err.value) == (
        "Reflexio backend unreachable at http://127.0.0.1:8061 (connection refused): start it "
        "with `reflexio services start`, or set REFLEXIO_URL"
    )


@pytest.mark.parametrize(
    ("url", "handler", "expected"),
    [
        (
            "http://reflexio.internal:8061",
            failing_with(ConnectionRefusedError(111, "Connection refused")),
            "Reflexio backend unreachable at http://reflexio.internal:8061 (connection refused): "
            "check that Reflexio runs there and the port is right, or set REFLEXIO_URL",
        ),
        (
            "http://reflexio.internal:8061",
            failing_with(socket.gaierror(-2, "Name or service not known")),
            "cannot resolve the host 'reflexio.internal' of REFLEXIO_URL "
            "(http://reflexio.internal:8061): check its spelling, or use an IP address",
        ),
        (
            "https://127.0.0.1:8061",
            failing_with(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
            "TLS with Reflexio at https://127.0.0.1:8061 failed",
        ),
        (
            URL,
            failing_with(
                httpx2.RemoteProtocolError("Server disconnected without sending a response"),
                httpx2.RemoteProtocolError,
            ),
            "the connection to Reflexio at http://127.0.0.1:8061 dropped before an answer "
            "(RemoteProtocolError): it may have restarted; try again",
        ),
    ],
)
async def test_each_connection_failure_says_what_it_is(
    url: str, handler: Handler, expected: str
) -> None:
    async with client(handler, url=url, max_retries=0) as reflexio:
        with pytest.raises(BackendUnreachable) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert str(err.value).startswith(expected)
    if "127.0.0.1" not in url:
        assert "reflexio services start" not in str(err.value)


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
        return httpx2.Response(500, json={"detail": "database is locked"})

    async with client(handler) as reflexio:
        with pytest.raises(ServerError) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert str(err.value) == (
        "Reflexio at http://127.0.0.1:8061 failed on /api/get_interactions (500: database is "
        "locked); its server log says why. Try again later."
    )


async def test_a_proxy_error_page_is_described_not_dumped() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>" + "<p>nginx</p>" * 50 + "</body></html>"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(502, text=page, headers={"Content-Type": "text/html"})

    async with client(handler, max_retries=0) as reflexio:
        with pytest.raises(ServerError) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert str(err.value) == (
        "http://127.0.0.1:8061 answered /api/get_interactions with 502 Bad Gateway and a "
        "text/html body: a proxy in front of Reflexio, or Reflexio itself, is failing. Try "
        "again later; if it lasts, check that server"
    )


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


async def test_retry_after_is_honoured_up_to_a_minute_and_reported_beyond() -> None:
    answers = iter(
        [
            httpx2.Response(429, headers={"Retry-After": "0"}, json={"error": "slow down"}),
            interactions_answer(3),
        ]
    )
    async with client(lambda request: next(answers)) as reflexio:
        assert [
            i.interaction_id for i in await reflexio.get_interactions(GetRequest(user_id="u"))
        ] == [3]

    calls = 0

    def far_off(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(429, headers={"Retry-After": "120"}, json={"error": "slow down"})

    async with client(far_off) as reflexio:
        with pytest.raises(RateLimited, match=r"\(slow down\); retry after 120 s and try again"):
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert calls == 1  # not waited out: two minutes would outlast any tool call


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
    assert not answer.already_stored
    assert "delivered by an earlier attempt" in answer.message
    assert [b["request_id"] for b in bodies] == ["req-1", "req-1"]


@pytest.mark.parametrize("same_user", [True, False])
async def test_already_exists_on_first_attempt_checks_whose_it_is(same_user: bool) -> None:
    searches: list[dict[str, object]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/search_interactions":
            searches.append(json.loads(request.content))
            return interactions_answer(*([5] if same_user else []))
        return httpx2.Response(
            200, json={"success": False, "message": "request_id 'req-1' already exists"}
        )

    async with client(handler) as reflexio:
        if same_user:
            answer = await reflexio.publish(publish_request(), wait_for_response=False)
            assert answer.already_stored
            assert "nothing was stored twice" in answer.message
        else:
            with pytest.raises(InvalidInput, match="request_id: 'req-1' was already used by"):
                await reflexio.publish(publish_request(), wait_for_response=False)
    assert searches == [{"user_id": "u", "request_id": "req-1", "most_recent_k": 1, "top_k": 1,
                         "search_mode": "hybrid"}]  # fmt: skip


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


def echoing(status: int, shape: Callable[[str], object]) -> Handler:
    """A backend that puts the request's Authorization header into its error answer."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=shape(request.headers["Authorization"]))

    return handler


@pytest.mark.parametrize(
    "handler",
    [
        echoing(500, lambda auth: {"detail": f"bad token {auth}"}),
        echoing(401, lambda auth: {"detail": f"bad token {auth}"}),
        echoing(422, lambda auth: {"detail": [{"loc": ["header", auth], "msg": f"got {auth}"}]}),
        echoing(422, lambda auth: {"detail": f"not a list: {auth}"}),
        echoing(500, lambda auth: {"detail": "x" * (300 - 20) + auth}),  # straddles the cut
        echoing(200, lambda auth: {"success": False, "msg": f"refused {auth}", "interactions": []}),
        echoing(400, lambda auth: {"error": auth * 3}),
    ],
)
async def test_a_key_echoed_by_the_backend_never_reaches_a_message(handler: Handler) -> None:
    async with client(handler, max_retries=0) as reflexio:
        with pytest.raises(ReflexioMcpError) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert KEY not in str(err.value)
    assert KEY[:8] not in str(err.value)
    assert KEY not in repr(reflexio)


async def test_a_publish_refusal_echoing_the_key_is_redacted() -> None:
    handler = echoing(200, lambda auth: {"success": False, "message": f"refused {auth}"})
    async with client(handler) as reflexio:
        with pytest.raises(ReflexioMcpError) as err:
            await reflexio.publish(publish_request(), wait_for_response=False)
    assert KEY not in str(err.value)
    assert "refused Bearer ***" in str(err.value)


async def test_user_and_password_in_the_url_are_never_shown() -> None:
    url = "http://alice:s3cr3t-pw@127.0.0.1:8061"
    assert display_url(url) == URL
    assert display_url("https://u:p@[::1]:9/x") == "https://[::1]:9/x"
    reflexio = client(failing_with(ConnectionRefusedError(111, "refused")), url=url, max_retries=0)
    assert "s3cr3t" not in reflexio.description
    assert "s3cr3t" not in repr(reflexio)
    async with reflexio:
        with pytest.raises(BackendUnreachable) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
        status = await reflexio.status("u")
    assert "s3cr3t" not in str(err.value)
    assert "s3cr3t" not in status.model_dump_json()


async def test_a_url_password_is_basic_auth_and_never_echoed_back() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["Authorization"])
        return echoing(422, lambda auth: {"detail": [{"loc": [auth], "msg": auth}]})(request)

    url = "http://alice:s3cr3t%2Fpw@127.0.0.1:8061"
    async with client(handler, url=url, api_key=None) as reflexio:
        with pytest.raises(InvalidInput) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert seen == ["Basic YWxpY2U6czNjcjN0L3B3"]  # alice:s3cr3t/pw
    assert str(err.value) == "Basic ***: Basic ***"


async def test_an_api_key_wins_over_a_url_password() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["Authorization"])
        return interactions_answer()

    async with client(handler, url="http://alice:pw@127.0.0.1:8061") as reflexio:
        await reflexio.get_interactions(GetRequest(user_id="u"))
    assert seen == [f"Bearer {KEY}"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx2.Response(
                200, text="<html>proxy login</html>", headers={"Content-Type": "text/html"}
            ),
            "http://127.0.0.1:8061 is not a Reflexio server: /api/get_interactions answered 200 "
            "with a text/html body, not Reflexio's JSON API. Check REFLEXIO_URL",
        ),
        (
            httpx2.Response(
                404, text="<html>Not Found</html>", headers={"Content-Type": "text/html"}
            ),
            "http://127.0.0.1:8061 is not a Reflexio server: /api/get_interactions answered 404",
        ),
        (
            httpx2.Response(404, json={"detail": "Not Found"}),
            "http://127.0.0.1:8061/api/get_interactions does not exist (404): is REFLEXIO_URL a "
            "Reflexio 0.2 server?",
        ),
        (
            httpx2.Response(200, json={"unexpected": True}),
            "Reflexio at http://127.0.0.1:8061 answered /api/get_interactions with something that "
            "is not its API",
        ),
        (
            httpx2.Response(
                301, headers={"Location": "https://127.0.0.1:8443/api/get_interactions"}
            ),
            "http://127.0.0.1:8061/api/get_interactions redirects (301) to "
            "https://127.0.0.1:8443/api/get_interactions: set REFLEXIO_URL to the address",
        ),
    ],
)
async def test_something_that_is_not_reflexio_is_named_as_such(
    response: httpx2.Response, expected: str
) -> None:
    async with client(lambda request: response) as reflexio:
        with pytest.raises(NotReflexio) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert str(err.value).startswith(expected)
    assert "<html>" not in str(err.value)
    assert "try again later" not in str(err.value).lower()


async def test_delete_looks_through_growing_windows_of_the_newest() -> None:
    windows: list[object] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.method == "DELETE":
            return httpx2.Response(200, json={"success": True, "message": "Deleted successfully"})
        window = json.loads(request.content)["most_recent_k"]
        windows.append(window)
        return interactions_answer(*range(1, min(window, 1500) + 1))

    async with client(handler) as reflexio:
        deleted = await reflexio.delete_interaction("u", 1200)
        with pytest.raises(NotFound):
            await reflexio.delete_interaction("u", 99_999)
    assert deleted.interaction_id == 1200
    assert windows == [100, 1000, 10_000, 100, 1000, 10_000]


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
        found = (
            await reflexio.search_interactions(SearchRequest(user_id="u", query="x", top_k=2))
        ).interactions
    assert [i.interaction_id for i in found] == [1, 2]


async def test_time_windows_are_applied_by_the_bridge_not_sent_to_reflexio_search() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if request.url.path != "/api/search_interactions":  # the hits' sessions, looked up
            return httpx2.Response(200, json={"success": True, "sessions": []})
        bodies.append(body)
        newest = 2000 - min(int(str(body.get("most_recent_k", 10))), 1000)
        rows = [
            {"interaction_id": t, "user_id": "u", "request_id": "r", "created_at": t}
            for t in range(newest, 2000)
        ]
        return httpx2.Response(200, json={"success": True, "interactions": rows[::-1]})

    end = datetime.fromtimestamp(1500, UTC)
    async with client(handler) as reflexio:
        found = (
            await reflexio.search_interactions(
                SearchRequest(user_id="u", most_recent_k=3, end_time=end)
            )
        ).interactions
    assert [i.created_at for i in found] == [1500, 1499, 1498]
    assert [b["most_recent_k"] for b in bodies] == [3, 100, 1000]
    assert all("end_time" not in b and "start_time" not in b for b in bodies)


async def test_a_failed_session_lookup_is_the_backends_error_not_an_exception_group() -> None:
    # Reflexio cannot produce this: its get_requests fails only when its store does.
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/get_requests":
            return httpx2.Response(200, json={"success": False, "msg": "storage down"})
        rows = [
            {"interaction_id": n, "user_id": "u", "request_id": f"r{n}", "created_at": n}
            for n in range(1, 4)
        ]
        return httpx2.Response(200, json={"success": True, "interactions": rows})

    async with client(handler) as reflexio:
        with pytest.raises(Rejected, match="storage down"):
            await reflexio.search_interactions(SearchRequest(user_id="u", query="x"))
