"""HTTP to a Reflexio server: one connection pool, retries, and every failure a clear error.

Knows HTTP and Reflexio's error conventions, nothing of MCP or of which endpoint means what.
Anything the server echoes is redacted (the API key) before it is cut short or shown, and
URLs are shown without their user:password part.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypedDict, cast
from urllib.parse import quote, unquote, urlencode, urlsplit
from urllib.request import getproxies

import anyio
import httpx2
from pydantic import SecretStr

from reflexio_mcp import __version__
from reflexio_mcp.backends.reflexio.http11 import (
    Answer,
    ConnectFailed,
    ConnectTimedOut,
    Dropped,
    ExchangeError,
    Http11Pool,
    NotHttp,
)
from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import (
    AuthError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    InvalidInput,
    NotReflexio,
    RateLimited,
    ServerError,
)
from reflexio_mcp.core.loopback import is_loopback
from reflexio_mcp.core.pacing import full_jitter
from reflexio_mcp.core.urls import display_url

logger = logging.getLogger(__name__)

USER_AGENT = f"reflexio-mcp/{__version__}"
"""Reflexio answers 403 to a missing User-Agent or one naming bot, curl, wget, crawler..."""
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
DETAIL_CHARS = 300


class HttpOptions(TypedDict, total=False):
    """ReflexioHttpClient's keyword arguments, for callers that pass them through."""

    api_key: SecretStr | None
    timeout: float
    connect_timeout: float
    max_retries: int
    retry_delay: float
    max_retry_delay: float
    transport: httpx2.AsyncBaseTransport | None


class ReflexioHttpClient:
    """Sends requests to one Reflexio server. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        api_key: SecretStr | None = None,
        timeout: float = defaults.TIMEOUT_SECONDS,
        connect_timeout: float = defaults.CONNECT_TIMEOUT_SECONDS,
        max_retries: int = defaults.MAX_RETRIES,
        retry_delay: float = defaults.RETRY_DELAY_SECONDS,
        max_retry_delay: float = defaults.MAX_RETRY_DELAY_SECONDS,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = display_url(url.rstrip("/"))
        self._api_key = api_key
        parts = urlsplit(url)
        # user:password@ in the URL is Basic auth for a proxy in front of Reflexio; an API key
        # (Bearer) takes the one Authorization header when both are given.
        self._basic_auth = (
            (unquote(parts.username or ""), unquote(parts.password or ""))
            if parts.username is not None and api_key is None
            else None
        )
        self._secrets = _secrets(api_key, parts.username, parts.password)
        self._timeout = httpx2.Timeout(timeout, connect=connect_timeout)
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._transport = transport
        self._client: httpx2.AsyncClient | None = None
        self._lean: Http11Pool | None = None
        self._base_path = ""

    def __repr__(self) -> str:
        return (
            f"ReflexioHttpClient(url={self.url!r}, api_key={'set' if self._api_key else 'unset'})"
        )

    async def __aenter__(self) -> Self:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        elif self._basic_auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(
                ":".join(self._basic_auth).encode()
            ).decode("ascii")
        parts = urlsplit(self.url)
        if self._transport is None and parts.scheme == "http" and not _proxied():
            host = parts.hostname or ""
            port = parts.port or 80
            netloc = f"[{host}]" if ":" in host else host
            head = {"Host": netloc if parts.port is None else f"{netloc}:{port}", **headers}
            # As httpx2 sends it: escapes kept, a space or a control character escaped.
            self._base_path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
            self._lean = Http11Pool(host, port, _header_lines(head))
        else:
            self._client = httpx2.AsyncClient(
                base_url=self.url,
                headers=headers,
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._lean is not None:
            await self._lean.aclose()
            self._lean = None

    @property
    def read_seconds(self) -> float:
        """How long a request waits for its answer, unless it says otherwise (REFLEXIO_TIMEOUT)."""
        return self._timeout.read or defaults.TIMEOUT_SECONDS

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
    ) -> tuple[Answer, bool]:
        """Send with retries of transient failures; return the 2xx answer and whether it was
        retried. Every retry resends the same body, so a publish keeps its request_id:
        Reflexio stores a request_id once, which makes the retry safe. `retries` overrides
        the client's max_retries for this call (the outbox does its own).

        Raises:
            BackendUnreachable: no connection (or it dropped), after the retries.
            BackendTimeout: connected, but no answer in time (not retried).
            BackendStatusError: any answer that is not a 2xx JSON answer.
        """
        if self._client is None and self._lean is None:
            raise RuntimeError("ReflexioHttpClient used outside `async with`")
        connect = self._timeout.connect or 0
        read = read_timeout or self._timeout.read or 0
        target = path + ("?" + urlencode(params) if params else "")
        max_retries = self._max_retries if retries is None else retries
        attempt = 0
        while True:
            started = time.perf_counter()
            failure: BackendUnreachable | None = None
            answer: Answer | None = None
            try:
                # A read timeout bounds each read, not the answer: a backend trickling bytes
                # would never time out. The whole attempt gets one limit.
                with anyio.fail_after(connect + read):
                    answer = await self._exchange(method, target, body, connect, read)
            except ConnectTimedOut:
                failure = BackendUnreachable(
                    f"no connection to Reflexio at {self.url} within {connect:g} s: is "
                    "it running and reachable from here? (REFLEXIO_CONNECT_TIMEOUT sets the wait)"
                )
            except TimeoutError:
                # The request may have been processed: not retried, so a slow backend costs
                # one timeout, not several.
                raise BackendTimeout(
                    f"Reflexio at {self.url} did not answer {path} within {read:g} s; it "
                    "may be busy: try again, or raise REFLEXIO_TIMEOUT"
                ) from None
            except ExchangeError as err:
                failure = self._transport_failure(err)
            logger.debug(
                "%s %s -> %s in %.1f ms",
                method,
                path,
                answer.status_code if answer is not None else "no answer",
                (time.perf_counter() - started) * 1000,
            )
            if answer is not None and answer.status_code not in RETRY_STATUSES:
                self._raise_for_status(answer, path)
                return answer, attempt > 0
            wait = self._backoff(attempt + 1, answer)
            if attempt >= max_retries or wait is None:
                if answer is not None:
                    self._raise_for_status(answer, path)
                assert failure is not None
                raise failure
            attempt += 1
            await anyio.sleep(wait)

    async def _exchange(
        self, method: str, target: str, body: bytes | None, connect: float, read: float
    ) -> Answer:
        """One request and its answer, by the lean client or by httpx2, whose failures are
        raised as the lean client's kinds (TimeoutError for an answer too slow)."""
        if self._lean is not None:
            return await self._lean.request(
                method, self._base_path + target, body, connect_timeout=connect
            )
        assert self._client is not None
        try:
            response = await self._client.request(
                method,
                target,
                content=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=httpx2.Timeout(read, connect=connect),
            )
        except httpx2.ConnectTimeout as err:
            raise ConnectTimedOut(str(err)) from err
        except httpx2.TimeoutException as err:
            raise TimeoutError from err
        except httpx2.ConnectError as err:
            raise ConnectFailed(str(err)) from err
        except httpx2.TransportError as err:
            raise Dropped(type(err).__name__) from err
        return Answer(
            response.status_code,
            response.reason_phrase,
            {name.lower(): value for name, value in response.headers.items()},
            response.content,
            response.url.path,
        )

    def scrubbed(self, text: str) -> str:
        """`text` without the API key or URL password, in any form the server could echo them;
        call it before cutting text short."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _backoff(self, attempt: int, response: Answer | None) -> float | None:
        """Seconds to wait before `attempt`, or None when the server asks for too long."""
        if response is not None and (retry_after := _retry_after(response)) is not None:
            return retry_after if retry_after <= defaults.MAX_RETRY_AFTER_SECONDS else None
        return full_jitter(attempt, self._retry_delay, self._max_retry_delay)

    def _transport_failure(self, err: ExchangeError) -> BackendUnreachable:
        causes = _causes(err)
        host = urlsplit(self.url).hostname or self.url
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            return BackendUnreachable(
                f"cannot resolve the host {host!r} of REFLEXIO_URL ({self.url}): check its "
                "spelling, or use an IP address"
            )
        if tls := next((c for c in causes if isinstance(c, ssl.SSLError)), None):
            return BackendUnreachable(
                f"TLS with Reflexio at {self.url} failed ({tls}): check http:// vs "
                "https:// in REFLEXIO_URL and the server's certificate"
            )
        if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            start = (
                "start it with `reflexio services start`"
                if is_loopback(host)
                else "check that Reflexio runs there and the port is right"
            )
            return BackendUnreachable(
                f"Reflexio backend unreachable at {self.url} (connection refused): {start}, "
                "or set REFLEXIO_URL"
            )
        if isinstance(err, NotHttp):
            return BackendUnreachable(
                f"Reflexio at {self.url} answered with something that is not HTTP ({err}): check "
                "the scheme and port of REFLEXIO_URL"
            )
        if isinstance(err, ConnectFailed):
            return BackendUnreachable(
                f"Reflexio backend unreachable at {self.url} ({self.scrubbed(str(err))[:200]}): "
                "check REFLEXIO_URL and the network"
            )
        return BackendUnreachable(
            f"the connection to Reflexio at {self.url} dropped before an answer "
            f"({err}): it may have restarted; try again"
        )

    def _raise_for_status(self, response: Answer, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300 and _is_json(response):
            return
        if status == 422 and _is_json(response):
            raise self._invalid_input(response)
        detail = self._detail(response)
        where = f"Reflexio at {self.url}"
        if 300 <= status < 400:
            target = display_url(response.header("Location") or "elsewhere")
            raise NotReflexio(
                f"{self.url}{path} redirects ({status}) to {target}: set REFLEXIO_URL to the "
                "address Reflexio answers on",
                status,
            )
        if status < 300 or (status in (404, 405) and not _is_json(response)):
            raise NotReflexio(
                f"{self.url} is not a Reflexio server: {path} answered {status} with "
                f"{_content_kind(response)}, not Reflexio's JSON API. Check REFLEXIO_URL (the "
                "address of `reflexio services start`, e.g. http://127.0.0.1:8061)",
                status,
            )
        if status == 403 and "user agent" in detail.lower():
            raise AuthError(
                f"{where} refused the User-Agent ({detail}); something between reflexio-mcp and "
                f"Reflexio replaced {USER_AGENT!r}",
                status,
            )
        if status in (401, 403):
            fix = (
                "the REFLEXIO_API_KEY given is not one this Reflexio server accepts: check it "
                "against the server's key"
                if self._api_key is not None
                else "this Reflexio server needs an API key: set REFLEXIO_API_KEY"
            )
            raise AuthError(f"{where} refused the call ({status} {detail}): {fix}", status)
        if status == 429:
            retry_after = _retry_after(response)
            wait = f"retry after {retry_after:g} s" if retry_after else "wait a minute"
            raise RateLimited(
                f"Reflexio's rate limit refused the call ({detail}); {wait} and try again. To "
                "publish many turns, send them in one publish_interaction (up to 1000).",
                status,
                retry_after,
            )
        if status == 404:
            raise NotReflexio(
                f"{self.url}{path} does not exist (404): is REFLEXIO_URL a Reflexio 0.2 server?",
                status,
            )
        if status >= 500 and not _is_json(response):
            raise ServerError(
                f"{self.url} answered {path} with {status} {response.reason_phrase} and "
                f"{_content_kind(response)}: a proxy in front of Reflexio, or Reflexio itself, "
                "is failing. Try again later; if it lasts, check that server",
                status,
                _retry_after(response),
            )
        if status >= 500:
            raise ServerError(
                f"{where} failed on {path} ({status}: {detail}); its server log says why. Try "
                "again later.",
                status,
                _retry_after(response),
            )
        raise BackendStatusError(f"{where} answered {status} on {path}: {detail}", status)

    def _detail(self, response: Answer) -> str:
        """The error text Reflexio put in its answer, redacted, then kept short."""
        if not _is_json(response):
            return response.reason_phrase
        try:
            data: Any = response.json()
        except ValueError:
            return response.reason_phrase
        text = str(cast(object, data))
        if isinstance(data, dict):
            fields = cast(dict[str, Any], data)
            text = next(
                (
                    value
                    for key in ("detail", "error", "message", "msg")
                    if isinstance(value := fields.get(key), str) and value
                ),
                text,
            )
        return _cut(self.scrubbed(text))

    def _invalid_input(self, response: Answer) -> InvalidInput:
        """FastAPI's 422 {"detail": [{"loc": [...], "msg": ...}]} as 'field: reason' lines."""
        try:
            details: Any = response.json().get("detail")
        except (ValueError, AttributeError):
            details = None
        if not isinstance(details, list) or not details:
            return InvalidInput(
                [f"request: Reflexio refused it as invalid: {self._detail(response)}"]
            )
        problems: list[str] = []
        for item in cast(list[Any], details):
            if not isinstance(item, dict):
                continue
            entry = cast(dict[str, Any], item)
            loc = [str(part) for part in cast(list[Any], entry.get("loc") or [])]
            if loc and loc[0] in ("body", "query"):
                loc = loc[1:]
            where = self.scrubbed(".".join(loc) or "request")
            problems.append(
                f"{_cut(where)}: {_cut(self.scrubbed(str(entry.get('msg', 'invalid'))))}"
            )
        return InvalidInput(problems or ["request: Reflexio refused it as invalid"])


def _proxied() -> bool:
    """Whether the environment names a proxy for plain http: then httpx2 sends (and applies
    NO_PROXY), as it always did."""
    proxies = getproxies()
    return bool(proxies.get("http") or proxies.get("all"))


def _header_lines(headers: Mapping[str, str]) -> bytes:
    for name, value in headers.items():
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError(f"the {name} header holds a control character")  # never its value
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def _secrets(api_key: SecretStr | None, user: str | None, password: str | None) -> list[str]:
    """Every form of a credential a server might echo back, longest first."""
    found: list[str] = []
    if api_key is not None and api_key.get_secret_value():
        found.append(api_key.get_secret_value())
    if password:
        plain = f"{unquote(user or '')}:{unquote(password)}"
        found += [base64.b64encode(plain.encode()).decode(), plain, password, unquote(password)]
    return sorted({secret for secret in found if len(secret) >= 4}, key=len, reverse=True)


def _causes(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _is_json(response: Answer) -> bool:
    return "json" in response.header("Content-Type").lower()


def _content_kind(response: Answer) -> str:
    kind = response.header("Content-Type").split(";")[0].strip()
    return f"a {kind} body" if kind else "no content type"


def _cut(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


def _retry_after(response: Answer) -> float | None:
    value = response.header("Retry-After").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())
