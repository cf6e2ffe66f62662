"""Outbox regressions found by its state machine (tests/fuzz/test_outbox_model.py), as plain
steps."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core.models import InteractionData, PublishRequest

TARGET = "http://127.0.0.1:8061"


def publish(n: int) -> tuple[PublishRequest, bytes]:
    request = PublishRequest(
        request_id=f"req-{n}",
        user_id="u",
        session_id="s",
        interaction_data_list=[InteractionData(role="user", content=f"turn {n}")],
    )
    return request, request.checked_body()


def other_live_owner(tag: str) -> str:
    """An owner token of a live process that is not this one (our parent)."""
    return f"{socket.gethostname()}:{os.getppid()}:{tag}"


async def test_nothing_is_due_while_the_head_of_a_session_backs_off(tmp_path: Path) -> None:
    async with Outbox(tmp_path, TARGET) as outbox:
        for n in (1, 2):
            await outbox.enqueue(*publish(n), wait_for_response=False, lease=None)
        head = await outbox.claim_next(60)
        assert head is not None
        await outbox.row_error(head.seq, "503", after=60, limit=8)
        assert await outbox.claim_next(60) is None
        due = await outbox.next_due()
    assert due is not None
    assert due - time.time() > 50  # not "now": the deliverer would spin for a minute


async def test_a_late_answer_to_a_lapsed_claim_changes_nothing(tmp_path: Path) -> None:
    first = Outbox(tmp_path, TARGET, owner=other_live_owner("first"))
    second = Outbox(tmp_path, TARGET, owner=other_live_owner("second"))
    async with first, second:
        await first.enqueue(*publish(1), wait_for_response=False, lease=None)
        lapsed = await first.claim_next(lease=0)
        assert lapsed is not None
        taken = await second.claim_next(lease=3600)
        assert taken is not None
        assert taken.seq == lapsed.seq
        await first.retry_later(lapsed.seq, "timeout", after=0)
        assert await first.claim_next(3600) is None  # still the second's
        await second.delivered(taken.seq)
        await first.failed(lapsed.seq, "400 from a late answer")
        [row] = await first.rows()
    assert row["state"] == "delivered"


async def test_publishes_queued_again_get_fresh_places_at_the_back(tmp_path: Path) -> None:
    async with Outbox(tmp_path, TARGET) as outbox:
        first = await outbox.enqueue(*publish(1), wait_for_response=False, lease=60)
        await outbox.failed(first.seq, "401")
        assert await outbox.retry_failed() == 1
        again = await outbox.claim_next(60)
        assert again is not None
        await outbox.failed(again.seq, "401")
        assert await outbox.drop_failed() == 1
        second = await outbox.enqueue(*publish(2), wait_for_response=False, lease=None)
        await outbox.delivered(again.seq)  # a late answer meant for the dropped row
        rows = await outbox.rows()
    seqs = [first.seq, again.seq, second.seq]
    assert len(set(seqs)) == 3, seqs
    assert [(r["request_id"], r["state"]) for r in rows] == [("req-2", "queued")]


def in_session(n: int, session: str) -> tuple[PublishRequest, bytes]:
    request, _ = publish(n)
    request = request.model_copy(update={"session_id": session})
    return request, request.checked_body()


async def test_processes_sharing_an_outbox_send_one_publish_at_a_time(tmp_path: Path) -> None:
    """Reflexio 0.2.32 can lock up under concurrent publishes: while one process holds a live
    claim, another claims nothing for that Reflexio, not even the head of another session."""
    first = Outbox(tmp_path, TARGET, owner=other_live_owner("first"))
    second = Outbox(tmp_path, TARGET, owner=other_live_owner("second"))
    async with first, second:
        sending = await first.enqueue(*in_session(1, "a"), wait_for_response=False, lease=60)
        assert sending.claimed
        waiting = await second.enqueue(*in_session(2, "b"), wait_for_response=False, lease=60)
        assert not waiting.claimed
        assert waiting.sending_elsewhere
        assert await second.claim_next(60) is None
        due = await second.next_due()
        assert due is not None
        assert 0 < due - time.time() <= 1  # looks again soon: a send takes milliseconds
        await first.delivered(sending.seq)
        taken = await second.claim_next(60)
    assert taken is not None
    assert taken.request_id == "req-2"


async def test_a_lapsed_claim_of_another_process_bars_nothing(tmp_path: Path) -> None:
    first = Outbox(tmp_path, TARGET, owner=other_live_owner("first"))
    second = Outbox(tmp_path, TARGET, owner=other_live_owner("second"))
    async with first, second:
        await first.enqueue(*in_session(1, "a"), wait_for_response=False, lease=0)
        await second.enqueue(*in_session(2, "b"), wait_for_response=False, lease=None)
        taken = await second.claim_next(60)
    assert taken is not None


def published_by(user_id: str, n: int) -> tuple[PublishRequest, bytes]:
    request = PublishRequest(
        request_id=f"{user_id}-{n}",
        user_id=user_id,
        session_id="s",
        interaction_data_list=[InteractionData(role="user", content=f"turn {n}")],
    )
    return request, request.checked_body()


async def test_one_users_stats_count_and_tell_only_that_users_publishes(tmp_path: Path) -> None:
    """What a caller's reflexio://status shows of the outbox: never another user's rows."""
    other_target = "http://127.0.0.1:8062"
    async with Outbox(tmp_path, TARGET) as outbox, Outbox(tmp_path, other_target) as earlier:
        await outbox.enqueue(*published_by("bob", 1), wait_for_response=False, lease=None)
        refused = await outbox.claim_next(60)
        assert refused is not None
        await outbox.failed(refused.seq, "Reflexio refused bob's turn 1")
        await outbox.enqueue(*published_by("bob", 2), wait_for_response=False, lease=None)
        await outbox.enqueue(*published_by("alice", 1), wait_for_response=False, lease=None)
        await earlier.enqueue(*published_by("bob", 3), wait_for_response=False, lease=None)
        everyone, alice, bob = (
            await outbox.stats(),
            await outbox.stats("alice"),
            await outbox.stats("bob"),
        )
    assert (everyone.waiting, everyone.failed) == (2, 1)
    assert everyone.last_error == "Reflexio refused bob's turn 1"
    assert everyone.other_targets == {other_target: 1}
    assert (alice.waiting, alice.failed, alice.last_error, alice.other_targets) == (1, 0, None, {})
    assert (bob.waiting, bob.failed) == (1, 1)
    assert bob.last_error == "Reflexio refused bob's turn 1"
    assert bob.other_targets == {other_target: 1}
    assert alice.waiting_bytes + bob.waiting_bytes == everyone.waiting_bytes
    assert alice.oldest_queued_at is not None
    assert bob.oldest_queued_at is not None
    assert everyone.oldest_queued_at == min(alice.oldest_queued_at, bob.oldest_queued_at)
