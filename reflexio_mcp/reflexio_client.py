"""HTTP client for the Reflexio backend. It knows HTTP and Reflexio's API, nothing of MCP."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, SecretStr, ValidationError

from reflexio_mcp import __version__
from reflexio_mcp.errors import (
    AuthError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    InvalidInput,
    RateLimited,
    ReflexioError,
    Rejected,
    ServerError,
    not_found,
)
from reflexio_mcp.models import (
    BackendStatus,
    DeleteAnswer,
    GetRequest,
    Interaction,
    InteractionsAnswer,
    PublishAnswer,
    PublishRequest,
    SearchRequest,
    newest_first,
)

logger = logging.getLogger(__name__)

USER_AGENT = f"reflexio-mcp/{__version__}"
"""Reflexio answers 403 to a missing User-Agent or one naming bot, curl, wget, crawler..."""
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
WAIT_FOR_RESPONSE_TIMEOUT = 600.0
"""wait_for_response runs learning before answering: minutes with a real LLM."""
ALL = 2**31 - 1
"""top_k that means "every interaction of the user"."""

_Answer = TypeVar("_Answer", bound=BaseModel)


class ReflexioClient:
    """Forwards each Backend call to a Reflexio server over one long-lived connection pool.

    Use as an async context manager: the pool opens on enter and closes on exit.
    """

    learns = True
    remote = True

    def __init__(
        self,
        url: str,
        *,
        api_key: SecretStr | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        retry_delay: float = 0.5,
        max_retry_delay: float = 8.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.description = f"Reflexio at {self.url}"
        self._api_key = api_key
        self._timeout = httpx2.Timeout(timeout, connect=connect_timeout)
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._transport = transport
        self._http: httpx2.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"ReflexioClient(url={self.url!r}, api_key={'set' if self._api_key else 'unset'})"

    async def __aenter__(self) -> Self:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        self._http = httpx2.AsyncClient(
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
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> PublishAnswer:
        response, retried = await self._send(
            "POST",
            "/api/publish_interaction",
            body=request.to_body(),
            params={"wait_for_response": "true"} if wait_for_response else None,
            read_timeout=WAIT_FOR_RESPONSE_TIMEOUT if wait_for_response else None,
        )
        answer = self._parse(response, PublishAnswer)
        if not answer.success and retried and "already exists" in answer.message:
            # An earlier attempt of this very publish got through before its answer was lost.
            return PublishAnswer(
                success=True,
                message="Interaction published successfully (delivered by an earlier attempt)",
                request_id=request.request_id,
            )
        if not answer.success:
            raise Rejected(
                f"Reflexio did not store the publish: {self._redact(answer.message)}", 200
            )
        return answer

    async def get_interactions(self, request: GetRequest) -> list[Interaction]:
        return newest_first(await self._interactions("POST", "/api/get_interactions", request))

    async def search_interactions(self, request: SearchRequest) -> list[Interaction]:
        if not request.query and not request.most_recent_k:
            # Reflexio answers [] to a search with neither; list the newest instead.
            request = request.model_copy(update={"most_recent_k": request.top_k or 10})
        found = await self._interactions("POST", "/api/search_interactions", request)
        if request.most_recent_k:
            found = newest_first(found)  # Reflexio returns these oldest first
        # Reflexio's SQLite store ignores top_k (it caps at most_recent_k or 10).
        return found[: request.top_k] if request.top_k else found

    async def get_all_interactions(self, limit: int) -> list[Interaction]:
        response, _ = await self._send("GET", "/api/get_all_interactions", params={"limit": limit})
        return newest_first(self._checked_interactions(response))

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        # Reflexio answers "Deleted successfully" for ids that do not exist or belong to someone
        # else, so look first: only then can the answer say what was deleted.
        owned = await self.get_interactions(GetRequest(user_id=user_id, top_k=ALL))
        target = next((i for i in owned if i.interaction_id == interaction_id), None)
        if target is None:
            raise not_found(user_id, interaction_id)
        body = DeleteRequestBody(user_id=user_id, interaction_id=interaction_id)
        response, _ = await self._send(
            "DELETE", "/api/delete_interaction", body=body.model_dump_json().encode()
        )
        answer = self._parse(response, DeleteAnswer)
        if not answer.success:
            raise Rejected(f"Reflexio did not delete it: {self._redact(answer.message)}", 200)
        return target

    async def status(self, user_id: str) -> BackendStatus:
        try:
            await self._send("GET", "/health")
            mine = await self.get_interactions(GetRequest(user_id=user_id, top_k=ALL))
        except ReflexioError as err:
            return BackendStatus(
                backend="reflexio", location=self.url, reachable=False, learning=True,
                detail=str(err),
            )  # fmt: skip
        return BackendStatus(
            backend="reflexio",
            location=self.url,
            reachable=True,
            learning=True,
            user_interactions=len(mine),
            detail="Reflexio stores the interactions and learns profiles and playbooks from them.",
        )

    async def _interactions(self, method: str, path: str, request: BaseModel) -> list[Interaction]:
        body = request.model_dump_json(exclude_none=True).encode()
        response, _ = await self._send(method, path, body=body)
        return self._checked_interactions(response)

    def _checked_interactions(self, response: httpx2.Response) -> list[Interaction]:
        answer = self._parse(response, InteractionsAnswer)
        if not answer.success:
            raise Rejected(
                f"Reflexio refused: {self._redact(answer.msg or 'no reason given')}", 200
            )
        return answer.interactions

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        read_timeout: float | None = None,
    ) -> tuple[httpx2.Response, bool]:
        """Send with retries of transient failures; return the answer and whether it was retried.

        Every retry resends the same body, so a publish keeps its request_id: Reflexio stores a
        request_id once, which makes the retry safe.
        """
        if self._http is None:
            raise RuntimeError("ReflexioClient used outside `async with`")
        headers = {"Content-Type": "application/json"} if body is not None else None
        request_timeout = (
            httpx2.Timeout(read_timeout, connect=self._timeout.connect)
            if read_timeout
            else self._timeout
        )
        attempt = 0
        while True:
            started = time.perf_counter()
            failure: Exception | None = None
            response: httpx2.Response | None = None
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=body,
                    params=params,
                    headers=headers,
                    timeout=request_timeout,
                )
            except httpx2.ConnectTimeout:
                failure = self._unreachable()
            except httpx2.TimeoutException:
                # The request may have been processed: not retried, so a slow backend costs
                # one timeout, not several.
                raise BackendTimeout(
                    f"Reflexio at {self.url} did not answer {path} within "
                    f"{request_timeout.read:g} s; it may be busy: try again, or raise "
                    "REFLEXIO_TIMEOUT"
                ) from None
            except httpx2.TransportError:
                failure = self._unreachable()
            logger.debug(
                "%s %s -> %s in %.1f ms",
                method,
                path,
                response.status_code if response is not None else "no answer",
                (time.perf_counter() - started) * 1000,
            )
            if response is not None and response.status_code not in RETRY_STATUSES:
                self._raise_for_status(response, path)
                return response, attempt > 0
            if attempt >= self._max_retries:
                if response is not None:
                    self._raise_for_status(response, path)
                assert failure is not None
                raise failure
            attempt += 1
            await anyio.sleep(self._backoff(attempt, response))

    def _backoff(self, attempt: int, response: httpx2.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                return min(float(retry_after), self._max_retry_delay)
        delay = min(self._retry_delay * 2 ** (attempt - 1), self._max_retry_delay)
        return delay * random.uniform(0.75, 1.0)

    def _unreachable(self) -> BackendUnreachable:
        return BackendUnreachable(
            f"Reflexio backend unreachable at {self.url}: start it with "
            "`reflexio services start` or set REFLEXIO_URL"
        )

    def _raise_for_status(self, response: httpx2.Response, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = self._redact(_detail(response))
        if status == 422:
            raise _invalid_input(response)
        if status == 403 and "user agent" in detail.lower():
            raise AuthError(
                f"Reflexio at {self.url} refused the User-Agent ({detail}); something between "
                f"reflexio-mcp and Reflexio replaced {USER_AGENT!r}",
                status,
            )
        if status in (401, 403):
            fix = (
                "the REFLEXIO_API_KEY given is not one this Reflexio server accepts: "
                "check it against the server's key"
                if self._api_key is not None
                else "this Reflexio server needs an API key: set REFLEXIO_API_KEY"
            )
            raise AuthError(
                f"Reflexio at {self.url} refused the call ({status} {detail}): {fix}", status
            )
        if status == 429:
            raise RateLimited(
                f"Reflexio's rate limit refused the call ({detail}); wait a minute and try again. "
                "To publish many turns, send them in one publish_interaction (up to 1000).",
                status,
            )
        if status == 404:
            raise ServerError(
                f"{self.url}{path} does not exist (404): is REFLEXIO_URL a Reflexio server?", status
            )
        if status >= 500:
            raise ServerError(
                f"Reflexio at {self.url} failed on {path} ({status}: {detail}); "
                "its server log says why. Try again later.",
                status,
            )
        raise BackendStatusError(
            f"Reflexio at {self.url} answered {status} on {path}: {detail}", status
        )

    def _parse(self, response: httpx2.Response, model: type[_Answer]) -> _Answer:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise ServerError(
                f"Reflexio at {self.url} answered {response.url.path} with something that is not "
                "its API (is REFLEXIO_URL a Reflexio 0.2 server?)",
                response.status_code,
            ) from None

    def _redact(self, text: str) -> str:
        if self._api_key is not None and self._api_key.get_secret_value():
            text = text.replace(self._api_key.get_secret_value(), "***")
        return text


class DeleteRequestBody(BaseModel):
    user_id: str
    interaction_id: int


def _detail(response: httpx2.Response) -> str:
    """The error text Reflexio put in its answer, kept short."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        for key in ("detail", "error", "message", "msg"):
            value = data.get(key)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            if isinstance(value, str) and value:
                return value[:300]
    return str(data)[:300]  # pyright: ignore[reportUnknownArgumentType]


def _invalid_input(response: httpx2.Response) -> InvalidInput:
    """Turn FastAPI's 422 {"detail": [{"loc": [...], "msg": ...}]} into 'field X: reason' lines."""
    try:
        details = response.json().get("detail")
    except (ValueError, AttributeError):
        details = None
    if not isinstance(details, list) or not details:
        return InvalidInput([f"request: Reflexio refused it as invalid: {_detail(response)}"])
    problems: list[str] = []
    for item in details:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc", [])]  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType, reportUnknownVariableType]
        if loc and loc[0] in ("body", "query"):
            loc = loc[1:]
        problems.append(f"{'.'.join(loc) or 'request'}: {item.get('msg', 'invalid')}")  # pyright: ignore[reportUnknownMemberType]
    return InvalidInput(problems)
