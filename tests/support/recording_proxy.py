"""A loopback proxy in front of the real Reflexio that records every request it forwards."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2

from tests.support.reflexio_server import free_port


@dataclass(frozen=True)
class Recorded:
    """One request the bridge sent to Reflexio."""

    method: str
    path: str
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def mentions(self, text: str) -> bool:
        return (
            text in self.path or text in self.body or any(text in v for v in self.headers.values())
        )


HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}


class RecordingProxy:
    """A threaded HTTP server on a free loopback port that records each request, then forwards
    it to `target` and relays the answer."""

    def __init__(self, target: str) -> None:
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        self._upstream = httpx2.Client(base_url=target, timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_PUT(self) -> None:
                self._forward()

            def do_DELETE(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows stderr of failing tests

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                lowered = {k.lower(): v for k, v in headers.items()}
                proxy.record(
                    Recorded(self.command, self.path, lowered, body.decode(errors="replace"))
                )
                headers["Accept-Encoding"] = "identity"
                try:
                    answer = proxy._upstream.request(
                        self.command, self.path, content=body, headers=headers
                    )
                except httpx2.TransportError as err:
                    self._reply(502, b"proxy: " + str(err).encode(), "text/plain")
                    return
                self._reply(
                    answer.status_code,
                    answer.content,
                    answer.headers.get("Content-Type", "application/octet-stream"),
                    answer.headers.get("Retry-After"),
                )

            def _reply(
                self, status: int, content: bytes, kind: str, retry_after: str | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(content)

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def record(self, recorded: Recorded) -> None:
        with self._lock:
            self.records.append(recorded)

    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def since(self, mark: int) -> list[Recorded]:
        with self._lock:
            return self.records[mark:]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._upstream.close()
