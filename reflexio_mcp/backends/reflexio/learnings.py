"""What Reflexio learned, read and corrected over its API: profiles, user playbooks and agent
playbooks (Reflexio 0.2.32's /api/search, /api/get_profiles, /api/get_user_playbooks, ...).

Every call names the caller's user where Reflexio takes one, and what comes back is kept to
that user's: Reflexio's unified search answers user playbooks of every user when it is given
none, and its deletes and updates of a user playbook take only the playbook's id, so a
playbook is looked up among the user's own before it is changed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from reflexio_mcp.backends.reflexio.http import ReflexioHttpClient
from reflexio_mcp.backends.reflexio.wire import LearningAnswer
from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import InvalidInput, NotReflexio, Rejected
from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.learnings import (
    Found,
    Learning,
    LearningKind,
    Learnings,
    learning_key,
    learning_not_found,
    split_learning_id,
)
from reflexio_mcp.core.limits import MAX_TIMESTAMP

_Answer = TypeVar("_Answer", bound=BaseModel)
_T = TypeVar("_T")


class ProfileView(BaseModel):
    profile_id: str
    user_id: str
    content: str
    last_modified_timestamp: int
    generated_from_request_id: str = ""
    source_interaction_ids: list[int] | None = None

    def learning(self) -> Learning:
        return Learning(
            kind="profile",
            id=learning_key("profile", self.profile_id),
            content=self.content,
            learned_at=_iso(self.last_modified_timestamp),
            user_id=self.user_id,
            request_id=self.generated_from_request_id or None,
            interaction_ids=self.source_interaction_ids or [],
        )


class UserPlaybookView(BaseModel):
    user_playbook_id: int = 0
    user_id: str | None = None
    request_id: str = ""
    created_at: int | None = None
    content: str = ""
    trigger: str | None = None
    source_interaction_ids: list[int] | None = None

    def learning(self) -> Learning:
        return Learning(
            kind="user_playbook",
            id=learning_key("user_playbook", self.user_playbook_id),
            content=self.content,
            learned_at=_iso(self.created_at or 0),
            user_id=self.user_id,
            request_id=self.request_id or None,
            interaction_ids=self.source_interaction_ids or [],
            trigger=self.trigger or None,
        )


class AgentPlaybookView(BaseModel):
    agent_playbook_id: int = 0
    created_at: int | None = None
    content: str
    trigger: str | None = None

    def learning(self) -> Learning:
        return Learning(
            kind="agent_playbook",
            id=learning_key("agent_playbook", self.agent_playbook_id),
            content=self.content,
            learned_at=_iso(self.created_at or 0),
            trigger=self.trigger or None,
        )


class UnifiedAnswer(BaseModel):
    success: bool
    profiles: list[ProfileView] = Field(default_factory=list[ProfileView])
    user_playbooks: list[UserPlaybookView] = Field(default_factory=list[UserPlaybookView])
    agent_playbooks: list[AgentPlaybookView] = Field(default_factory=list[AgentPlaybookView])
    msg: str | None = None
    degraded: bool = False
    search_mode_effective: str | None = None


class ProfilesAnswer(BaseModel):
    success: bool
    user_profiles: list[ProfileView] = Field(default_factory=list[ProfileView])
    msg: str | None = None


class UserPlaybooksAnswer(BaseModel):
    success: bool
    user_playbooks: list[UserPlaybookView] = Field(default_factory=list[UserPlaybookView])
    msg: str | None = None


class AgentPlaybooksAnswer(BaseModel):
    success: bool
    agent_playbooks: list[AgentPlaybookView] = Field(default_factory=list[AgentPlaybookView])
    msg: str | None = None


class ChangeAnswer(BaseModel):
    """The answer of Reflexio's deletes (message) and updates (msg)."""

    success: bool
    message: str = ""
    msg: str | None = None


def _iso(seconds: int) -> str:
    clamped = min(max(seconds, 0), MAX_TIMESTAMP)
    return datetime.fromtimestamp(clamped, UTC).isoformat().replace("+00:00", "Z")


def _playbook_id(kind: LearningKind, learning_id: str) -> int:
    """A playbook's id as Reflexio's integer.

    Raises:
        InvalidInput: it is not a whole number above 0.
    """
    if learning_id.isascii() and learning_id.isdigit() and 0 < int(learning_id) < 2**63:
        return int(learning_id)
    raise InvalidInput(
        [
            f"learning_id: a {kind}'s id is a whole number above 0 (got {learning_id[:40]!r}); "
            "take it from search_learnings"
        ]
    )


def _selector(user_id: str, learning_id: str) -> tuple[LearningKind, dict[str, Any]]:
    """The kind of a learning and the fields that name it to Reflexio's deletes and updates (a
    profile also by its user: Reflexio looks profiles up per user)."""
    kind, raw = split_learning_id(learning_id)
    if kind == "profile":
        return kind, {"user_id": user_id, "profile_id": raw}
    return kind, {f"{kind}_id": _playbook_id(kind, raw)}


def _newest(learnings: list[Learning]) -> list[Learning]:
    return sorted(learnings, key=lambda learning: learning.learned_at, reverse=True)


class ReflexioLearnings:
    """The `Learnings` of one Reflexio server, over the API client's connection pool."""

    def __init__(self, http: ReflexioHttpClient) -> None:
        self._http = http

    async def search(
        self,
        user_id: str,
        query: str,
        kinds: Sequence[LearningKind],
        top_k: int,
        search_mode: SearchMode,
    ) -> Found:
        body = {"query": query, "user_id": user_id, "top_k": top_k, "search_mode": search_mode}
        answer = await self._post("/api/search", body, UnifiedAnswer)
        found: list[Learning] = []
        if "profile" in kinds:
            found += [p.learning() for p in answer.profiles if p.user_id == user_id][:top_k]
        if "user_playbook" in kinds:
            own = [p for p in answer.user_playbooks if p.user_id == user_id]
            found += [p.learning() for p in own][:top_k]
        if "agent_playbook" in kinds:
            found += [p.learning() for p in answer.agent_playbooks][:top_k]
        notes: list[str] = []
        ran = answer.search_mode_effective
        if answer.degraded and ran and ran != search_mode:
            notes.append(f"Reflexio searched with {ran}, not {search_mode} (it has no embeddings)")
        return Found(learnings=found, search_mode=ran, notes=notes)

    async def current(self, user_id: str, kinds: Sequence[LearningKind], top_k: int) -> Found:
        # One kind after another: a task group would wrap a failure in an ExceptionGroup.
        found: list[Learning] = []
        for kind in kinds:
            found += _newest(await self._listed(kind, user_id, top_k))[:top_k]
        return Found(learnings=found)

    async def _listed(
        self, kind: LearningKind, user_id: str, top_k: int, **only: Any
    ) -> list[Learning]:
        if kind == "profile":
            body = {"user_id": user_id, "top_k": top_k, **only}
            profiles = await self._post("/api/get_profiles", body, ProfilesAnswer)
            return [p.learning() for p in profiles.user_profiles if p.user_id == user_id]
        if kind == "user_playbook":
            body = {"user_id": user_id, "limit": top_k, **only}
            playbooks = await self._post("/api/get_user_playbooks", body, UserPlaybooksAnswer)
            return [p.learning() for p in playbooks.user_playbooks if p.user_id == user_id]
        shared = await self._post(
            "/api/get_agent_playbooks", {"limit": top_k, **only}, AgentPlaybooksAnswer
        )
        return [p.learning() for p in shared.agent_playbooks]

    async def find(self, user_id: str, learning_id: str) -> Learning:
        kind, selector = _selector(user_id, learning_id)
        only = {key: value for key, value in selector.items() if key != "user_id"}
        found = [i for i in await self._listed(kind, user_id, 1, **only) if i.id == learning_id]
        if not found:
            raise learning_not_found(user_id, learning_id)
        return found[0]

    async def delete(self, user_id: str, learning_id: str) -> Learning:
        # Reflexio answers "Deleted successfully" for ids it does not hold (or another user's),
        # so look first: only then can the answer say what was deleted.
        target = await self.find(user_id, learning_id)
        kind, selector = _selector(user_id, learning_id)
        path = "/api/delete_profile" if kind == "profile" else f"/api/delete_{kind}"
        await self._changed("DELETE", path, selector)
        return target

    async def correct(self, user_id: str, learning_id: str, content: str) -> Learning:
        await self.find(user_id, learning_id)
        kind, selector = _selector(user_id, learning_id)
        path = "/api/update_user_profile" if kind == "profile" else f"/api/update_{kind}"
        await self._changed("PUT", path, {**selector, "content": content})
        return await self.find(user_id, learning_id)

    async def from_publish(self, user_id: str, request_id: str) -> list[Learning]:
        body = {"user_id": user_id, "generated_from_request_id": request_id, "top_k": 100}
        profiles = await self._post("/api/search_profiles", body, ProfilesAnswer)
        playbooks = await self._post(
            "/api/get_user_playbooks",
            {"user_id": user_id, "request_id": request_id, "limit": 100},
            UserPlaybooksAnswer,
        )
        return [
            *(p.learning() for p in profiles.user_profiles if p.user_id == user_id),
            *(
                p.learning()
                for p in playbooks.user_playbooks
                if p.user_id == user_id and p.request_id == request_id
            ),
        ]

    async def status(self, request_id: str) -> tuple[str, str | None]:
        response, _ = await self._http.send(
            "GET",
            "/api/learning_status",
            params={"request_id": request_id},
            read_timeout=min(defaults.LEARNING_STATUS_SECONDS, self._http.read_seconds),
            retries=0,
        )
        try:
            answer = LearningAnswer.model_validate_json(response.content)
        except ValidationError:
            raise NotReflexio(
                f"Reflexio at {self._http.url} answered /api/learning_status with something "
                "that is not its API (is REFLEXIO_URL a Reflexio 0.2 server?)",
                response.status_code,
            ) from None
        return answer.status, answer.reason

    async def _changed(self, method: str, path: str, body: dict[str, Any]) -> None:
        answer = await self._call(method, path, body, ChangeAnswer)
        if not answer.success:
            reason = self._http.scrubbed(answer.msg or answer.message or "no reason given")
            raise Rejected(f"Reflexio did not change it: {reason}", 200)

    async def _post(self, path: str, body: dict[str, Any], model: type[_Answer]) -> _Answer:
        answer = await self._call("POST", path, body, model)
        if getattr(answer, "success", True) is False:
            reason = self._http.scrubbed(getattr(answer, "msg", None) or "no reason given")
            raise Rejected(f"Reflexio refused: {reason}", 200)
        return answer

    async def _call(
        self, method: str, path: str, body: dict[str, Any], model: type[_Answer]
    ) -> _Answer:
        response, _ = await self._http.send(method, path, body=_json(body))
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise NotReflexio(
                f"Reflexio at {self._http.url} answered {path} with something that is not its "
                "API (is REFLEXIO_URL a Reflexio 0.2 server?)",
                response.status_code,
            ) from None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


class GuardedLearnings:
    """Learnings whose every call goes through a circuit breaker (`guard`): they are reads
    and corrections, never journaled in an outbox."""

    def __init__(
        self, learnings: Learnings, guard: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
    ) -> None:
        self._learnings = learnings
        self._guard = guard

    async def _guarded(self, call: Callable[[], Awaitable[_T]]) -> _T:
        result: _T = await self._guard(call)
        return result

    async def search(
        self,
        user_id: str,
        query: str,
        kinds: Sequence[LearningKind],
        top_k: int,
        search_mode: SearchMode,
    ) -> Found:
        return await self._guarded(
            lambda: self._learnings.search(user_id, query, kinds, top_k, search_mode)
        )

    async def current(self, user_id: str, kinds: Sequence[LearningKind], top_k: int) -> Found:
        return await self._guarded(lambda: self._learnings.current(user_id, kinds, top_k))

    async def find(self, user_id: str, learning_id: str) -> Learning:
        return await self._guarded(lambda: self._learnings.find(user_id, learning_id))

    async def delete(self, user_id: str, learning_id: str) -> Learning:
        return await self._guarded(lambda: self._learnings.delete(user_id, learning_id))

    async def correct(self, user_id: str, learning_id: str, content: str) -> Learning:
        return await self._guarded(lambda: self._learnings.correct(user_id, learning_id, content))

    async def from_publish(self, user_id: str, request_id: str) -> list[Learning]:
        return await self._guarded(lambda: self._learnings.from_publish(user_id, request_id))

    async def status(self, request_id: str) -> tuple[str, str | None]:
        return await self._guarded(lambda: self._learnings.status(request_id))
