"""Every error reflexio-mcp raises on purpose, each with a message a person (or a model) can
act on. One tree, one root:

    ReflexioMcpError
    ├── ConfigurationError    the server cannot start with what it was given (exit status 2)
    │   ├── SettingsError     a flag or variable that cannot work
    │   └── TokenFileError    the tokens file is unreadable, shared or malformed
    ├── InvalidInput          the caller's arguments break a rule (local check or Reflexio's 422)
    ├── NotFound              the named interaction does not exist for that user
    ├── BackendUnreachable    no connection to the backend
    │   └── BackendTimeout    connected, but no answer in time
    ├── BackendStatusError    the backend answered with an error status
    │   ├── AuthError         401/403: missing or wrong API key, refused User-Agent
    │   ├── RateLimited       429
    │   ├── ServerError       5xx, or an answer that does not follow the contract
    │   ├── NotReflexio       something answers at the URL, but not Reflexio's API
    │   └── Rejected          2xx with success=false
    ├── StoreError            a SQLite file (the embedded store's, the outbox's) failed
    │   ├── StoreBusy         another process held the write lock too long
    │   ├── StoreFull         the disk (or quota) is full
    │   ├── StoreCorrupt      the file is damaged or not a database
    │   ├── StoreReadOnly     the file or folder cannot be written
    │   └── SearchTooSlow     one query ran past its time limit and was stopped
    ├── OutboxFull            the outbox holds as many publishes as it may; nothing was added
    └── DemoFailed            a step of `reflexio-mcp demo` did not do what it should

Messages never contain the API key: the Reflexio client removes anything the backend echoes
before it becomes a message, and shows URLs without their user:password part.
"""

from __future__ import annotations


class ReflexioMcpError(Exception):
    """Root of every error reflexio-mcp raises on purpose. str(err) is safe to show."""


class ConfigurationError(ReflexioMcpError):
    """What the server was given cannot work; nothing was started."""


class SettingsError(ConfigurationError):
    """Configuration that cannot work; the message names the flag or variable to fix, and
    `fix` says what to set it to."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class TokenFileError(ConfigurationError):
    """The tokens file cannot be used; the message says how to fix it."""


class InvalidInput(ReflexioMcpError):
    """The request breaks a rule; the message names each field and what to change."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class NotFound(ReflexioMcpError):
    """The interaction the caller named does not exist (for that user)."""


class BackendUnreachable(ReflexioMcpError):
    """The backend could not be reached at all."""


class BackendTimeout(BackendUnreachable):
    """The backend took longer than the configured timeout to answer."""


class BackendStatusError(ReflexioMcpError):
    """The backend answered with a status reflexio-mcp cannot turn into a result."""

    def __init__(self, message: str, status_code: int, retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        """Seconds the backend asked to wait before trying again (Retry-After), if it did."""
        super().__init__(message)


class AuthError(BackendStatusError):
    """The backend refused the caller: API key missing or wrong, or User-Agent refused."""


class RateLimited(BackendStatusError):
    """The backend's rate limiter refused the request."""


class ServerError(BackendStatusError):
    """The backend failed (5xx) or answered with something outside its contract."""


class NotReflexio(BackendStatusError):
    """Something answers at REFLEXIO_URL, but not with Reflexio's API (a web page, a proxy)."""


class Rejected(BackendStatusError):
    """The backend answered 200 but said success=false."""


class StoreError(ReflexioMcpError):
    """A SQLite file failed (the embedded store's, or the outbox's); the message names the file
    and the fix."""


class StoreBusy(StoreError):
    """Another process held the store's write lock for longer than the busy timeout."""


class StoreFull(StoreError):
    """The disk or quota holding the store is full."""


class StoreCorrupt(StoreError):
    """The store's file is damaged, or is not a SQLite database."""


class StoreReadOnly(StoreError):
    """The store's file or folder cannot be written."""


class SearchTooSlow(StoreError):
    """A query ran past its time limit and was interrupted, so it cannot stall other calls."""


class OutboxFull(ReflexioMcpError):
    """The outbox is at its row or byte cap: the publish was not journaled (nor sent)."""

    def __init__(self, message: str, *, for_one_user: str | None = None) -> None:
        self.for_one_user = for_one_user or message
        """The same refusal without the store-wide counts, for a caller who may see only its
        own user's publishes."""
        super().__init__(message)


class DemoFailed(ReflexioMcpError):
    """A step of the demo did not do what it should; the message says which."""


def not_found(user_id: str, interaction_id: int) -> NotFound:
    return NotFound(
        f"no interaction {interaction_id} for user {user_id!r}: nothing was deleted; "
        "find ids with get_interactions or search_interactions"
    )
