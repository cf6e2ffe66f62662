"""Benchmark: search recall on LoCoMo conversations, through the real server over stdio.

    uv run python bench/recall.py DATA [DATA ...] [--reflexio | --reflexio-url URL]
                                 [--conversations N] [--no-embedded]

DATA: LoCoMo conversation files (`26.json`, ...) or folders of them; this script reads only
what it is given. Per backend, a fresh `reflexio-mcp` spawned over stdio with the MCP SDK's
Client (embedded: a temporary data folder; Reflexio: `--backend reflexio --url ...`):
- publishes each conversation as one user (`locomo-<file stem>`), one `publish_interaction`
  per LoCoMo session (`session_id` = `<stem>-session_<n>`, `wait_for_response` true), each
  turn one interaction: `role` the speaker's name, `content` its text (plus
  ` [shares a photo: <blip_caption>]` where it has one), `created_at` the session's date and
  time (UTC) plus the turn's index in the session in seconds, which is how a hit is mapped back
  to its `dia_id`;
- asks every question of categories 1-4 verbatim: `search_interactions` with `query`, `top_k`
  = 20 and `user_id` (the conversation's user) only; recall@5/10/20 from that ranked list,
  "any" (an evidence turn in the top k) and "all" (every evidence turn in it), per category
  and overall. Evidence lists written as one string ("D8:6; D9:17") are split; evidence ids
  not in the conversation are dropped, and a question left with none is not counted.
Before the questions, it waits until the store has embedded every turn (the status
resource's meaning_index; the time is printed). Also: search latency p50/p99 (the call
through MCP), the answer-text/content ratio
(characters of the result's text blocks over characters of the hits' own `content`) and the
size of tools/list (compact JSON of the tools' wire form).

Reflexio: `--reflexio` starts the real Reflexio 0.2.32 locally as the tests do
(tests/support/reflexio_server.py: a cached venv, a temporary HOME, mock LLM, rate limiter
off); `--reflexio-url` uses a running one instead (start it with
`python -m reflexio.server --host 127.0.0.1 --port 8061` in the venv the tests build, under
~/.cache/reflexio-mcp/reflexio-ai-0.2.32, with the environment reflexio_server() sets).
Reflexio's publish is slow: `--conversations N` gives Reflexio only the first N files (give
the embedded store the same files as DATA to compare). Reflexio 0.2.32 answers a query search
with at most 10 matches, so its recall@20 is its recall@10.
Stops every process it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import TextContent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOP_K = 20
CUTS = (5, 10, 20)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
SESSION = re.compile(r"session_(\d+)")
CALL_SECONDS = 600.0


# -- the data -----------------------------------------------------------------------------


@dataclass
class Question:
    text: str
    category: int
    evidence: frozenset[str]


@dataclass
class Conversation:
    user: str
    sessions: list[tuple[str, list[dict[str, Any]]]]
    """(session_id, interactions) in session order."""
    dia_ids: dict[int, str]
    """created_at -> dia_id."""
    questions: list[Question]
    dropped: int = 0
    """Questions of categories 1-4 with no evidence turn in the conversation."""


def session_start(text: str) -> int:
    """ "1:56 pm on 8 May, 2023" as Unix seconds, UTC."""
    when = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    return int(when.timestamp())


def load(path: Path) -> Conversation:
    data: dict[str, Any] = json.loads(path.read_text())
    user = f"locomo-{path.stem}"
    numbers = sorted(int(m[1]) for key in data if (m := SESSION.fullmatch(key)))
    sessions: list[tuple[str, list[dict[str, Any]]]] = []
    dia_ids: dict[int, str] = {}
    for number in numbers:
        start = session_start(data[f"session_{number}_date_time"])
        turns: list[dict[str, Any]] = []
        for index, turn in enumerate(data[f"session_{number}"]):
            content = str(turn["text"])
            if caption := turn.get("blip_caption"):
                content += f" [shares a photo: {caption}]"
            created_at = start + index
            if created_at in dia_ids:
                raise ValueError(f"{path}: two turns at {created_at}: cannot tell them apart")
            dia_ids[created_at] = str(turn["dia_id"])
            turns.append({"role": turn["speaker"], "content": content, "created_at": created_at})
        sessions.append((f"{path.stem}-session_{number}", turns))
    known = set(dia_ids.values())
    conversation = Conversation(user, sessions, dia_ids, [])
    for qa in data["qa"]:
        if qa["category"] not in CATEGORIES:
            continue
        evidence = {e for item in qa["evidence"] for e in re.split(r"[;\s]+", item) if e} & known
        if not evidence:
            conversation.dropped += 1
            continue
        conversation.questions.append(Question(qa["question"], qa["category"], frozenset(evidence)))
    return conversation


def conversation_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found += sorted(path.glob("*.json"), key=lambda p: p.stem) if path.is_dir() else [path]
    return found


# -- one backend --------------------------------------------------------------------------


@dataclass
class Outcome:
    backend: str
    hits: dict[tuple[int, int, str], int] = field(default_factory=dict[tuple[int, int, str], int])
    """(category, k, "any"/"all") -> questions hit."""
    asked: dict[int, int] = field(default_factory=dict[int, int])
    latencies_ms: list[float] = field(default_factory=list[float])
    text_chars: int = 0
    content_chars: int = 0
    truncated: int = 0
    tools_chars: int = 0
    turns: int = 0
    publish_seconds: float = 0.0
    index_seconds: float = 0.0
    """Waiting, after the last publish, for the meaning index to hold every turn."""
    search_seconds: float = 0.0

    def score(self, question: Question, ranked: list[str]) -> None:
        self.asked[question.category] = self.asked.get(question.category, 0) + 1
        for k in CUTS:
            top = set(ranked[:k])
            found = {"any": bool(question.evidence & top), "all": question.evidence <= top}
            for kind, hit in found.items():
                key = (question.category, k, kind)
                self.hits[key] = self.hits.get(key, 0) + hit


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


async def run_backend(
    backend: str, args: list[str], conversations: list[Conversation], log: Path
) -> Outcome:
    outcome = Outcome(backend)
    params = StdioServerParameters(command=sys.executable, args=["-m", "reflexio_mcp", *args])
    with log.open("a") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, read_timeout_seconds=CALL_SECONDS) as client:
            listed = await client.list_tools()
            wire = listed.model_dump(mode="json", by_alias=True, exclude_none=True)["tools"]
            outcome.tools_chars = len(json.dumps(wire, separators=(",", ":")))
            began = time.perf_counter()
            for conversation in conversations:
                for session_id, turns in conversation.sessions:
                    result = await client.call_tool(
                        "publish_interaction",
                        {
                            "user_id": conversation.user,
                            "session_id": session_id,
                            "request_id": f"locomo-{session_id}",
                            "interactions": turns,
                            "wait_for_response": True,
                        },
                    )
                    answer: dict[str, Any] = result.structured_content or {}
                    status = answer.get("status")
                    if result.is_error or status not in ("stored", "already_stored"):
                        raise RuntimeError(f"publishing {session_id}: {text_of(result)[:500]}")
                    outcome.turns += len(turns)
            outcome.publish_seconds = time.perf_counter() - began
            began = time.perf_counter()
            await meaning_indexed(client)
            outcome.index_seconds = time.perf_counter() - began
            began = time.perf_counter()
            for conversation in conversations:
                for question in conversation.questions:
                    ranked = await search(client, conversation, question, outcome)
                    outcome.score(question, ranked)
            outcome.search_seconds = time.perf_counter() - began
    return outcome


async def meaning_indexed(client: Client) -> None:
    """Wait until the store has embedded every turn (the embedded store does it in the
    background after each publish; a store without a meaning index has nothing to wait for)."""
    while True:
        read = await client.read_resource("reflexio://status")
        status: dict[str, Any] = json.loads(getattr(read.contents[0], "text", "{}"))
        meaning: dict[str, Any] | None = status.get("meaning_index")
        if not meaning or meaning.get("unavailable") or not meaning.get("pending"):
            return
        await anyio.sleep(1)


async def search(
    client: Client, conversation: Conversation, question: Question, outcome: Outcome
) -> list[str]:
    """The dia_ids of the hits, best first; the call timed and its sizes counted."""
    arguments = {"user_id": conversation.user, "query": question.text, "top_k": TOP_K}
    began = time.perf_counter()
    result = await client.call_tool("search_interactions", arguments)
    outcome.latencies_ms.append((time.perf_counter() - began) * 1000)
    if result.is_error:
        raise RuntimeError(f"search {question.text!r}: {text_of(result)[:500]}")
    found: dict[str, Any] = result.structured_content or {}
    hits: list[dict[str, Any]] = found.get("interactions", [])
    outcome.truncated += bool(found.get("truncated"))
    outcome.text_chars += len(text_of(result))
    outcome.content_chars += sum(len(hit.get("content") or "") for hit in hits)
    return [conversation.dia_ids.get(int(hit["created_at"]), "?") for hit in hits]


# -- the report ---------------------------------------------------------------------------


def percent(hit: int, of: int) -> str:
    return f"{100 * hit / of:.1f}" if of else "-"


def report(outcome: Outcome) -> None:
    ordered = sorted(outcome.latencies_ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    total = sum(outcome.asked.values())
    print(
        f"\n{outcome.backend}: {outcome.turns} turns published in {outcome.publish_seconds:.1f} s, "
        f"embedded in {outcome.index_seconds:.1f} s more; "
        f"{total} questions searched in {outcome.search_seconds:.1f} s (top_k={TOP_K})"
    )
    header = [f"{kind}@{k}" for kind in ("any", "all") for k in CUTS]
    print("| category | questions | " + " | ".join(f"{h} %" for h in header) + " |")
    print("|---|---:|" + "---:|" * len(header))
    rows = [(name, [c]) for c, name in CATEGORIES.items()] + [("overall", list(CATEGORIES))]
    for name, categories in rows:
        asked = sum(outcome.asked.get(c, 0) for c in categories)
        cells = [
            percent(sum(outcome.hits.get((c, k, kind), 0) for c in categories), asked)
            for kind in ("any", "all")
            for k in CUTS
        ]
        print(f"| {name} | {asked} | " + " | ".join(cells) + " |")
    ratio = outcome.text_chars / outcome.content_chars if outcome.content_chars else float("nan")
    print(
        f"search latency through MCP: p50 {p50:.1f} ms, p99 {p99:.1f} ms; answer text / "
        f"content: {ratio:.2f} ({outcome.text_chars:,} / {outcome.content_chars:,} characters; "
        f"{outcome.truncated} results truncated); tools/list: {outcome.tools_chars:,} characters"
    )


@contextlib.contextmanager
def reflexio_url(arguments: argparse.Namespace, work: Path) -> Generator[str | None]:
    """The URL of the Reflexio to measure: given, started here, or none."""
    if arguments.reflexio_url:
        yield arguments.reflexio_url
    elif arguments.reflexio:
        from tests.support.reflexio_server import reflexio_server

        with reflexio_server(work / "reflexio") as server:
            yield server.url
    else:
        yield None


async def main(arguments: argparse.Namespace) -> None:
    files = conversation_files(arguments.data)
    conversations = [load(path) for path in files]
    dropped = sum(c.dropped for c in conversations)
    limited = conversations[: arguments.conversations]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; LoCoMo {', '.join(p.name for p in files)}: "
        f"{sum(len(c.questions) for c in conversations)} questions of categories 1-4 "
        f"({dropped} left out: no evidence turn in the conversation)"
    )
    with tempfile.TemporaryDirectory(prefix="reflexio-recall-") as work:
        base = Path(work)
        outcomes: list[Outcome] = []
        if not arguments.no_embedded:
            embedded = ["--backend", "embedded", "--data-dir", str(base / "embedded")]
            outcomes.append(await run_backend("embedded", embedded, conversations, base / "e.log"))
            report(outcomes[-1])
        with reflexio_url(arguments, base) as url:
            if url is not None:
                remote = ["--backend", "reflexio", "--url", url, "--data-dir", str(base / "outbox")]
                name = f"Reflexio ({', '.join(files[n].name for n in range(len(limited)))})"
                outcomes.append(await run_backend(name, remote, limited, base / "r.log"))
                report(outcomes[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="search recall on LoCoMo through reflexio-mcp")
    parser.add_argument("data", type=Path, nargs="+", help="LoCoMo files or folders of them")
    parser.add_argument("--reflexio", action="store_true", help="also measure a local Reflexio")
    parser.add_argument("--reflexio-url", help="measure this running Reflexio (loopback)")
    parser.add_argument("--conversations", type=int, help="Reflexio: only the first N files")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded store")
    anyio.run(main, parser.parse_args())
