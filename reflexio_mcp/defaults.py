"""Named defaults, in one place: settings show them, the Reflexio client uses them."""

TIMEOUT_SECONDS = 30.0
"""Wait this long for Reflexio's answer."""
CONNECT_TIMEOUT_SECONDS = 5.0
"""Wait this long for a connection: a server that is down should not cost the full timeout."""
WAIT_FOR_RESPONSE_SECONDS = 600.0
"""wait_for_response runs learning before answering: minutes with a real LLM."""
MAX_RETRIES = 2
"""Retries of connection failures and 408/429/502/503/504."""
RETRY_DELAY_SECONDS = 0.5
"""First backoff; it doubles per retry, with jitter."""
MAX_RETRY_DELAY_SECONDS = 8.0
"""Backoff cap when the server says nothing."""
MAX_RETRY_AFTER_SECONDS = 60.0
"""A Retry-After up to this is honoured; a longer one is reported instead of waited out."""
