"""What every layer shares: errors, limits, models, the Backend protocol. Imports only the
standard library, pydantic and `secrets` (never the MCP SDK, never a backend)."""
