"""The embedded backend: interactions in a local SQLite file, searched with FTS5."""
