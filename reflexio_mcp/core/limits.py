"""Every bound on what a caller may send, declared once: the narrower of what Reflexio and
the embedded store can store *and read back*."""

from __future__ import annotations

import re

MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest Unix second both backends store and read back as a date."""


MAX_INTEGER = 2**63 - 1
"""SQLite's largest INTEGER."""


MAX_RESULTS = 1000
"""At most this many interactions in one answer: enough for any model context."""


MAX_INTERACTIONS_PER_PUBLISH = 1000


MAX_CONTENT_CHARS = 1_000_000


MAX_ID_CHARS = 256


MAX_QUERY_CHARS = 10_000


MAX_TOOL_DATA_DEPTH = 32


MAX_BODY_BYTES = 10 * 1024 * 1024
"""Reflexio refuses request bodies above 10 MiB, whatever its schema admits."""


MAX_TOOL_STATUS_CHARS = 100
"""Reflexio cuts a longer tools_used[].status to 100 characters, silently (ToolUsed)."""


IMAGE_URL_SCHEMES = ("http", "https", "data")


METADATA_HOSTS = frozenset({"metadata.google.internal"})


METADATA_IPS = frozenset({"169.254.169.254", "fd00:ec2::254"})
"""Cloud metadata endpoints: Reflexio refuses an image URL pointing at one, in any form."""


SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")


SOURCE_RULE = (
    "lowercase letters, digits and . _ : - only, starting with a letter or digit, "
    "at most 128 characters (or empty)"
)
