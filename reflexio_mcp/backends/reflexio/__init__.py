"""The Reflexio backend: its HTTP client and API, and the outbox that keeps every publish
until Reflexio confirms it."""
