"""Named defaults, in one place: settings show them, the Reflexio client uses them."""

TIMEOUT_SECONDS = 30.0
"""Wait this long for Reflexio's answer."""
CONNECT_TIMEOUT_SECONDS = 5.0
"""Wait this long for a connection: a server that is down should not cost the full timeout."""
WAIT_FOR_RESPONSE_SECONDS = 600.0
"""wait_for_response runs learning before answering: minutes with a real LLM."""
LEARNING_STATUS_SECONDS = 5.0
"""Wait at most this long (or REFLEXIO_TIMEOUT, if shorter) for Reflexio to say how learning
from a publish stands: an aside to get_publish_status's answer, which knows the publish's own
state already, and one question of a waiting publish's poll."""
MAX_RETRIES = 2
"""Retries of connection failures and 408/429/502/503/504."""
RETRY_DELAY_SECONDS = 0.5
"""First backoff; it doubles per retry, with jitter."""
MAX_RETRY_DELAY_SECONDS = 8.0
"""Backoff cap when the server says nothing."""
MAX_RETRY_AFTER_SECONDS = 60.0
"""A Retry-After up to this is honoured; a longer one is reported instead of waited out."""
PUBLISH_ATTEMPT_SECONDS = 10.0
"""A publish waits at most this long (or REFLEXIO_TIMEOUT, if shorter) for Reflexio before it
answers `queued`: it is already journaled, so there is no reason to keep the agent waiting."""
LANE_WAIT_SECONDS = 0.5
"""A publish call waits at most this long for another publish to leave the lane (it may be one
Reflexio is slow to answer); then it answers `queued` and is delivered once the lane frees, so
it is answered within 2 s whatever another publish is doing."""
DEADLINE_SECONDS = 60.0
"""No tool call takes longer; wait_for_response publishes get WAIT_FOR_RESPONSE_SECONDS more."""
PUBLISH_RATE_PER_MINUTE = 60
"""Reflexio 0.2.32 takes 60 writes a minute per client IP; publishes are paced to that."""
FAILURES_TO_OPEN = 3
"""Consecutive backend failures after which calls stop going to it until a probe succeeds."""
PROBE_SECONDS = 0.5
"""First wait before probing a backend that stopped answering; it doubles, with jitter."""
MAX_PROBE_SECONDS = 5.0
MAX_SERVER_ERRORS = 8
"""A queued publish that Reflexio fails (5xx) this many times while it takes others is kept as
failed (an outage, when it takes none, never fails one)."""
MAX_UNANSWERED = 3
"""A queued publish that Reflexio leaves unanswered this many times while it takes others is
kept as failed (an outage, when it takes none, never fails one). With REFLEXIO_TIMEOUT=5 a
stuck publish is failed within about 40 s: four attempts of 5 s, waits of 5 and 10 s."""
OUTBOX_MAX_ROWS = 10_000
OUTBOX_MAX_MB = 100.0
HTTP_REQUESTS_PER_MINUTE = 600
"""Per access token (or per client address, without tokens): ten a second on average."""
MAX_SESSIONS_PER_CALLER = 50
"""Open HTTP sessions per access token (or client address): a client holds one, a busy user a
few; the SDK's 10,000 for the whole process then takes 200 callers to fill."""
READ_TIMEOUT_SECONDS = 30.0
"""A request's headers, and its body, must each arrive within this: a 4 MiB body needs about
140 KB/s."""
MAX_BODY_MB = 4.0
"""The SDK's own default: far above any publish a model writes, far below a memory problem."""

MAX_RESULT_CHARS = 40_000
"""About 10,000 tokens: a result fits a model's context beside the conversation, and under
Claude Code's 25,000-token cap on tool output."""
CONFIRM_SECONDS = 600.0
"""How long beyond the deadline delete_interaction waits for the user's answer, when the client
asks in the middle of the call (legacy elicitation)."""
