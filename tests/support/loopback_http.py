"""A plain HTTP server on a free loopback port, for backends a test plays itself."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Generator
from contextlib import contextmanager


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Generator[int]:
    """Serve `handler` in a thread; yield the port. Stopped however the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
