"""The embedded store's schema 2, as earlier releases created it: for tests of its migration."""

from __future__ import annotations

V2_SCHEMA = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """
    CREATE TABLE publishes (
        request_id    TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL,
        session_id    TEXT NOT NULL,
        source        TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        published_at  INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE interactions (
        interaction_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id                 TEXT NOT NULL,
        request_id              TEXT NOT NULL REFERENCES publishes(request_id),
        created_at              INTEGER NOT NULL,
        role                    TEXT NOT NULL,
        content                 TEXT NOT NULL,
        expert_content          TEXT NOT NULL,
        user_action             TEXT NOT NULL,
        user_action_description TEXT NOT NULL,
        interacted_image_url    TEXT NOT NULL,
        image_encoding          TEXT NOT NULL,
        tools_used              TEXT NOT NULL
    )
    """,
    "CREATE INDEX interactions_by_user_time "
    "ON interactions (user_id, created_at DESC, interaction_id DESC)",
    "CREATE INDEX interactions_by_time ON interactions (created_at DESC, interaction_id DESC)",
    """
    CREATE VIRTUAL TABLE interactions_fts USING fts5 (
        content, expert_content, user_action_description,
        content='interactions', content_rowid='interaction_id', tokenize='porter unicode61'
    )
    """,
    """
    CREATE TRIGGER interactions_fts_insert AFTER INSERT ON interactions BEGIN
        INSERT INTO interactions_fts (rowid, content, expert_content, user_action_description)
        VALUES (new.interaction_id, new.content, new.expert_content, new.user_action_description);
    END
    """,
    """
    CREATE TRIGGER interactions_fts_delete AFTER DELETE ON interactions BEGIN
        INSERT INTO interactions_fts (interactions_fts, rowid, content, expert_content,
                                      user_action_description)
        VALUES ('delete', old.interaction_id, old.content, old.expert_content,
                old.user_action_description);
    END
    """,
    "CREATE VIRTUAL TABLE interactions_cjk USING fts5 (grams, tokenize='unicode61')",
    "CREATE INDEX publishes_by_user_session ON publishes (user_id, session_id)",
    "CREATE INDEX interactions_by_request ON interactions (request_id)",
]
"""Schema 2 as reflexio-mcp wrote it (embedded_store.py before schema 3), kept here so the
test builds a real version 2 file whatever the code becomes."""
