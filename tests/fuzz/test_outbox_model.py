"""The outbox against a model: a hypothesis state machine drives real Outbox objects on a real
file and checks every step against a plain in-memory queue.

Two "processes" share the file. The first is this test process (its Outbox is driven through
a blocking portal); it restarts by closing its Outbox (releasing its claims or not) and opening
a new one with a new owner token, so its old claims are those of "an earlier outbox of this
very process": free again at its next claim. The second is a real child process (`serve`,
driven one JSON line at a time): only there does `os.getpid()` differ, so each side sees the
other's claims as a live process's claims. The second side writes, as its owner token, the pid
of a `sleep` process this test starts and kills: killing it is that process dying, so its
claims are free again; an owner on another host is freed by nothing but its lease.

The model predicts every answer (outcome, the row claimed, OutboxFull exactly at the caps,
with nothing changed) and, after every step, every row (`rows()`, also as the second process
reads it), `stats()`, `entry()` of every request and `failed_rows()`. Independently of the
model: a row is never claimed while an open outbox holds a live lease on it, a claimed row
heads its (user, session), queued rows stay in seq order as they were queued, and each
session's rows are claimed in that order. A new seq is only checked to come after every row
there is, not to be unused: retry_failed numbers rows max(seq) + 1, past AUTOINCREMENT, so a
deleted row's seq can come back.

Bounded attempts: a send that failed because of its row (a 5xx or no answer, while Reflexio
takes others) is a `row_error` with a limit (1 to 3 here): the model counts the row's errors across
claims, processes and restarts, and predicts the row failed, with that error, exactly when the
count reaches the limit (and not while another process holds the claim); retry_failed starts the
count afresh.

Not modelled: answers from a claim another process has since taken over (a send outlasting its
lease): retry_later, row_error and failed then act on the other process's claim. Nor next_due().
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples (default 50).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reflexio_mcp.backends.reflexio.outbox import Enqueued, Entry, Outbox, Row, Stats
from reflexio_mcp.core.errors import OutboxFull
from reflexio_mcp.core.models import InteractionData, PublishRequest

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "50"))
MODEL_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its steps
    suppress_health_check=[HealthCheck.too_slow],
)

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
ELSEWHERE = "another-machine.invalid"
TARGET = "http://reflexio.invalid:8081"
MAX_ROWS = 4
MAX_BYTES = 2500
"""With bodies of ~320 to ~1700 bytes, either cap can be the one reached."""
LONG_LEASE = 3600.0
"""Outlasts any test run; a lease of 0 has run out by the next call."""
REQUEST_IDS = ("r0", "r1", "r2", "r3", "r4", "r5")
USERS = ("u0", "u1")
SESSIONS = ("s0", "s1")
WHO = st.sampled_from(["a", "b"])
"""Which process acts (this one when the second is not running)."""
ENQUEUE_LEASES = st.sampled_from([None, LONG_LEASE, LONG_LEASE, 0.0])
CLAIM_LEASES = st.sampled_from([LONG_LEASE, LONG_LEASE, 0.0])
OUTCOMES = (
    "delivered",
    "failed: 400",
    "failed: 403",
    "again: no connection",  # retry_later(after=0): due at once
    "again: 5xx",  # row_error(after=0, limit=ROW_ERROR_LIMIT)
    "later: 429",  # retry_later(after=LONG_LEASE): not due during the test
    "later: 5xx",
    "none",
)
"""How a send ends; "failed: ..." and the error of a retry are the reason written."""
ROW_ERROR_LIMIT = 3
"""Small, so examples reach it; `deliverer_row_error` draws its own limits (1 to 3)."""


# --- publishes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    request_id: str
    user_id: str
    session_id: str
    contents: tuple[str, ...]
    wait: bool

    def request(self) -> PublishRequest:
        return PublishRequest(
            request_id=self.request_id,
            user_id=self.user_id,
            session_id=self.session_id,
            interaction_data_list=[InteractionData(role="user", content=c) for c in self.contents],
        )

    def body(self) -> bytes:
        return self.request().checked_body()


def _publish(
    request_id: str, user_id: str, session_id: str, turns: int, long: bool, wait: bool
) -> Publish:
    contents = tuple(("x" * 600 if long else f"turn {i}") for i in range(turns))
    return Publish(request_id, user_id, session_id, contents, wait)


PUBLISHES = st.builds(
    _publish,
    st.sampled_from(REQUEST_IDS),
    st.sampled_from(USERS),
    st.sampled_from(SESSIONS),
    st.integers(1, 2),
    st.booleans(),
    st.booleans(),
)


def token(host: str, pid: int) -> str:
    """An owner token, as `outbox.owner_token` writes them."""
    return f"{host}:{pid}:{uuid.uuid4().hex[:8]}"


# --- the two processes' outboxes --------------------------------------------------------


class Port(Protocol):
    """One process's Outbox, called synchronously."""

    def open(self, folder: Path, owner: str) -> None: ...
    def enqueue(self, publish: Publish, lease: float | None) -> Enqueued: ...
    def claim_next(self, lease: float) -> Row | None: ...
    def delivered(self, seq: int) -> None: ...
    def failed(self, seq: int, reason: str) -> None: ...
    def retry_later(self, seq: int, error: str, after: float) -> None: ...
    def row_error(self, seq: int, error: str, after: float, limit: int) -> bool: ...
    def forget(self, seq: int) -> None: ...
    def release_mine(self) -> None: ...
    def retry_failed(self) -> int: ...
    def drop_failed(self) -> int: ...
    def rows(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class LocalPort:
    """An Outbox of this process, driven through a blocking portal."""

    def __init__(self, portal: BlockingPortal) -> None:
        self._portal = portal
        self._outbox: Outbox | None = None

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None, "the outbox is not open"
        return self._outbox

    def open(self, folder: Path, owner: str) -> None:
        self.close()
        outbox = Outbox(folder, TARGET, max_rows=MAX_ROWS, max_bytes=MAX_BYTES, owner=owner)
        self._portal.call(outbox.__aenter__)
        self._outbox = outbox

    def close(self) -> None:
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            self._portal.call(outbox.__aexit__, None, None, None)

    def enqueue(self, publish: Publish, lease: float | None) -> Enqueued:
        request = publish.request()
        body = request.checked_body()

        async def enqueue() -> Enqueued:
            return await self.outbox.enqueue(
                request, body, wait_for_response=publish.wait, lease=lease
            )

        return self._portal.call(enqueue)

    def claim_next(self, lease: float) -> Row | None:
        return self._portal.call(self.outbox.claim_next, lease)

    def delivered(self, seq: int) -> None:
        self._portal.call(self.outbox.delivered, seq)

    def failed(self, seq: int, reason: str) -> None:
        self._portal.call(self.outbox.failed, seq, reason)

    def retry_later(self, seq: int, error: str, after: float) -> None:
        async def retry() -> None:
            await self.outbox.retry_later(seq, error, after=after)

        self._portal.call(retry)

    def row_error(self, seq: int, error: str, after: float, limit: int) -> bool:
        async def row_error() -> bool:
            return await self.outbox.row_error(seq, error, after=after, limit=limit)

        return self._portal.call(row_error)

    def forget(self, seq: int) -> None:
        self._portal.call(self.outbox.forget, seq)

    def release_mine(self) -> None:
        self._portal.call(self.outbox.release_mine)

    def retry_failed(self) -> int:
        return self._portal.call(self.outbox.retry_failed)

    def drop_failed(self) -> int:
        return self._portal.call(self.outbox.drop_failed)

    def failed_rows(self) -> list[Entry]:
        return self._portal.call(self.outbox.failed_rows)

    def rows(self) -> list[dict[str, Any]]:
        return self._portal.call(self.outbox.rows)

    def stats(self) -> Stats:
        return self._portal.call(self.outbox.stats)

    def entries(self, keys: list[tuple[str, str]]) -> list[Entry | None]:
        """entry() of each (user_id, request_id), in one call through the portal."""

        async def entries() -> list[Entry | None]:
            return [await self.outbox.entry(user_id, request_id) for user_id, request_id in keys]

        return self._portal.call(entries)


def serve() -> None:
    """The second process: one JSON command a line on stdin, one JSON answer a line out."""
    with start_blocking_portal() as portal:
        port = LocalPort(portal)
        try:
            for line in sys.stdin:
                print(json.dumps(_answer(port, json.loads(line))), flush=True)
        finally:
            port.close()


def _answer(port: LocalPort, command: dict[str, Any]) -> dict[str, Any]:
    op = command.pop("op")
    try:
        if op == "open":
            return {"ok": port.open(Path(command["folder"]), command["owner"])}
        if op == "enqueue":
            fields = command["publish"]
            publish = Publish(
                fields["request_id"],
                fields["user_id"],
                fields["session_id"],
                tuple(fields["contents"]),
                fields["wait"],
            )
            return {"ok": asdict(port.enqueue(publish, command["lease"]))}
        if op == "claim_next":
            row = port.claim_next(command["lease"])
            return {"ok": None if row is None else {**asdict(row), "body": row.body.decode()}}
        return {"ok": getattr(port, op)(**command)}
    except OutboxFull as err:
        return {"full": str(err)}
    except Exception:  # noqa: BLE001  the test process raises it, with this traceback
        return {"error": traceback.format_exc()}


class SecondProcess:
    """A child process running `serve`, shared by the examples (each opens its own file)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from tests.fuzz.test_outbox_model import serve; serve()"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self._process.pid

    def stop(self) -> None:
        with self._process:  # closes the pipes, waits
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def call(self, op: str, **args: Any) -> Any:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps({"op": op, **args}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the second process exited ({self._process.poll()})")
        answer = json.loads(line)
        if "full" in answer:
            raise OutboxFull(answer["full"])
        if "error" in answer:
            raise RuntimeError(f"the second process failed:\n{answer['error']}")
        return answer["ok"]


class RemotePort:
    """The Outbox of the second process."""

    def __init__(self, process: SecondProcess) -> None:
        self._process = process

    def open(self, folder: Path, owner: str) -> None:
        self._process.call("open", folder=str(folder), owner=owner)

    def enqueue(self, publish: Publish, lease: float | None) -> Enqueued:
        answer = self._process.call("enqueue", publish=asdict(publish), lease=lease)
        return Enqueued(**answer)

    def claim_next(self, lease: float) -> Row | None:
        answer = self._process.call("claim_next", lease=lease)
        return None if answer is None else Row(**{**answer, "body": answer["body"].encode()})

    def delivered(self, seq: int) -> None:
        self._process.call("delivered", seq=seq)

    def failed(self, seq: int, reason: str) -> None:
        self._process.call("failed", seq=seq, reason=reason)

    def retry_later(self, seq: int, error: str, after: float) -> None:
        self._process.call("retry_later", seq=seq, error=error, after=after)

    def row_error(self, seq: int, error: str, after: float, limit: int) -> bool:
        return self._process.call("row_error", seq=seq, error=error, after=after, limit=limit)

    def forget(self, seq: int) -> None:
        self._process.call("forget", seq=seq)

    def release_mine(self) -> None:
        self._process.call("release_mine")

    def retry_failed(self) -> int:
        return self._process.call("retry_failed")

    def drop_failed(self) -> int:
        return self._process.call("drop_failed")

    def rows(self) -> list[dict[str, Any]]:
        return self._process.call("rows")

    def close(self) -> None:
        self._process.call("close")


@pytest.fixture(scope="module")
def second_process() -> Iterator[SecondProcess]:
    process = SecondProcess()
    try:
        yield process
    finally:
        process.stop()


# --- the model --------------------------------------------------------------------------


@dataclass
class ModelRow:
    seq: int
    publish: Publish
    body: bytes
    state: str = "queued"
    attempts: int = 0
    server_errors: int = 0
    last_error: str | None = None
    owner: str | None = None
    lease_live: bool = False
    due: bool = True
    last_attempt: int | None = None
    """When it was last claimed, on the model's clock."""
    order: int = 0
    """When it was queued (or queued again), on the model's clock."""

    @property
    def group(self) -> tuple[str, str]:
        return (self.publish.user_id, self.publish.session_id)

    def listed(self) -> dict[str, Any]:
        """The row as Outbox.rows() lists it."""
        return {
            "seq": self.seq,
            "target": TARGET,
            "request_id": self.publish.request_id,
            "user_id": self.publish.user_id,
            "session_id": self.publish.session_id,
            "bytes": 0 if self.state == "delivered" else len(self.body),
            "turns": len(self.publish.contents),
            "state": self.state,
            "attempts": self.attempts,
            "server_errors": self.server_errors,
            "last_error": self.last_error,
            "owner": self.owner,
        }


@dataclass
class Process:
    """One process sharing the outbox, as the model sees it."""

    name: str
    port: Port
    pid: int
    """What os.getpid() answers inside it."""
    owner: str = ""
    is_open: bool = False
    sleeper: subprocess.Popen[bytes] | None = None
    """The process whose pid its owner token names, when not its own."""


class OutboxMachine(RuleBasedStateMachine):
    root: ClassVar[Path]
    """Where each example makes its folder."""
    second: ClassVar[SecondProcess]

    def __init__(self) -> None:
        super().__init__()
        root, second = self.root, self.second
        self._stack = ExitStack()
        try:
            self.folder = Path(tempfile.mkdtemp(dir=root))
            self._stack.callback(shutil.rmtree, self.folder, ignore_errors=True)
            portal = self._stack.enter_context(start_blocking_portal())
            self.local = LocalPort(portal)
            self.a = Process("a", self.local, os.getpid())
            self.b = Process("b", RemotePort(second), second.pid)
            self._stack.callback(self._close_all)
            self.rows: list[ModelRow] = []
            self.seqs_used = 0
            """The highest seq seen. New seqs are only checked to come after every row there
            is: retry_failed's seqs (max(seq) + 1) bypass AUTOINCREMENT, so a seq can come
            back after its row is deleted."""
            self.clock = 0
            self.live_pids = {os.getpid(), second.pid}
            self.used_pids: set[int] = set()
            self.claimed_last: dict[tuple[str, str], int] = {}
            """The queue order of each session's latest claim."""
            self._open(self.a, token(HOST, os.getpid()))
        except BaseException:
            self._stack.close()
            raise

    def teardown(self) -> None:
        self._stack.close()

    # -- helpers -------------------------------------------------------------------------

    def _close_all(self) -> None:
        with ExitStack() as stack:  # every one is closed even when one fails
            for process in (self.a, self.b):
                stack.callback(self._shut, process, graceful=False)

    def _open(self, process: Process, owner: str) -> None:
        process.owner = owner
        process.port.open(self.folder, owner)
        process.is_open = True

    def _shut(self, process: Process, *, graceful: bool) -> None:
        try:
            if process.is_open:
                process.is_open = False
                try:
                    if graceful:
                        process.port.release_mine()
                        self._release(process)
                finally:
                    process.port.close()
        finally:
            sleeper, process.sleeper = process.sleeper, None
            if sleeper is not None:
                with sleeper:
                    sleeper.kill()
                self.live_pids.discard(sleeper.pid)

    def _release(self, process: Process) -> None:
        for row in self.rows:
            if row.owner == process.owner:
                row.owner, row.lease_live = None, False

    def _by(self, who: str) -> Process:
        return self.b if who == "b" and self.b.is_open else self.a

    def _find(self, request_id: str) -> ModelRow | None:
        return next((r for r in self.rows if r.publish.request_id == request_id), None)

    def _ahead(self, row: ModelRow) -> int:
        return sum(r.state == "queued" and r.seq < row.seq for r in self.rows)

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _alive(self, owner: str, viewer: Process) -> bool:
        """Whether `viewer` counts the claims of `owner` as a live process's."""
        if owner == viewer.owner:
            return True
        host, pid_text, _ = owner.split(":")
        if host != HOST:
            return True  # another machine's: only its lease frees it
        pid = int(pid_text)
        if pid == viewer.pid:
            return False  # an earlier outbox of the viewer's own process
        return pid in self.live_pids

    def _truly_held(self, row: ModelRow) -> bool:
        """A live lease of an open outbox: no one else may claim the row."""
        return row.lease_live and any(p.is_open and p.owner == row.owner for p in (self.a, self.b))

    def _held(self) -> list[tuple[ModelRow, Process]]:
        """Rows claimed by an open outbox (leases run out or not), with their holder."""
        return [
            (row, process)
            for row in self.rows
            for process in (self.a, self.b)
            if row.state == "queued" and process.is_open and row.owner == process.owner
        ]

    def _holds(self, process: Process) -> bool:
        return process.is_open and any(r.owner == process.owner for r in self.rows)

    def _sending_elsewhere(self, process: Process) -> bool:
        """Whether another live process holds a live claim (the dead ones' are freed first):
        processes sharing the outbox send one publish at a time between them."""
        for owner in {r.owner for r in self.rows if r.state == "queued" and r.owner}:
            if not self._alive(owner, process):
                for row in self.rows:
                    if row.owner == owner:
                        row.owner, row.lease_live = None, False
        return any(
            r.state == "queued" and r.owner not in (None, process.owner) and r.lease_live
            for r in self.rows
        )

    def _claimed(self, row: ModelRow, process: Process, lease: float) -> None:
        assert row.order >= self.claimed_last.get(row.group, 0), "a session's rows out of order"
        self.claimed_last[row.group] = row.order
        row.owner, row.lease_live = process.owner, lease > 0
        row.attempts += 1
        row.last_attempt = self._tick()

    # -- rules ---------------------------------------------------------------------------

    @rule(who=WHO, publish=PUBLISHES, lease=ENQUEUE_LEASES)
    def enqueue(self, who: str, publish: Publish, lease: float | None) -> None:
        self._enqueue(self._by(who), publish, lease)

    @rule(who=WHO, publishes=st.lists(st.tuples(PUBLISHES, ENQUEUE_LEASES), min_size=2, max_size=5))
    def enqueue_several(self, who: str, publishes: list[tuple[Publish, float | None]]) -> None:
        for publish, lease in publishes:
            self._enqueue(self._by(who), publish, lease)

    @precondition(lambda self: bool(self.rows))
    @rule(who=WHO, pick=st.integers(0, 99), publish=PUBLISHES, lease=ENQUEUE_LEASES)
    def enqueue_again(self, who: str, pick: int, publish: Publish, lease: float | None) -> None:
        """A request_id the outbox holds, sent again by its user (its turns may differ)."""
        row = self.rows[pick % len(self.rows)]
        again = replace(publish, request_id=row.publish.request_id, user_id=row.publish.user_id)
        self._enqueue(self._by(who), again, lease)

    def _enqueue(self, process: Process, publish: Publish, lease: float | None) -> None:
        body = publish.body()
        earlier = self._find(publish.request_id)
        if earlier is not None and earlier.publish.user_id != publish.user_id:
            expected = Enqueued("clash", earlier.seq, claimed=False, ahead=0)
            assert process.port.enqueue(publish, lease) == expected
            return
        if earlier is not None and earlier.state == "queued":
            expected = Enqueued("waiting", earlier.seq, claimed=False, ahead=self._ahead(earlier))
            assert process.port.enqueue(publish, lease) == expected
            return
        if earlier is not None and earlier.state == "delivered":
            expected = Enqueued("delivered", earlier.seq, claimed=False, ahead=0)
            assert process.port.enqueue(publish, lease) == expected
            return
        kept = [r for r in self.rows if r is not earlier]  # a failed row is sent again
        held = [r for r in kept if r.state != "delivered"]
        if len(held) + 1 > MAX_ROWS or sum(len(r.body) for r in held) + len(body) > MAX_BYTES:
            with pytest.raises(OutboxFull):
                process.port.enqueue(publish, lease)
            return  # the invariants check that nothing changed
        group = (publish.user_id, publish.session_id)
        ahead = sum(r.state == "queued" and r.group == group for r in kept)
        elsewhere = lease is not None and ahead == 0 and self._sending_elsewhere(process)
        claim = lease is not None and ahead == 0 and not elsewhere
        got = process.port.enqueue(publish, lease)
        assert got == Enqueued(
            "new", got.seq, claimed=claim, ahead=ahead, sending_elsewhere=elsewhere
        )
        assert got.seq > max((r.seq for r in kept), default=0), "a new row not at the back"
        row = ModelRow(got.seq, publish, body, order=self._tick())
        self.seqs_used = max(self.seqs_used, got.seq)
        self.rows = [*kept, row]
        if lease is not None and claim:
            self._claimed(row, process, lease)

    @rule(who=WHO, lease=CLAIM_LEASES)
    def claim_next(self, who: str, lease: float) -> None:
        self._claim(self._by(who), lease)

    @rule(who=WHO, lease=CLAIM_LEASES, outcome=st.sampled_from(OUTCOMES))
    def deliverer_round(self, who: str, lease: float, outcome: str) -> None:
        """What Deliverer.run does: claim the next row, send it, record how it went ("none":
        the process stops or dies before it records anything)."""
        process = self._by(who)
        row = self._claim(process, lease)
        if row is not None:
            self._answer(row, process, outcome)

    def _claim(self, process: Process, lease: float) -> ModelRow | None:
        got = process.port.claim_next(lease)
        if got is not None:
            before = next((r for r in self.rows if r.seq == got.seq), None)
            assert before is not None, f"claimed a row the model lacks: {got}"
            assert not self._truly_held(before), (
                f"{process.name} claimed seq {got.seq}, held by {before.owner} on a live lease"
            )
        if self._sending_elsewhere(process):
            assert got is None, f"{process.name} claimed while another process sends"
            return None
        queued = [r for r in self.rows if r.state == "queued"]
        heads = [
            r
            for r in queued
            if not any(e.group == r.group and e.seq < r.seq for e in queued)
            and r.due
            and (r.owner is None or not r.lease_live)
        ]
        if not heads:
            assert got is None
            return None
        row = min(heads, key=lambda r: r.seq)
        assert got == Row(
            row.seq,
            row.publish.request_id,
            row.publish.user_id,
            row.publish.session_id,
            row.body,
            row.publish.wait,
            row.attempts + 1,
            row.server_errors,
        )
        self._claimed(row, process, lease)
        return row

    @precondition(lambda self: bool(self._held()))
    @rule(pick=st.integers(0, 99), outcome=st.sampled_from(OUTCOMES[:-1]))
    def answer(self, pick: int, outcome: str) -> None:
        """A held claim's send ends (the claim may have run out meanwhile, unclaimed)."""
        held = self._held()
        row, process = held[pick % len(held)]
        self._answer(row, process, outcome)

    def _answer(self, row: ModelRow, process: Process, outcome: str) -> None:
        seq = row.seq
        if outcome == "delivered":
            process.port.delivered(seq)
            row.state, row.owner, row.lease_live, row.last_error = "delivered", None, False, None
        elif outcome.startswith("failed"):
            process.port.failed(seq, outcome)
            row.state, row.owner, row.lease_live, row.last_error = "failed", None, False, outcome
        elif outcome.endswith("5xx"):
            self._row_error(row, process, outcome, ROW_ERROR_LIMIT)
        elif outcome != "none":
            later = outcome.startswith("later")
            process.port.retry_later(seq, outcome, LONG_LEASE if later else 0.0)
            row.owner, row.lease_live, row.last_error, row.due = None, False, outcome, not later

    def _row_error(self, row: ModelRow, process: Process, outcome: str, limit: int) -> None:
        """A row error, counted across claims: failed when the count reaches `limit`."""
        later = outcome.startswith("later")
        failed = process.port.row_error(row.seq, outcome, LONG_LEASE if later else 0.0, limit)
        assert failed == (row.server_errors + 1 >= limit), (row.server_errors, limit)
        row.server_errors += 1
        row.owner, row.lease_live, row.last_error = None, False, outcome
        row.state = "failed" if failed else "queued"
        row.due = not later

    @rule(who=WHO, lease=CLAIM_LEASES, limit=st.integers(1, 3), later=st.booleans())
    def deliverer_row_error(self, who: str, lease: float, limit: int, later: bool) -> None:
        """What Deliverer.run does when the send fails because of the row (no answer, or
        a 5xx, while Reflexio takes others): the row waits, or at `limit` row errors is failed."""
        process = self._by(who)
        row = self._claim(process, lease)
        if row is not None:
            self._row_error(row, process, f"{'later' if later else 'again'}: unanswered", limit)

    @precondition(lambda self: self.seqs_used > 0)
    @rule(who=WHO, pick=st.integers(0, 99))
    def forget(self, who: str, pick: int) -> None:
        seq = pick % self.seqs_used + 1  # also rows gone already
        self._by(who).port.forget(seq)
        # Only a failed row is forgotten (its caller was told); others are left alone.
        self.rows = [r for r in self.rows if r.seq != seq or r.state != "failed"]

    @precondition(lambda self: any(r.state == "delivered" for r in self.rows))
    @rule(who=WHO, pick=st.integers(0, 99))
    def deliver_again(self, who: str, pick: int) -> None:
        """A duplicate answer (Reflexio's "already exists" to a second send): still delivered,
        once."""
        delivered = [r for r in self.rows if r.state == "delivered"]
        self._by(who).port.delivered(delivered[pick % len(delivered)].seq)

    @precondition(lambda self: any(r.state == "failed" for r in self.rows))
    @rule(who=WHO)
    def retry_failed(self, who: str) -> None:
        """Every failed row is queued again, at the back, in its order, as new."""
        failed = [r for r in self.rows if r.state == "failed"]
        assert self._by(who).port.retry_failed() == len(failed)
        seqs = {row["request_id"]: int(row["seq"]) for row in self.local.rows()}
        others = [r.seq for r in self.rows if r.state != "failed"]
        moved = [seqs[r.publish.request_id] for r in failed]
        assert moved == sorted(set(moved)), "requeued out of order"
        assert not moved or moved[0] > max(others, default=0), "requeued but not at the back"
        for row, seq in zip(failed, moved, strict=True):
            row.seq, row.state, row.attempts, row.server_errors = seq, "queued", 0, 0
            row.owner, row.lease_live, row.due, row.order = None, False, True, self._tick()
        self.rows.sort(key=lambda r: r.seq)
        self.seqs_used = max([self.seqs_used, *moved])

    @precondition(lambda self: any(r.state == "failed" for r in self.rows))
    @rule(who=WHO)
    def drop_failed(self, who: str) -> None:
        failed = [r for r in self.rows if r.state == "failed"]
        assert self._by(who).port.drop_failed() == len(failed)
        self.rows = [r for r in self.rows if r.state != "failed"]

    @precondition(lambda self: bool(self._held()))
    @rule(who=WHO)
    def release_mine(self, who: str) -> None:
        process = self._by(who)
        process.port.release_mine()
        self._release(process)

    @precondition(lambda self: self._holds(self.a))
    @rule()
    def restart(self) -> None:
        """This process closes its outbox, releasing its claims, and opens a new one."""
        self._shut(self.a, graceful=True)
        self._open(self.a, token(HOST, os.getpid()))

    @precondition(lambda self: self._holds(self.a))
    @rule()
    def reopen_without_release(self) -> None:
        """This process closes its outbox without releasing its claims (a publish cancelled
        half-way, a failed release) and opens a new one: its old claims are its own earlier
        outbox's, free at its next claim_next; to the second process they look alive."""
        self._shut(self.a, graceful=False)
        self._open(self.a, token(HOST, os.getpid()))

    @initialize(second=st.sampled_from(["none", "here", "elsewhere"]))
    def begin(self, second: str) -> None:
        """The second process runs from the start (mostly), here or on another machine."""
        if second != "none":
            self._start_second(remote=second == "elsewhere")

    @precondition(lambda self: not self.b.is_open)
    @rule(remote=st.booleans())
    def start_second(self, remote: bool) -> None:
        """The second process starts: as a new process here, or on another machine."""
        self._start_second(remote=remote)

    def _start_second(self, *, remote: bool) -> None:
        sleeper = subprocess.Popen(["sleep", "600"])
        while sleeper.pid in self.used_pids:  # its claims must not come back to life
            with sleeper:
                sleeper.kill()
            sleeper = subprocess.Popen(["sleep", "600"])
        self.b.sleeper = sleeper
        self.used_pids.add(sleeper.pid)
        self.live_pids.add(sleeper.pid)
        self._open(self.b, token(ELSEWHERE if remote else HOST, sleeper.pid))

    @precondition(lambda self: self.b.is_open and self._holds(self.b))
    @rule()
    def stop_second(self) -> None:
        """The second process stops, releasing its claims."""
        self._shut(self.b, graceful=True)

    @precondition(lambda self: self.b.is_open and self._holds(self.b))
    @rule()
    def kill_second(self) -> None:
        """The second process dies, leaving its claims: free once its pid is gone (here), held
        until their leases run out (on another machine)."""
        self._shut(self.b, graceful=False)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def rows_match(self) -> None:
        expected = [r.listed() for r in self.rows]
        assert self.local.rows() == expected
        if self.b.is_open:
            assert self.b.port.rows() == expected

    @invariant()
    def queue_order(self) -> None:
        """Queued rows are in seq order as they were queued; a claimed one heads its session."""
        queued = [r for r in self.rows if r.state == "queued"]
        assert [r.order for r in queued] == sorted(r.order for r in queued)
        for row in queued:
            if row.owner is not None:
                assert not any(e.group == row.group and e.seq < row.seq for e in queued)

    @invariant()
    def failed_rows_match(self) -> None:
        failed = [r for r in self.rows if r.state == "failed"]
        entries = self.local.failed_rows()
        assert [(e.request_id, e.user_id) for e in entries] == [
            (r.publish.request_id, r.publish.user_id) for r in failed
        ]
        for entry, row in zip(entries, failed, strict=True):
            assert (entry.state, entry.turns, entry.attempts) == (
                "failed",
                len(row.publish.contents),
                row.attempts,
            )
            assert (entry.last_error, entry.next_attempt_at, entry.ahead) == (
                row.last_error,
                None,
                0,
            )
            assert entry.done_at is not None

    @invariant()
    def stats_match(self) -> None:
        stats = self.local.stats()
        queued = [r for r in self.rows if r.state == "queued"]
        assert stats.waiting == len(queued)
        assert stats.waiting_bytes == sum(len(r.body) for r in queued)
        assert (stats.oldest_queued_at is None) == (not queued)
        assert stats.failed == sum(r.state == "failed" for r in self.rows)
        errors = [r for r in self.rows if r.state != "delivered" and r.last_error is not None]
        latest = max(errors, key=lambda r: r.last_attempt or 0, default=None)
        assert stats.last_error == (None if latest is None else latest.last_error)
        assert stats.other_targets == {}

    @invariant()
    def entries_match(self) -> None:
        known = {r.publish.request_id for r in self.rows}  # rows_match covers the others
        keys = [(user, request_id) for request_id in sorted(known) for user in USERS]
        for (user, request_id), entry in zip(keys, self.local.entries(keys), strict=True):
            row = self._find(request_id)
            if row is None or row.publish.user_id != user:
                assert entry is None
                continue
            assert entry is not None
            queued = row.state == "queued"
            assert (entry.request_id, entry.user_id, entry.state) == (request_id, user, row.state)
            assert (entry.turns, entry.attempts) == (len(row.publish.contents), row.attempts)
            assert entry.last_error == row.last_error
            assert entry.ahead == (self._ahead(row) if queued else 0)
            assert (entry.done_at is None) == queued
            assert (entry.next_attempt_at is None) == (not queued)
            assert (entry.last_attempt_at is None) == (row.last_attempt is None)


def test_outbox_follows_its_model(tmp_path: Path, second_process: SecondProcess) -> None:
    class Machine(OutboxMachine):
        root = tmp_path
        second = second_process

    run_state_machine_as_test(Machine, settings=MODEL_SETTINGS)
