"""The end of start-up, as a client sees it: the first tools/list answered.

Work a client does not wait for at start (the secret scanner's rules, collecting start-up's
garbage) begins from it, or START_AT_MOST seconds after start-up if no tools/list comes, so it
does not share the CPU with the handshake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

START_AT_MOST: Final = 5.0
"""Seconds after start-up the work begins at the latest, if no tools/list came."""
ANSWER_OUT_SECONDS: Final = 0.05
"""How long after its result is handed back the first tools/list counts as answered: the SDK
writes the answer right after (well under a millisecond), and the work that waits for it holds
the GIL for tens of milliseconds, which would otherwise delay the very answer a client waits
for."""
tools_listed: Final = threading.Event()
"""Set once the first tools/list is answered (`listed`)."""
_lock = threading.Lock()
_marking: threading.Timer | None = None


def listed() -> None:
    """A tools/list's result is handed back to the SDK: `tools_listed` is set once it is out."""
    global _marking
    with _lock:
        if _marking is None and not tools_listed.is_set():
            _marking = threading.Timer(ANSWER_OUT_SECONDS, tools_listed.set)
            _marking.daemon = True
            _marking.start()


def after_start_up(work: Callable[[], None], *, name: str) -> None:
    """Run `work` in a daemon thread of its own once start-up is over."""

    def waiting() -> None:
        tools_listed.wait(START_AT_MOST)
        work()

    threading.Thread(target=waiting, name=name, daemon=True).start()
