"""`REFLEXIO_*` environment variables that neither reflexio-mcp nor Reflexio reads: a typo
(REFLEXIO_MCP_READONLY) would otherwise pass silently, leaving the setting it meant at its
default. Each is named with the nearest real name."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from reflexio_mcp.settings.environment import ENVIRONMENT

PREFIX = "REFLEXIO_"
SAFETY_SWITCHES = frozenset(
    ENVIRONMENT[name]
    for name in (
        "read_only",
        "pin_user",
        "allow_admin",
        "keep_secrets",
        "no_confirm",
        "access_token",
        "tokens_file",
    )
)
"""Settings whose typo leaves the server less safe than its owner believes."""
TEST_ONLY = frozenset({"REFLEXIO_TEST_PYTHON", "REFLEXIO_MCP_FUZZ_EXAMPLES",
                       "REFLEXIO_MCP_UPDATE_SNAPSHOT"})  # fmt: skip
"""Read by this project's test suite."""
REFLEXIO_OWN = frozenset({
    "REFLEXIO_AGENT_VERSION", "REFLEXIO_AGGREGATION_MIN_INTERVAL_SECONDS",
    "REFLEXIO_ALLOWED_ORIGINS", "REFLEXIO_ALLOW_MY_CONFIG", "REFLEXIO_ALLOW_PRODUCTION_DEBUG_LOGS",
    "REFLEXIO_AUTH_DIR", "REFLEXIO_BLOCK_PRIVATE_URLS", "REFLEXIO_CACHE_MAX_SIZE",
    "REFLEXIO_CACHE_TTL_SECONDS", "REFLEXIO_CODEX_TOKENS_PATH", "REFLEXIO_CONFIG_PATH",
    "REFLEXIO_CONSTRUCTION_LOCK_STRIPES", "REFLEXIO_DEFAULT_ORG_ID", "REFLEXIO_DIR",
    "REFLEXIO_DURABLE_LEARNING_LEASE_SECONDS", "REFLEXIO_DURABLE_LEARNING_POLL_SECONDS",
    "REFLEXIO_DURABLE_LEARNING_QUEUE", "REFLEXIO_EMBEDDING_BULK_TIMEOUT_MS",
    "REFLEXIO_EMBEDDING_DAEMON", "REFLEXIO_EMBEDDING_DAEMON_HOST", "REFLEXIO_EMBEDDING_PROVIDER",
    "REFLEXIO_EMBEDDING_SERVICE_MAX_TEXTS_PER_REQUEST", "REFLEXIO_EMBEDDING_SERVICE_TIMEOUT_MS",
    "REFLEXIO_EMBEDDING_SERVICE_URL", "REFLEXIO_EMBED_BATCH_SIZE", "REFLEXIO_EMBED_MAX_CONCURRENCY",
    "REFLEXIO_EMBED_MICRO_BATCH_DELAY_MS", "REFLEXIO_EMBED_MICRO_BATCH_MAX_TEXTS",
    "REFLEXIO_EMBED_TORCH_THREADS", "REFLEXIO_ENV", "REFLEXIO_ENV_FILE", "REFLEXIO_ENV_PATH",
    "REFLEXIO_EXTRACTION_OVERFLOW_ENABLED", "REFLEXIO_FERNET_KEYS",
    "REFLEXIO_GENERATION_TIMEOUT_SECONDS", "REFLEXIO_GOVERNANCE_REF_SECRET",
    "REFLEXIO_INFO_LOGGERS", "REFLEXIO_LLM_CONTEXT_LIMITS_JSON",
    "REFLEXIO_LLM_FAIL_CLOSED_PROVIDERS",
    "REFLEXIO_LLM_FALLBACK_MODELS", "REFLEXIO_LLM_HARD_TIMEOUT_GRACE_SECONDS",
    "REFLEXIO_LLM_PROVIDER_MAX_CONCURRENCY", "REFLEXIO_LLM_PROVIDER_MAX_CONCURRENCY_OVERRIDES",
    "REFLEXIO_LLM_SEED", "REFLEXIO_LOG_DIR", "REFLEXIO_LOG_LEVEL", "REFLEXIO_LOG_PROFILE",
    "REFLEXIO_MAX_BODY_BYTES", "REFLEXIO_MAX_CLUSTERING_PLAYBOOKS",
    "REFLEXIO_MAX_INTERACTION_CONTENT_TOKENS", "REFLEXIO_MISSING_VECTOR_BACKFILL_CAP",
    "REFLEXIO_MISSING_VECTOR_BACKFILL_ENABLED", "REFLEXIO_NONINTERACTIVE",
    "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "REFLEXIO_POSTGRES_POOL_SIZE",
    "REFLEXIO_POSTGRES_SCHEMA", "REFLEXIO_PUBLISH_LEARNING_WORKERS",
    "REFLEXIO_PUBLISH_TIMING_ENABLED", "REFLEXIO_PUBLISH_TIMING_INTERVAL_SECONDS",
    "REFLEXIO_PUBLISH_TIMING_THRESHOLD_MS", "REFLEXIO_QUERY_EMBEDDING_CACHE_MAX_SIZE",
    "REFLEXIO_QUERY_EMBEDDING_CACHE_TTL_SECONDS", "REFLEXIO_QUERY_EMBEDDING_SERVICE_URL",
    "REFLEXIO_REQUIRE_DATA_DB", "REFLEXIO_RERANK_DEVICE", "REFLEXIO_RERANK_ENABLED",
    "REFLEXIO_RERANK_SERVICE_TIMEOUT_MS", "REFLEXIO_SCHEDULER_ORG_WORKERS",
    "REFLEXIO_SEARCH_DEADLINE_ENABLED", "REFLEXIO_SEARCH_FANOUT_WORKERS",
    "REFLEXIO_SEARCH_RECENCY_ENABLED", "REFLEXIO_SEARCH_RECENCY_MAX_PENALTY_FRAC",
    "REFLEXIO_SEARCH_RECENCY_MAX_PENALTY_LOGIT", "REFLEXIO_SEARCH_RECENCY_POOL_SIZE",
    "REFLEXIO_SEARCH_RERANK_SERVICE_URL", "REFLEXIO_SERVER_WORKERS", "REFLEXIO_STORAGE",
    "REFLEXIO_TEST_MODE", "REFLEXIO_TIMEOUT_SECONDS", "REFLEXIO_TOP_K",
    "REFLEXIO_UNIFIED_SEARCH_SINGLE_RPC", "REFLEXIO_UNREACHABLE_MSG",
})  # fmt: skip
"""Read by Reflexio 0.2.32 itself (its server, CLI and client; grep of its source for
REFLEXIO_): a user may have them set for a Reflexio server started from the same shell."""
REFLEXIO_OWN_PREFIXES = ("REFLEXIO_ROW_LIMIT_",)
"""Reflexio reads REFLEXIO_ROW_LIMIT_<table>."""
OURS = frozenset(ENVIRONMENT.values())


@dataclass(frozen=True)
class UnknownVariable:
    name: str
    nearest: str | None
    """Our variable (or Reflexio's) it most likely meant; None when none is close."""

    @property
    def unsafe(self) -> bool:
        """Its nearest is a safety switch the user believes is on."""
        return self.nearest in SAFETY_SWITCHES

    def describe(self) -> str:
        if self.nearest is None:
            return f"{self.name} is ignored: neither reflexio-mcp nor Reflexio reads it"
        if self.nearest not in OURS:
            return (
                f"{self.name} is ignored: no such variable; did you mean {self.nearest} "
                "(read by the Reflexio server, not reflexio-mcp)?"
            )
        effect = " Until then that safety switch is off." if self.unsafe else ""
        return f"{self.name} is ignored: no such variable; did you mean {self.nearest}?{effect}"

    def fix(self) -> str:
        if self.nearest is None:
            return f"unset {self.name}, or name the setting it was meant for (reflexio-mcp --help)"
        return f"rename {self.name} to {self.nearest}"


def unknown_variables(environ: Mapping[str, str]) -> list[UnknownVariable]:
    """The REFLEXIO_* variables set in `environ` that nothing reads, sorted by name."""
    known = OURS | REFLEXIO_OWN | TEST_ONLY
    return [
        UnknownVariable(name, nearest(name))
        for name in sorted(environ)
        if name.startswith(PREFIX)
        and name not in known
        and not name.startswith(REFLEXIO_OWN_PREFIXES)
    ]


def nearest(name: str) -> str | None:
    """The closest real name: the same letters without the underscores (READONLY, USERID) or
    the MCP_ part (REFLEXIO_MCP_TIMEOUT), else the closest spelling, ours first."""
    for candidates in (OURS, REFLEXIO_OWN):
        squeezed = {_squeeze(real): real for real in sorted(candidates)}
        if (same := squeezed.get(_squeeze(name))) is not None:
            return same
    for candidates in (OURS, REFLEXIO_OWN):
        close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.8)
        if close:
            return close[0]
    return None


def _squeeze(name: str) -> str:
    return name.removeprefix(PREFIX).removeprefix("MCP_").replace("_", "")
