"""What counts as this machine: the one rule for a loopback host, and the Host and Origin
patterns a server on loopback accepts."""

from __future__ import annotations

import ipaddress

NAMES = ("127.0.0.1", "localhost", "::1")
"""The names clients use for this machine, one per family (each is_loopback)."""


def is_loopback(host: str) -> bool:
    """`localhost` exactly, or a loopback address: any of 127.0.0.0/8, and ::1 bracketed or
    not (so not `LOCALHOST`, `localhost.` or the IPv4-mapped `::ffff:127.0.0.1`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def authority(host: str) -> str:
    """`host` as it is written in a URL or a Host header: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


HOST_PATTERNS = [f"{authority(name)}:*" for name in NAMES]
"""Host headers naming this machine, any port (the SDK's TransportSecuritySettings form)."""
ORIGIN_PATTERNS = [f"http://{authority(name)}:*" for name in NAMES]
"""Origins of pages served from this machine over plain HTTP, any port."""
