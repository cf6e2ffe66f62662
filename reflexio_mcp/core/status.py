"""What the status resource reports: which store serves the calls, its outbox, and the
ids and sessions completions offer."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)


class OutboxSalvage(BaseModel):
    """What was read back from a damaged outbox file into the fresh one that replaced it."""

    damage: str = Field(description="What SQLite found wrong with the file.")
    moved_to: str = Field(description="Where the damaged file is kept (it is never deleted).")
    at: str = Field(description="When it was replaced, ISO 8601 UTC.")
    salvaged: int = Field(description="Rows read back whole and kept in the fresh outbox.")
    waiting: int = Field(description="Of them, publishes still to deliver (they are sent).")
    failed: int = Field(description="Of them, publishes Reflexio had refused, kept as failed.")
    unreadable: int = Field(description="Rows known to have been in the file but not readable.")
    unreadable_request_ids: list[str] = Field(
        default_factory=list[str], description="request_ids of those rows, where known (<= 20)."
    )
    unknown_seq_ranges: list[tuple[int, int]] = Field(
        default_factory=list[tuple[int, int]],
        description="Row numbers that could not be read at all: rows there, if any, are lost.",
    )
    detail: str = Field(description="All of it in one sentence, as the start-up log says it.")


class OutboxStatus(BaseModel):
    """The outbox in front of Reflexio."""

    path: str
    available: bool = Field(description="Whether the outbox file can be written now.")
    waiting: int = Field(description="Publishes not yet taken by Reflexio.")
    waiting_bytes: int
    oldest_age_seconds: float | None = Field(
        default=None, description="How long the oldest waiting publish has waited."
    )
    failed: int = Field(description="Publishes Reflexio refused for good, kept with the reason.")
    last_error: str | None = None
    circuit: Literal["closed", "open"] = Field(
        description="open: Reflexio failed repeatedly; reads fail fast and publishes are "
        "queued until a probe finds it back."
    )
    damaged_files_moved_aside: int = 0
    salvage: OutboxSalvage | None = Field(
        default=None,
        description="Set when this process found the outbox damaged: what was read back from "
        "it into a fresh one, and what could not be.",
    )
    waiting_for_other_urls: dict[str, int] = Field(default_factory=dict[str, int])


class MeaningIndex(BaseModel):
    """The embedded store's vectors, by which it searches for meaning, not only words."""

    model: str = Field(description="The embedding model that makes them.")
    unavailable: str | None = Field(
        default=None, description="Why search is by words only here; null while it can run."
    )
    indexed: int = Field(description="Turns with a vector (the user's, for a caller of one).")
    pending: int = Field(description="Turns still to embed, in the background (likewise).")


class BackendStatus(BaseModel):
    """Which store serves the calls, and whether it can be reached."""

    backend: Literal["embedded", "reflexio"]
    location: str = Field(description="The store's file, or the Reflexio server's URL.")
    reachable: bool
    learning: bool = Field(description="Whether profiles and playbooks are learned.")
    user_id: str | None = Field(
        default=None, description="The user this status was read for (the caller's)."
    )
    user_interactions: int | None = Field(
        default=None, description="Interactions stored for that user, when cheap to tell."
    )
    interactions: int | None = Field(
        default=None, description="Interactions stored for all users, when the store tells."
    )
    users: int | None = Field(default=None, description="Distinct users, when the store tells.")
    detail: str = ""
    meaning_index: MeaningIndex | None = Field(
        default=None, description="Vectors for meaning-based search (the embedded store)."
    )
    outbox: OutboxStatus | None = Field(
        default=None, description="Publishes kept for Reflexio until it confirms them."
    )


class KnownIds(BaseModel):
    """Ids that begin with a prefix (user ids, session ids), most recently active first, for
    completing an argument."""

    values: list[str]
    total: int | None = Field(
        default=None, description="How many ids match, when the store can tell."
    )
    has_more: bool = Field(default=False, description="More ids match than `values` holds.")


class SessionSummary(BaseModel):
    """One session (conversation) of a user: its id, how many turns it keeps, and when it was
    last published to."""

    session_id: str
    turns: int
    published_at: int = Field(description="Unix seconds of the session's latest publish.")


class SessionPage(BaseModel):
    """A page of a user's sessions, latest publish first."""

    sessions: list[SessionSummary]
    has_more: bool = Field(description="Sessions after this page may exist.")
