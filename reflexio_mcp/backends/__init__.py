"""The stores behind the Backend protocol: `embedded` (a local SQLite file) and `reflexio`
(a Reflexio server, behind a durable outbox). Neither imports the MCP SDK or the other."""
