"""Two stateless replicas behind a round-robin TCP proxy: one logical client, many processes.

Two `reflexio-mcp --stateless` processes (Streamable HTTP) share one Reflexio and one data
folder (so one outbox), as replicas on one host would. A small TCP proxy in the test stands in
for the load balancer: each client has its own front port, and each new TCP connection on it
goes to the next replica, so with keep-alive off every call of a client lands on the other
replica than its previous call (the case that breaks server-held sessions). Ten SDK clients,
half on the handshake-era protocol, half on the 2026 one, make 200 tool calls at once; then
both replicas are asked what Reflexio holds: every publish exactly once, none lost.

The clients read concurrently but take turns to publish: Reflexio 0.2.32's SQLite store
answers concurrent publishes with "database is locked" and, now and then, stops answering
anything at all (a lock-up inside Reflexio, seen with plain REST calls and no reflexio-mcp),
which would fail this test, and every later test sharing the server, for Reflexio's reasons.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count, pairwise
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
import httpx2
import pytest
from anyio.abc import SocketAttribute, SocketStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.mcp_http import HttpBridge, call, http_bridge
from tests.support.reflexio_server import RunningServer

CLIENTS = 10
CALLS_PER_CLIENT = 20  # 200 in all
RECORD_BYTES = 16_384
"""How much of what a client sends on one connection the proxy keeps, to tell calls apart."""
DELIVERY_SECONDS = 30.0
SESSION_SECONDS = 120.0
"""A client's whole session (each call also has its own limit, CALL_SECONDS)."""
METHOD = re.compile(rb'"method":\s*"([^"]+)"')
TOOL = re.compile(rb'"name":\s*"([a-z_]+)"')

Op = Literal["publish", "search_by_request", "get", "search_by_word", "republish"]


@dataclass
class Connection:
    """One TCP connection through the proxy, in the order its front port accepted it."""

    client: int
    replica: int
    request: bytearray = field(default_factory=bytearray)

    @property
    def method(self) -> str | None:
        found = METHOD.search(self.request)
        return found.group(1).decode() if found else None

    @property
    def tool(self) -> str | None:
        found = TOOL.search(self.request)
        return found.group(1).decode() if found else None


class RoundRobinProxy:
    """A loopback TCP proxy. Each client gets a front port; each new connection on a front
    port goes to the next replica (client i starts at replica i), and is logged."""

    def __init__(self, replica_ports: list[int], tasks: anyio.abc.TaskGroup) -> None:
        self.replica_ports = replica_ports
        self.connections: list[Connection] = []
        self.per_replica = [0] * len(replica_ports)
        self.failures: list[str] = []
        self._tasks = tasks

    async def front(self, client: int) -> int:
        """Open client `client`'s front port; return it."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        turn = count(client)

        async def handle(downstream: SocketStream) -> None:
            replica = next(turn) % len(self.replica_ports)
            connection = Connection(client, replica)
            self.connections.append(connection)
            self.per_replica[replica] += 1
            try:
                await self._relay(downstream, self.replica_ports[replica], connection)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as err:
                self.failures.append(f"client {client} -> replica {replica}: {err!r}")

        async def serve() -> None:
            async with listener:
                await listener.serve(handle)

        self._tasks.start_soon(serve)
        return listener.extra(SocketAttribute.local_port)

    @staticmethod
    async def _relay(downstream: SocketStream, port: int, connection: Connection) -> None:
        async with (
            downstream,
            await anyio.connect_tcp("127.0.0.1", port) as upstream,
            anyio.create_task_group() as pumps,
        ):

            async def pump(source: SocketStream, sink: SocketStream, record: bytearray) -> None:
                try:
                    async for chunk in source:
                        record += chunk[: max(0, RECORD_BYTES - len(record))]
                        await sink.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
                # HTTP/1.1 without keep-alive: one side closing ends the exchange.
                pumps.cancel_scope.cancel()

            pumps.start_soon(pump, downstream, upstream, connection.request)
            pumps.start_soon(pump, upstream, downstream, bytearray())  # answers: not kept

    def calls_of(self, client: int) -> list[Connection]:
        """Client `client`'s tools/call connections, in order."""
        return [c for c in self.connections if c.client == client and c.method == "tools/call"]


@asynccontextmanager
async def no_keepalive_client(
    endpoint: str, mode: Literal["auto", "legacy"]
) -> AsyncGenerator[Client]:
    """An SDK Client whose every HTTP request opens a new TCP connection."""
    limits = httpx2.Limits(max_keepalive_connections=0)
    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(limits=limits, timeout=timeout) as http:
        with anyio.fail_after(SESSION_SECONDS):
            async with Client(
                streamable_http_client(endpoint, http_client=http), mode=mode
            ) as client:
                await client.list_tools()  # the SDK lists tools before a first call: do it now
                yield client


@dataclass
class Published:
    request_id: str
    word: str
    contents: tuple[str, str]
    status: str
    client: int
    call: int


@dataclass
class Outcome:
    """What the clients saw."""

    published: dict[str, Published] = field(default_factory=dict[str, Published])
    texts: list[str] = field(default_factory=list[str])
    calls: Counter[str] = field(default_factory=Counter[str])
    statuses: Counter[str] = field(default_factory=Counter[str])
    publishing: anyio.Lock = field(default_factory=anyio.Lock)
    """Publishes take turns (see the module's docstring); reads do not."""


def plan(call_index: int) -> Op:
    """Call k of every client: publish, then read it back through the other replica."""
    if call_index == CALLS_PER_CLIENT - 1:
        return "republish"
    ops: list[Op] = ["publish", "search_by_request", "get", "search_by_word"]
    return ops[call_index % 4]


def word_for(client: int, call_index: int) -> str:
    """A made-up word found in one publish only (letters: the full-text index's token)."""
    return "quokka" + chr(ord("a") + client) + chr(ord("a") + call_index) + "zz"


def publish_arguments(published: Published, user_id: str, run: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "request_id": published.request_id,
        "session_id": f"{run}-session-{published.client}",
        "interactions": [
            {"role": "user", "content": published.contents[0]},
            {"role": "assistant", "content": published.contents[1]},
        ],
    }


def request_of(
    op: Op, index: int, k: int, mine: list[Published], user_id: str, run: str
) -> tuple[str, dict[str, Any], Published | None]:
    """Tool, arguments, and (for a new publish) what it publishes, of call k of a client."""
    if op == "publish":
        word = word_for(index, k)
        contents = (f"client {index} asks about the {word}", f"answer {k} to {index}")
        published = Published(f"{run}-{index}-{k}", word, contents, "", index, k)
        return "publish_interaction", publish_arguments(published, user_id, run), published
    if op == "republish":  # of the publish 3 calls back: through the other replica
        return "publish_interaction", publish_arguments(mine[-1], user_id, run), None
    if op == "search_by_request":
        arguments = {"user_id": user_id, "request_id": mine[-1].request_id, "top_k": 10}
        return "search_interactions", arguments, None
    if op == "search_by_word":
        arguments = {"user_id": user_id, "query": mine[-1].word, "top_k": 10}
        return "search_interactions", arguments, None
    return "get_interactions", {"user_id": user_id, "top_k": 1000}, None


async def run_client(index: int, endpoint: str, user_id: str, run: str, outcome: Outcome) -> None:
    mode: Literal["auto", "legacy"] = "legacy" if index % 2 == 0 else "auto"
    mine: list[Published] = []
    async with no_keepalive_client(endpoint, mode) as client:
        for k in range(CALLS_PER_CLIENT):
            op = plan(k)
            tool, arguments, published = request_of(op, index, k, mine, user_id, run)
            if tool == "publish_interaction":
                async with outcome.publishing:
                    is_error, result, text = await call(client, tool, arguments)
            else:
                is_error, result, text = await call(client, tool, arguments)
            outcome.texts.append(text)
            outcome.calls[tool] += 1
            assert not is_error, f"client {index} call {k} ({op}): {text}"
            if published is not None:
                published.status = result["status"]
                outcome.statuses[published.status] += 1
                assert published.status in ("stored", "queued"), text
                mine.append(published)
                outcome.published[published.request_id] = published
            elif op == "republish":
                outcome.statuses["republish:" + result["status"]] += 1
                assert result["stored"] == 0, f"a request_id published twice stored twice: {text}"
                assert result["status"] in ("already_stored", "queued"), text
            elif mine[-1].status == "stored":
                check_read(op, result, mine[-1], text)


def check_read(op: Op, result: dict[str, Any], last: Published, text: str) -> None:
    """The latest publish of this client, stored by one replica, read through the other."""
    turns = [i for i in result["interactions"] if i["request_id"] == last.request_id]
    if op == "search_by_request":
        assert sorted(i["content"] for i in turns) == sorted(last.contents), text
        assert len(result["interactions"]) == 2, text
    elif op == "search_by_word":
        assert last.contents[0] in [i["content"] for i in turns], text
    else:
        assert sorted(i["content"] for i in turns) == sorted(last.contents), text
        ids = [i["interaction_id"] for i in result["interactions"]]
        assert len(ids) == len(set(ids)), "get_interactions listed a turn twice"


@pytest.fixture
def replicas(reflexio: RunningServer, tmp_path: Path) -> Iterator[list[HttpBridge]]:
    env = {
        "REFLEXIO_URL": reflexio.url,
        "REFLEXIO_MCP_PUBLISH_RATE": "0",
        "REFLEXIO_MCP_DATA_DIR": str(tmp_path / "shared-data"),  # one outbox for both
    }
    with (
        http_bridge(tmp_path / "replica-0", "--stateless", env=env) as first,
        http_bridge(tmp_path / "replica-1", "--stateless", env=env) as second,
    ):
        yield [first, second]


async def test_stateless_replicas_behind_round_robin_serve_every_call_once(
    replicas: list[HttpBridge], user_id: str
) -> None:
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    outcome = Outcome()
    ports = [int(r.base_url.rsplit(":", 1)[1]) for r in replicas]
    async with anyio.create_task_group() as proxy_tasks:
        proxy = RoundRobinProxy(ports, proxy_tasks)
        endpoints = [f"http://127.0.0.1:{await proxy.front(i)}/mcp" for i in range(CLIENTS)]
        async with anyio.create_task_group() as clients:
            for index, endpoint in enumerate(endpoints):
                clients.start_soon(run_client, index, endpoint, user_id, run, outcome)
        load_seconds = time.monotonic() - started

        # Every call succeeded; the mix was as planned.
        assert sum(outcome.calls.values()) == CLIENTS * CALLS_PER_CLIENT == 200
        assert outcome.calls["publish_interaction"] == 60
        assert len(outcome.published) == 50

        # Every client's calls alternated between the replicas, and each served half.
        for index in range(CLIENTS):
            calls = proxy.calls_of(index)
            assert [c.tool for c in calls] == [tool_of(plan(k)) for k in range(CALLS_PER_CLIENT)]
            served = [c.replica for c in calls]
            assert all(a != b for a, b in pairwise(served)), served
        assert min(proxy.per_replica) >= 0.45 * sum(proxy.per_replica), proxy.per_replica
        assert not proxy.failures, proxy.failures

        await check_reflexio_holds_each_publish_once(endpoints, user_id, outcome)
        proxy_tasks.cancel_scope.cancel()
        print(
            f"200 calls through 2 replicas in {load_seconds:.1f} s; connections per replica "
            f"{proxy.per_replica}; publishes {dict(outcome.statuses)}"
        )

    for text in outcome.texts:
        assert "session not found" not in text.lower(), text
    for replica in replicas:
        log = replica.log_text()
        assert "session not found" not in log.lower(), log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert not [line for line in log.splitlines() if " ERROR " in line], log[-3000:]
        assert replica.process.poll() is None, "a replica died"


def tool_of(op: Op) -> str:
    if op in ("publish", "republish"):
        return "publish_interaction"
    return "get_interactions" if op == "get" else "search_interactions"


async def check_reflexio_holds_each_publish_once(
    endpoints: list[str], user_id: str, outcome: Outcome
) -> None:
    """Through both replicas: each publish delivered (the shared outbox says so), its two
    turns found by its request_id, and the user's whole history is exactly the publishes."""
    async with (
        no_keepalive_client(endpoints[0], "auto") as one,
        no_keepalive_client(endpoints[1], "legacy") as other,
    ):
        clients = [one, other]
        deadline = time.monotonic() + DELIVERY_SECONDS
        waiting = set(outcome.published)
        while waiting:  # only publishes answered `queued` can still be waiting
            for n, request_id in enumerate(sorted(waiting)):
                is_error, status, text = await call(
                    clients[n % 2],
                    "get_publish_status",
                    {"user_id": user_id, "request_id": request_id},
                )
                outcome.texts.append(text)
                assert not is_error, text
                assert status["status"] in ("delivered", "queued"), text
                if status["status"] == "delivered":
                    waiting.discard(request_id)
            assert time.monotonic() < deadline, f"never delivered: {sorted(waiting)}"
            if waiting:
                await anyio.sleep(0.5)

        for n, published in enumerate(outcome.published.values()):
            is_error, found, text = await call(
                clients[n % 2],
                "search_interactions",
                {"user_id": user_id, "request_id": published.request_id, "top_k": 10},
            )
            outcome.texts.append(text)
            assert not is_error, text
            contents = sorted(i["content"] for i in found["interactions"])
            assert contents == sorted(published.contents), text

        histories: list[list[dict[str, Any]]] = []
        for first, other in (clients, clients[::-1]):
            # Paged to fit the result budget; the pages alternate replicas (cursors are
            # stateless).
            is_error, listed, text = await call(
                first, "get_interactions", {"user_id": user_id, "top_k": 1000}
            )
            assert not is_error, text
            history = listed["interactions"]
            page = 1
            while listed["next_cursor"]:
                replica = (first, other)[page % 2]
                is_error, listed, text = await call(
                    replica, "get_interactions", {"cursor": listed["next_cursor"]}
                )
                assert not is_error, text
                history += listed["interactions"]
                page += 1
            histories.append(history)
    assert histories[0] == histories[1]
    turns = Counter((i["request_id"], i["content"]) for i in histories[0])
    expected = Counter(
        (p.request_id, content) for p in outcome.published.values() for content in p.contents
    )
    assert turns == expected, "turns lost or stored twice"
    assert len({i["interaction_id"] for i in histories[0]}) == 2 * len(outcome.published)
