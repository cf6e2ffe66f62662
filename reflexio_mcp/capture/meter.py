"""An import's progress on stderr: a bar redrawn in place on a terminal, a plain count line
now and then otherwise (a log file or CI keeps every line)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from reflexio_mcp.capture.conversation import Tally

BAR_CHARS = 30
REDRAW_SECONDS = 0.1
LINE_SECONDS = 5.0


class Meter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = self._stream.isatty()
        self._total = 0
        self._done = 0
        self._shown_at = 0.0

    def start(self, total: int) -> None:
        self._total, self._done, self._shown_at = total, 0, time.monotonic()

    def advance(self, tally: Tally) -> None:
        self._done += 1
        every = REDRAW_SECONDS if self._terminal else LINE_SECONDS
        if time.monotonic() - self._shown_at >= every:
            self._show(tally)

    def finish(self, tally: Tally) -> None:
        if self._terminal:
            self._show(tally)
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, tally: Tally) -> None:
        self._shown_at = time.monotonic()
        counts = (
            f"{self._done:,}/{self._total:,} files, {tally.stored:,} turns stored, "
            f"{tally.already_stored:,} already stored"
        )
        if not self._terminal:
            self._stream.write(f"import: {counts}\n")
        else:
            filled = BAR_CHARS * self._done // max(self._total, 1)
            bar = "█" * filled + "░" * (BAR_CHARS - filled)
            self._stream.write(f"\r{bar} {counts}\x1b[K")
        self._stream.flush()
