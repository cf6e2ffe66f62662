"""Host and Origin headers of any shape, in process, through the same checks the server
uses: ours (a port must be a number) in front of the SDK's DNS-rebinding patterns."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from reflexio_mcp.settings import Settings
from reflexio_mcp.transports.http_server import numeric_ports, transport_security

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "300"))
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
SDK = TransportSecurityMiddleware(transport_security(Settings(transport="streamable-http")))


async def status_of(host: str, origin: str | None) -> int:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope: Scope = {"type": "http", "method": "GET", "path": "/mcp", "headers": headers}
    statuses: list[int] = []

    async def sdk(scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await SDK.validate_request(Request(scope, receive))
        statuses.append(200 if refusal is None else refusal.status_code)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await numeric_ports(sdk)(scope, receive, send)
    return statuses[0]


PORTS = st.one_of(
    st.none(),
    st.integers(0, 99999).map(str),
    st.text(alphabet="0123456789abc:x ", min_size=0, max_size=7),
)
NAMES = st.one_of(
    st.sampled_from([*LOOPBACK, "evil.example", "127.0.0.1.evil", ""]), st.text(max_size=12)
)


def authority(name: str, port: str | None) -> str:
    return name if port is None else f"{name}:{port}"


def well_formed(port: str | None) -> bool:
    return port is None or (port.isascii() and port.isdigit() and 1 <= len(port) <= 5)


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=NAMES, port=PORTS, origin_port=st.one_of(st.just("same"), PORTS))
async def test_a_host_is_accepted_iff_loopback_with_a_numeric_port_or_none(
    name: str, port: str | None, origin_port: str | None
) -> None:
    host = authority(name, port)
    assert await status_of(host, None) == (
        200 if name in LOOPBACK and well_formed(port) else 421
    ), host
    if name in LOOPBACK and well_formed(port):
        shown_port = port if origin_port == "same" else origin_port
        origin = "http://" + authority(name, shown_port)
        expected = 200 if well_formed(shown_port) else 403
        assert await status_of(host, origin) == expected, (host, origin)
