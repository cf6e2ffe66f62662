"""One loopback rule: what settings let listen without a token, what the Reflexio client calls
this machine, and the Host and Origin patterns the HTTP server accepts all come from it."""

from __future__ import annotations

import httpx2
import pytest

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.core import loopback
from reflexio_mcp.core.errors import BackendUnreachable
from reflexio_mcp.core.models import GetRequest
from reflexio_mcp.settings import Settings
from reflexio_mcp.transports.http_server import transport_security
from tests.support.transport_failures import failing_with

LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.255.255.254", "localhost", "::1", "[::1]",
            "0:0:0:0:0:0:0:1"]  # fmt: skip
NOT_LOOPBACK = ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "127.1", "LOCALHOST", "localhost.",
                "::ffff:127.0.0.1", "example.com", "127.0.0.1.evil", ""]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert loopback.is_loopback(host)
    assert Settings(transport="streamable-http", host=host).host == host


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_are_not_loopback_and_need_a_token(host: str) -> None:
    assert not loopback.is_loopback(host)
    if host:
        with pytest.raises(ValueError, match="without an access token"):
            Settings(transport="streamable-http", host=host)


def test_every_name_clients_use_is_loopback_and_the_patterns_come_from_them() -> None:
    assert all(loopback.is_loopback(name) for name in loopback.NAMES)
    assert loopback.HOST_PATTERNS == ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    assert loopback.ORIGIN_PATTERNS == [
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
    ]
    security = transport_security(Settings(transport="streamable-http"))
    assert security.allowed_hosts is not None
    assert security.allowed_origins is not None
    assert security.allowed_hosts[:3] == loopback.HOST_PATTERNS
    assert security.allowed_origins[:3] == loopback.ORIGIN_PATTERNS


@pytest.mark.parametrize(
    ("url", "on_this_machine"),
    [
        ("http://127.0.0.1:8061", True),
        ("http://localhost:8061", True),
        ("http://[::1]:8061", True),
        # Not in the client's old list of names, but loopback by the rule settings apply:
        ("http://127.0.0.2:8061", True),
        ("http://[0:0:0:0:0:0:0:1]:8061", True),
        ("http://10.0.0.1:8061", False),
        ("http://reflexio.internal:8061", False),
    ],
)
async def test_a_refused_connection_on_loopback_says_how_to_start_reflexio(
    url: str, on_this_machine: bool
) -> None:
    refused = failing_with(ConnectionRefusedError(111, "Connection refused"))
    reflexio = ReflexioApi(url, max_retries=0, transport=httpx2.MockTransport(refused))
    async with reflexio:
        with pytest.raises(BackendUnreachable) as err:
            await reflexio.get_interactions(GetRequest(user_id="u"))
    assert ("`reflexio services start`" in str(err.value)) is on_this_machine
    assert ("check that Reflexio runs there" in str(err.value)) is not on_this_machine
