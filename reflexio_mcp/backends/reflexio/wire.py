"""Reflexio 0.2.32's request bodies and answers (its /openapi.json), as api.py sends and reads
them: the only models that speak Reflexio's wire format."""

from __future__ import annotations

from pydantic import BaseModel, Field

from reflexio_mcp.core.models import Interaction


class PublishAnswer(BaseModel):
    success: bool
    message: str = ""
    warnings: list[str] = Field(default_factory=list[str])
    learning_status: str | None = None
    learning_reason: str | None = None
    profiles_added: int | None = None
    profiles_updated: int | None = None
    playbooks_added: int | None = None
    playbooks_updated: int | None = None


class LearningAnswer(BaseModel):
    status: str
    reason: str | None = None


class InteractionsAnswer(BaseModel):
    success: bool
    interactions: list[Interaction]
    msg: str | None = None


class DeleteAnswer(BaseModel):
    success: bool
    message: str = ""


class RequestInfo(BaseModel):
    request_id: str
    created_at: int | float | None = None
    session_id: str = ""


class RequestData(BaseModel):
    request: RequestInfo
    interactions: list[Interaction] = Field(default_factory=list[Interaction])


class SessionData(BaseModel):
    session_id: str
    requests: list[RequestData] = Field(default_factory=list[RequestData])

    def turns(self, user_id: str) -> list[Interaction]:
        """The session's turns of `user_id`, each with this session_id (Reflexio's own turns
        carry none)."""
        # Reflexio filters by user already; a turn of another user is never shown anyway.
        return [
            i.model_copy(update={"session_id": self.session_id})
            for r in self.requests
            for i in r.interactions
            if i.user_id == user_id
        ]

    def published_at(self) -> int:
        return max((int(r.request.created_at or 0) for r in self.requests), default=0)


class RequestsAnswer(BaseModel):
    success: bool
    sessions: list[SessionData] = Field(default_factory=list[SessionData])
    has_more: bool = False
    msg: str | None = None


class RequestsBody(BaseModel):
    """A page of a user's sessions, latest publish first, each with all its turns (with a
    request_id: the session of that publish, with that publish's turns only)."""

    user_id: str
    session_id: str | None = None
    request_id: str | None = None
    top_k: int
    offset: int = 0


class NewestBody(BaseModel):
    """A search with no query: the user's newest interactions, by a bounded SQL query."""

    user_id: str
    most_recent_k: int
    request_id: str | None = None


class DeleteBody(BaseModel):
    user_id: str
    interaction_id: int
