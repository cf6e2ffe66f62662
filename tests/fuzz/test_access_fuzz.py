"""Property tests of what guards the HTTP transports, with input no one planned for:

- a tokens file of any JSON is either read or refused in words, never echoing a token;
- any tools/call params from a pinned caller reach a tool only as that caller's user;
- any Authorization header bytes meet the rate limit without a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server.context import ServerRequestContext
from mcp_types import CallToolResult
from starlette.types import Receive, Scope, Send

from reflexio_mcp.core.errors import TokenFileError
from reflexio_mcp.core.grants import Grant
from reflexio_mcp.surface.access_scope import access_scope, acting_user
from reflexio_mcp.transports.rate_limit import RateLimit
from reflexio_mcp.transports.tokens import read_tokens_file

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = "s3cret-token-value-0123456789"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
entries = st.fixed_dictionaries(
    {"token": st.one_of(st.just(SECRET), st.just(SECRET[:10]), json_values)},
    optional={
        "user_id": st.one_of(st.text(max_size=12), json_values),
        "role": st.one_of(st.sampled_from(["read", "write", "admin", "root"]), json_values),
        "name": json_values,
        "extra": json_values,
    },
)
files = st.one_of(
    st.fixed_dictionaries({"tokens": st.lists(entries, max_size=4)}),
    json_values,
)


@FUZZ
@given(content=files)
def test_any_tokens_file_is_read_or_refused_in_words(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(content))
    path.chmod(0o600)
    try:
        known = read_tokens_file(path)
    except TokenFileError as err:
        refusal = str(err)
    else:
        assert all(entry.grant.role in ("read", "write", "admin") for entry in known)
        return
    assert SECRET not in refusal
    assert SECRET[:10] not in refusal


PINNED = Grant("alice", "write")


@FUZZ
@given(
    name=st.one_of(
        st.sampled_from(["publish_interaction", "get_interactions", "get_all_interactions"]),
        json_values,
    ),
    arguments=st.one_of(
        st.dictionaries(
            st.sampled_from(["user_id", "query", "top_k"]) | st.text(max_size=8),
            json_values | st.sampled_from(["alice", "bob", ""]),
            max_size=4,
        ),
        json_values,
    ),
)
async def test_a_pinned_caller_reaches_tools_only_as_itself(name: Any, arguments: Any) -> None:
    seen: list[tuple[Any, str | None]] = []

    async def tool(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
        seen.append((dict(ctx.params or {}).get("arguments"), acting_user.get()))
        return {"content": []}

    middleware = access_scope(
        PINNED, ["publish_interaction", "get_interactions", "get_all_interactions"]
    )
    ctx = ServerRequestContext[Any, Any](
        session=None,  # type: ignore[arg-type]  # not touched by this middleware
        lifespan_context=None,
        protocol_version="2025-06-18",
        method="tools/call",
        params={"name": name, "arguments": arguments},
    )
    result = await middleware(ctx, tool)
    if seen:
        passed, user = seen[0]
        assert user == "alice"
        if isinstance(passed, dict):
            assert "user_id" not in passed
        assert name != "get_all_interactions"  # above a write role
    else:
        assert isinstance(result, CallToolResult)
        assert result.is_error


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@FUZZ
@given(authorization=st.binary(max_size=60), count=st.integers(min_value=1, max_value=4))
async def test_any_authorization_header_meets_the_rate_limit(
    authorization: bytes, count: int
) -> None:
    limited = RateLimit(_ok, 2, known_token=lambda token: token == SECRET)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=limited), base_url="http://127.0.0.1"
    ) as client:
        statuses = [
            (await client.post("/mcp", headers=[(b"authorization", authorization)])).status_code
            for _ in range(count)
        ]
    assert statuses[:2] == [200] * min(count, 2)
    assert statuses[2:] == [429] * (count - 2)


methods = st.sampled_from(
    ["initialize", "tools/call", "tools/list", "resources/read", "ping", "nonsense", ""]
)
messages = st.one_of(
    st.binary(max_size=200),
    st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values, "method": methods | json_values},
        optional={
            "id": st.integers() | st.text(max_size=5) | st.none(),
            "params": st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["get_interactions", "publish_interaction"])
                    | json_values,
                    "arguments": json_values,
                    "uri": st.text(max_size=40),
                    "protocolVersion": st.sampled_from(["2025-06-18", "2026-07-28"]) | json_values,
                },
            )
            | json_values,
        },
    ).map(lambda message: json.dumps(message).encode()),
)
header_sets = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(
            ["application/json", "text/plain", "", "application/json; x"]
        ),
        "accept": st.sampled_from(["application/json, text/event-stream", "*/*", "text/html"]),
        "mcp-protocol-version": st.sampled_from(["2025-06-18", "2026-07-28", "1999-01-01", ""]),
        "mcp-session-id": st.text(alphabet="abcdef0123456789", max_size=32),
        "authorization": st.sampled_from([f"Bearer {SECRET}", "Bearer wrong-token-012345678", ""]),
    },
)


@settings(
    max_examples=max(5, EXAMPLES // 20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=st.lists(st.tuples(header_sets, messages), min_size=1, max_size=30))
async def test_any_http_request_gets_an_answer_never_a_500(
    tmp_path: Path, requests: list[tuple[dict[str, str], bytes]]
) -> None:
    """Whatever reaches the Streamable HTTP endpoint, the whole app (guards, the SDK's auth,
    checks and transport, our tools) answers with a status, never a 500, and still serves a
    valid call afterwards."""
    from reflexio_mcp.app import SharedBackend, build_server
    from reflexio_mcp.backends.embedded.store import EmbeddedStore
    from reflexio_mcp.settings import Settings
    from reflexio_mcp.transports.drain import Drain
    from reflexio_mcp.transports.http_server import build_http_app

    settings_ = Settings(
        backend="embedded",
        data_dir=tmp_path,
        transport="streamable-http",
        access_token=SECRET,  # type: ignore[arg-type]  # pydantic makes it a SecretStr
        rate_limit=0,
        stateless=True,  # so calls reach the tools without a session
    )
    shared = SharedBackend(EmbeddedStore(settings_.data_folder), settings_.user_id)
    server = build_server(settings_, shared)
    app = build_http_app(server, settings_, None, Drain())
    async with (
        shared,
        server.session_manager.run(),
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as client,
    ):
        for headers, body in requests:
            answer = await client.post("/mcp", content=body, headers=headers)
            assert answer.status_code < 500, (headers, body, answer.status_code, answer.text)
            assert SECRET not in answer.text
        call: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get_interactions", "arguments": {}},
        }
        headers = {
            "authorization": f"Bearer {SECRET}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2025-06-18",
        }
        valid = await client.post("/mcp", json=call, headers=headers)
    assert valid.status_code == 200, valid.text
    assert '"isError":false' in valid.text
