"""The per-caller session bound in process, where a test decides when the SDK has reaped a
session and how many opening requests are under way at once (over the real process, in
test_http_security.py, a session is only reaped after 30 idle minutes)."""

from __future__ import annotations

import json
import os

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from reflexio_mcp.transports.sessions import SessionLimit

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "200"))


class FakeSdk:
    """Answers every request that opens a session with a new session id; `held` is what the
    SDK still holds; `gate` (when set) keeps each request waiting until it is set."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.opened = 0
        self.gate: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.opened += 1
        session = f"s{self.opened}"
        self.held.add(session)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"mcp-session-id", session.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})


def opening(address: str = "127.0.0.1", **headers: str) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": (address, 5000),
    }


async def status_of(app: SessionLimit, scope: Scope) -> tuple[int, str]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body.decode()


def limited(sdk: FakeSdk, per_caller: int) -> SessionLimit:
    return SessionLimit(
        sdk, per_caller, path="/mcp", known_token=lambda _: False, alive=sdk.held.__contains__
    )


async def test_a_reaped_session_frees_its_slot() -> None:
    sdk = FakeSdk()
    app = limited(sdk, 2)
    assert [(await status_of(app, opening()))[0] for _ in range(3)] == [200, 200, 429]
    sdk.held.discard("s1")  # idle timeout
    assert (await status_of(app, opening()))[0] == 200
    assert (await status_of(app, opening()))[0] == 429
    # Another address, and requests that open no session, are not counted.
    assert (await status_of(app, opening("127.0.0.2")))[0] == 200
    assert (await status_of(app, opening(**{"mcp-session-id": "s2"})))[0] == 200
    assert (await status_of(app, opening(**{"mcp-protocol-version": "2026-07-28"})))[0] == 200
    status, body = await status_of(app, opening())
    assert status == 429
    message = json.loads(body)["error"]["message"]
    assert message.startswith("too many open sessions: at most 2 at once per client address")


async def test_concurrent_openings_cannot_overshoot_the_bound() -> None:
    sdk = FakeSdk()
    sdk.gate = anyio.Event()
    app = limited(sdk, 2)
    statuses: list[int] = []

    async def open_one() -> None:
        statuses.append((await status_of(app, opening()))[0])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for _ in range(6):
                tasks.start_soon(open_one)
            while len(statuses) < 4:  # the 4 beyond the bound are refused while 2 wait
                await anyio.lowlevel.checkpoint()
            sdk.gate.set()
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    assert len(sdk.held) == 2


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["open", "reap"]),
        st.sampled_from(["127.0.0.1", "127.0.0.2"]),
        st.integers(0, 3),
    ),
    max_size=40,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(operations=OPERATIONS, per_caller=st.integers(1, 4))
async def test_a_caller_is_refused_exactly_when_it_holds_its_bound(
    operations: list[tuple[str, str, int]], per_caller: int
) -> None:
    """Opens and reaps in any order, for two callers: each open is answered 200 while the
    caller holds fewer than `per_caller` live sessions, 429 otherwise."""
    sdk = FakeSdk()
    app = limited(sdk, per_caller)
    owners: dict[str, str] = {}
    for operation, caller, which in operations:
        held = sorted(s for s in sdk.held if owners[s] == caller)
        if operation == "reap":
            if held:
                sdk.held.discard(held[which % len(held)])
            continue
        status, _ = await status_of(app, opening(caller))
        assert status == (200 if len(held) < per_caller else 429), (held, per_caller)
        if status == 200:
            owners[f"s{sdk.opened}"] = caller


async def test_a_session_whose_request_is_still_finishing_is_counted_once() -> None:
    """The client has the answer (and the session id) before the request's last step ends on
    the server, so it may open the next one meanwhile: that session counts once, not both as
    opened and as still opening (a caller at 2 of 3 was refused its third)."""
    sdk = FakeSdk()
    app = limited(sdk, 2)
    answered, finish = anyio.Event(), anyio.Event()
    statuses: list[int] = []

    async def first() -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                answered.set()
                await finish.wait()  # the server's side of the request is not over yet

        await app(opening(), receive, send)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await answered.wait()
            statuses.append((await status_of(app, opening()))[0])
            statuses.append((await status_of(app, opening()))[0])
            finish.set()
    assert statuses == [200, 429]
