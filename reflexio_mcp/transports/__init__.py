"""How MCP reaches the server: stdio, and Streamable HTTP / SSE with their guards (tokens,
rate limit, session bound, read timeout, drain)."""
